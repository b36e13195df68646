//! Pass `share-layers`: Relaxed Recursive Transformers (techniques.md §5.1). The L
//! transformer blocks become B = L/K unique blocks looped K times (CYCLE sharing: block
//! position ℓ uses shared block `ℓ mod B`); every linear of a block (q, k, v, o, gate,
//! up, down) reads one shared constant, initialised by `average`, `stepwise` or `lower`.
//! With `lora_rank=r`, position ℓ adds `B_ℓ(A_ℓ x)` from the rank-r truncated SVD of
//! `W_ℓ − W'` (kept unmerged so the sharing survives export). Norm scales and biases
//! stay per position (`norms=position`, our default: cheap, and full-rank LoRA then
//! reproduces the original), or are tied like the linears (`norms=shared`, the paper's
//! choice; `rotate` folds them into the linears, so only then do rotated weights stay
//! shared). The exported graph stores each shared weight once: one initializer read by
//! K MatMuls.

use crate::calib::linalg::thin_svd;
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::options::{OptionKind, OptionSpec, PassOptions};
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::prune::structured::apply::{const_tensor, reinfer};
use crate::quant::layers::{read_w, select_skipping, Layer, Layout};
use crate::registry::PassDescriptor;
use compc_ir::op::BinaryOp;
use compc_ir::{DType, Graph, Op, Shape, TensorType, ValueRef};
use compc_runtime::Tensor;
use faer::Mat;

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "every",
        kind: OptionKind::Int { min: 1, max: 1024 },
        default: Some("2"),
        help: "K: each unique block is used K times (L blocks → L/K unique blocks)",
    },
    OptionSpec {
        name: "init",
        kind: OptionKind::Choice(&["average", "stepwise", "lower"]),
        default: Some("average"),
        help: "shared block j: the mean of the blocks tied to it, block round(linspace(0, L−1, B))[j], or block j",
    },
    OptionSpec {
        name: "lora_rank",
        kind: OptionKind::Int { min: 0, max: 1 << 20 },
        default: Some("0"),
        help: "per-position LoRA rank from the truncated SVD of (original − shared); 0 = pure recursion; at least min(m, n) reproduces the original",
    },
    OptionSpec {
        name: "norms",
        kind: OptionKind::Choice(&["position", "shared"]),
        default: Some("position"),
        help: "norm scales and biases: kept per position, or tied like the linears (the paper's choice, initialised the same way; rotate then keeps every weight shared)",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Average,
    Stepwise,
    Lower,
}

pub struct ShareLayers {
    pub every: usize,
    pub init: Init,
    pub lora_rank: usize,
    /// Tie the blocks' norm scales and biases too.
    pub shared_norms: bool,
}

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "share-layers",
        summary: "Relaxed Recursive Transformers: L blocks → L/K shared blocks looped K times (one initializer per shared weight), optional per-depth LoRA from the SVD of the residual",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| Ok(Box::new(ShareLayers::from_options(o).map_err(|e| e.to_string())?)),
    }
}

impl ShareLayers {
    pub fn from_options(o: &PassOptions) -> Result<ShareLayers, PassError> {
        Ok(ShareLayers {
            every: o.int("every").unwrap_or(2) as usize,
            init: match o.text("init").unwrap_or("average") {
                "stepwise" => Init::Stepwise,
                "lower" => Init::Lower,
                _ => Init::Average,
            },
            lora_rank: o.int("lora_rank").unwrap_or(0) as usize,
            shared_norms: o.text("norms") == Some("shared"),
        })
    }
}

/// Which original positions initialise shared block `j` (of `b`), with `l` blocks.
pub fn sources(init: Init, l: usize, b: usize, j: usize) -> Vec<usize> {
    match init {
        Init::Average => (0..l / b).map(|r| j + r * b).collect(),
        Init::Lower => vec![j],
        Init::Stepwise => {
            let x = if b <= 1 {
                0.0
            } else {
                j as f64 * (l - 1) as f64 / (b - 1) as f64
            };
            vec![x.round_ties_even() as usize]
        }
    }
}

fn f32_const(
    g: &mut Graph,
    name: String,
    dims: Vec<usize>,
    data: Vec<f32>,
    dtype: DType,
) -> Result<ValueRef, PassError> {
    let w = Tensor::from_f32_as(dtype, dims, data)?.to_weight(&name)?;
    Ok(ValueRef::new(g.add_const(w), 0))
}

/// Adds `x·A_Bᵀ·B_Bᵀ` (rank-r LoRA) to the product of `l`.
fn add_lora(
    g: &mut Graph,
    l: &Layer,
    a_io: Vec<f32>,
    b_io: Vec<f32>,
    r: usize,
    pos: usize,
) -> Result<(), PassError> {
    let x = l
        .input(g)
        .ok_or_else(|| PassError::Invalid(format!("layer `{}` has no input", l.name)))?;
    let prod = ValueRef::new(l.node(), 0);
    let name = format!("{}_lora{pos}", l.name);
    let a = f32_const(g, format!("{name}.A"), vec![l.cols, r], a_io, l.dtype)?;
    let b = f32_const(g, format!("{name}.B"), vec![r, l.rows], b_io, l.dtype)?;
    let ty = TensorType {
        dtype: l.dtype,
        shape: Shape::Unranked,
    };
    let users = g.value_users(prod);
    let down = g.add_node(
        Op::MatMul,
        vec![Some(x), Some(a)],
        vec![ty.clone()],
        format!("{name}_down"),
    );
    let up = g.add_node(
        Op::MatMul,
        vec![Some(ValueRef::new(down, 0)), Some(b)],
        vec![ty.clone()],
        format!("{name}_up"),
    );
    let add = g.add_node(
        Op::Binary(BinaryOp::Add),
        vec![Some(prod), Some(ValueRef::new(up, 0))],
        vec![ty],
        format!("{name}_add"),
    );
    for (u, slot) in users {
        g.set_input(u, slot as usize, Some(ValueRef::new(add, 0)));
    }
    for o in g.outputs.iter_mut() {
        if o.value == prod {
            o.value = ValueRef::new(add, 0);
        }
    }
    Ok(())
}

/// The element-wise mean of the constants `values` (the tied positions' copies, or one
/// source for `init=lower`), with their dims; every value must have the same dims.
fn mean_of_consts(g: &Graph, values: &[ValueRef]) -> Result<(Vec<usize>, Vec<f32>), PassError> {
    let mut acc: Vec<f64> = Vec::new();
    let mut dims = Vec::new();
    for &v in values {
        let (w, t) = const_tensor(g, v)?;
        if !acc.is_empty() && t.shape() != dims.as_slice() {
            return Err(PassError::Invalid(format!(
                "share-layers: `{}` has dims {:?}, the tied constants' {:?}",
                w.name,
                t.shape(),
                dims
            )));
        }
        dims = t.shape().to_vec();
        let x = t.f32_cow();
        if acc.is_empty() {
            acc = vec![0.0; x.len()];
        }
        acc.iter_mut()
            .zip(x.iter())
            .for_each(|(a, &v)| *a += v as f64);
    }
    let n = values.len().max(1) as f64;
    Ok((dims, acc.iter().map(|a| (a / n) as f32).collect()))
}

/// [`mean_of_consts`] stored once, named `name`, in the first value's element type.
fn shared_const(g: &mut Graph, values: &[ValueRef], name: String) -> Result<ValueRef, PassError> {
    let (dims, mean) = mean_of_consts(g, values)?;
    let dtype = const_tensor(g, values[0])?.0.dtype;
    f32_const(g, name, dims, mean, dtype)
}

/// `norms=shared`: every block's k-th norm reads one scale (and bias) per shared block,
/// initialised like the linears. Returns how many shared constants it wrote.
fn tie_norms(g: &mut Graph, idioms: &Idioms, init: Init, b: usize) -> Result<usize, PassError> {
    let l = idioms.blocks.len();
    let per_block = idioms.blocks[0].norms.len();
    let part = |n: usize, bias: bool| {
        let norm = &idioms.norms[n];
        if bias {
            norm.bias
        } else {
            norm.scale
        }
    };
    for (bi, blk) in idioms.blocks.iter().enumerate() {
        let same = blk.norms.len() == per_block
            && blk
                .norms
                .iter()
                .zip(&idioms.blocks[0].norms)
                .all(|(&n, &n0)| {
                    [false, true]
                        .iter()
                        .all(|&bias| part(n, bias).is_some() == part(n0, bias).is_some())
                        && idioms.norms[n].kind == idioms.norms[n0].kind
                });
        if !same {
            return Err(PassError::Invalid(format!(
                "share-layers: norms=shared: block[{bi}]'s norms do not match block[0]'s (count, kind, scale and bias); use norms=position"
            )));
        }
    }
    let mut written = 0;
    for j in 0..b {
        let src = sources(init, l, b, j);
        for slot in 0..per_block {
            for bias in [false, true] {
                let values: Option<Vec<ValueRef>> = src
                    .iter()
                    .map(|&p| part(idioms.blocks[p].norms[slot], bias))
                    .collect();
                let Some(values) = values else { continue };
                let first = values[0];
                let name = format!(
                    "{}_shared{j}",
                    g.const_weight(first).map_or("norm", |w| w.name.as_str())
                );
                let shared = shared_const(g, &values, name)?;
                written += 1;
                for r in 0..l / b {
                    let n = idioms.blocks[j + r * b].norms[slot];
                    let Some(old) = part(n, bias) else { continue };
                    let nodes = &idioms.norms[n].nodes;
                    for (u, input) in g.value_users(old) {
                        if nodes.contains(&u) {
                            g.set_input(u, input as usize, Some(shared));
                        }
                    }
                }
            }
        }
    }
    Ok(written)
}

impl Pass for ShareLayers {
    fn name(&self) -> &'static str {
        "share-layers"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    // Slots index the same linear of every tied block.
    #[allow(clippy::needless_range_loop)]
    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let idioms = Idioms::find(g)?;
        let l = idioms.blocks.len();
        if l == 0 {
            return Err(PassError::Invalid(idioms.no_block_error("share-layers")));
        }
        let k = self.every;
        if k == 0 || l % k != 0 {
            return Err(PassError::Invalid(format!(
                "share-layers: every={k} does not divide the {l} transformer blocks{}",
                idioms.unblocked_note()
            )));
        }
        if k == 1 {
            cx.note("every=1: every block is its own shared block; nothing to do");
            return Ok(Changed::No);
        }
        let b = l / k;
        let sel = select_skipping(g, &idioms, &[]);
        let mut layers: Vec<Option<Layer>> = vec![None; idioms.linears.len()];
        for x in sel.layers {
            let i = x.index;
            layers[i] = Some(x);
        }
        // The linears of each block, in a fixed order.
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (bi, blk) in idioms.blocks.iter().enumerate() {
            let mut m = Vec::new();
            if let Some(a) = blk.attention.map(|i| &idioms.attention[i]) {
                m.extend([Some(a.q), Some(a.k), Some(a.v), a.o].into_iter().flatten());
            }
            if let Some(p) = blk.mlp.map(|i| &idioms.mlps[i]) {
                m.extend([p.gate, Some(p.up), Some(p.down)].into_iter().flatten());
            }
            for &li in &m {
                if layers[li].as_ref().is_none_or(|x| x.is_conv()) {
                    return Err(PassError::Invalid(format!(
                        "share-layers: block[{bi}]: linear[{li}] is not a float MatMul/Gemm \
                         with a constant weight{}",
                        idioms.linears[li].order_hint("share-layers")
                    )));
                }
            }
            members.push(m);
        }
        for (bi, m) in members.iter().enumerate() {
            let shape = |li: usize| {
                let x = layers[li].as_ref().expect("checked");
                (x.rows, x.cols, x.layout.clone())
            };
            if m.len() != members[0].len()
                || m.iter()
                    .zip(&members[0])
                    .any(|(&a, &c)| shape(a) != shape(c))
            {
                return Err(PassError::Invalid(format!(
                    "share-layers: block[{bi}] does not have the same linears and shapes as block[0]; only identical blocks can share weights"
                )));
            }
        }
        let block_bytes: u64 = members
            .iter()
            .flatten()
            .map(|&li| layers[li].as_ref().expect("checked").float_bytes())
            .sum();
        let mut unique_bytes = 0u64;
        let mut lora_bytes = 0u64;
        let mut residual_energy = (0f64, 0f64);
        for j in 0..b {
            let src = sources(self.init, l, b, j);
            for slot in 0..members[0].len() {
                let tied: Vec<usize> = (0..k).map(|r| members[j + r * b][slot]).collect();
                let first = layers[tied[0]].as_ref().expect("checked").clone();
                // Average / copy in the stored layout (identical across tied layers).
                let weights: Vec<ValueRef> = src
                    .iter()
                    .map(|&p| idioms.linears[members[p][slot]].weight)
                    .collect();
                let (dims, shared) = mean_of_consts(g, &weights)?;
                let name = format!("{}_shared{j}", first.name);
                let sc = f32_const(g, name, dims, shared.clone(), first.dtype)?;
                unique_bytes += first.float_bytes();
                // W-form of the shared weight for the residuals.
                let (rows, cols) = (first.rows, first.cols);
                let shared_w: Vec<f32> = match first.layout {
                    Layout::InOut => crate::calib::linalg::transpose(&shared, cols, rows),
                    _ => shared.clone(),
                };
                for (r, &li) in tied.iter().enumerate() {
                    let lay = layers[li].as_ref().expect("checked").clone();
                    let pos = j + r * b;
                    if self.lora_rank > 0 {
                        let w = read_w(g, &lay)?;
                        let res: Vec<f64> = w
                            .iter()
                            .zip(&shared_w)
                            .map(|(a, s)| (*a - *s) as f64)
                            .collect();
                        let energy: f64 = res.iter().map(|v| v * v).sum();
                        residual_energy.0 += energy;
                        if energy > 0.0 {
                            let rank = self.lora_rank.min(rows.min(cols));
                            let (u, s, v) =
                                thin_svd(&Mat::from_fn(rows, cols, |i, j| res[i * cols + j]))
                                    .map_err(PassError::Invalid)?;
                            residual_energy.1 += s[rank..].iter().map(|x| x * x).sum::<f64>();
                            // A_B = A_ℓᵀ = V_r (cols × rank); B_B = B_ℓᵀ = (U_r Σ_r)ᵀ (rank × rows).
                            let mut a_io = vec![0f32; cols * rank];
                            for c in 0..cols {
                                for q in 0..rank {
                                    a_io[c * rank + q] = v[(c, q)] as f32;
                                }
                            }
                            let mut b_io = vec![0f32; rank * rows];
                            for q in 0..rank {
                                for o in 0..rows {
                                    b_io[q * rows + o] = (u[(o, q)] * s[q]) as f32;
                                }
                            }
                            add_lora(g, &lay, a_io, b_io, rank, pos)?;
                            lora_bytes +=
                                ((rows + cols) * rank) as u64 * (lay.dtype.bits() as u64 / 8);
                        }
                    }
                    g.set_input(lay.node(), 1, Some(sc));
                }
            }
        }
        let tied_norms = if self.shared_norms {
            tie_norms(g, &idioms, self.init, b)?
        } else {
            0
        };
        reinfer(g)?;
        let removed = crate::dce::remove_dead_nodes(g)?;
        if self.shared_norms {
            cx.note(format!(
                "norms=shared: {tied_norms} norm constants (scales and biases) tied like the linears"
            ));
        }
        cx.note(format!(
            "{l} blocks → {b} shared blocks × {k} ({:?} init); unique block linear bytes {block_bytes} → {unique_bytes} ({:.2}×){}",
            self.init,
            block_bytes as f64 / unique_bytes.max(1) as f64,
            if self.lora_rank > 0 {
                format!(
                    ", LoRA rank {} adds {lora_bytes} bytes; it keeps {:.1}% of the residual energy",
                    self.lora_rank,
                    100.0 * (1.0 - residual_energy.1 / residual_energy.0.max(1e-300))
                )
            } else {
                String::new()
            }
        ));
        cx.measured(
            "unique_block_parameter_bytes",
            (unique_bytes + lora_bytes) as f64,
        );
        cx.touch(members.len() + removed);
        Ok(Changed::Yes)
    }
}

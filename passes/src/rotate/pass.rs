//! The `rotate` pass (QuaRot-style computational invariance, techniques.md §4): fold the
//! stream norms' scales into their readers, rotate the residual stream by a random
//! Hadamard matrix (embeddings, every reader and writer, lm_head), insert an online
//! Hadamard before each MLP down projection and rotate V/O per head. Every step is exact
//! in real arithmetic; the weight algebra runs in float64.

use super::explicit::{down_hadamard_pair, rotate_stream_explicit};
use super::online::{insert_down_hadamard, rotate_value_output};
use super::rotation::Rotation;
use super::stream::{find_stream, Stream, StreamUse};
use super::weights::{self, peak_to_rms, Mat64};
use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::idioms::Idioms;
use crate::options::{OptionKind, OptionSpec, PassOptions};
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::registry::PassDescriptor;
use compc_ir::{Graph, NodeId, ValueRef};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "seed",
        kind: OptionKind::Int {
            min: 0,
            max: i64::MAX,
        },
        default: Some("0"),
        help: "seed of the random ±1 signs of the residual-stream Hadamard rotation",
    },
    OptionSpec {
        name: "online",
        kind: OptionKind::Bool,
        default: Some("true"),
        help: "also insert the online Hadamard before each MLP down projection and rotate V/O per head",
    },
    OptionSpec {
        name: "fold",
        kind: OptionKind::Bool,
        default: Some("true"),
        help: "fold the rotations into the weights; false writes them as explicit MatMul by Q/Qᵀ \
               and hadamard pairs (for egraph-opt to fold, or to inspect them)",
    },
    OptionSpec {
        name: "rsq",
        kind: OptionKind::Bool,
        default: Some("false"),
        help: "RSQ: ask the quant{method=gptq} that follows to weight each calibration token's \
               Hessian contribution by the attention it receives (quant's importance=attncon)",
    },
];

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "rotate",
        summary: "computational invariance: fold norm scales, rotate the residual stream by a random Hadamard, online Hadamard before down projections, per-head V/O rotation (exact)",
        exactness: Exactness::Exact,
        options: OPTIONS,
        build: |o| Ok(Box::new(Rotate::from_options(o))),
    }
}

pub struct Rotate {
    pub seed: u64,
    pub online: bool,
    pub fold: bool,
    pub rsq: bool,
}

impl Rotate {
    pub fn from_options(o: &PassOptions) -> Rotate {
        Rotate {
            seed: o.int("seed").unwrap_or(0) as u64,
            online: o.bool("online").unwrap_or(true),
            fold: o.bool("fold").unwrap_or(true),
            rsq: o.bool("rsq").unwrap_or(false),
        }
    }
}

/// The peak-to-RMS of every transformed layer's weight before the pass, by linear index.
type Peaks = Vec<(usize, f64)>;

impl Pass for Rotate {
    fn name(&self) -> &'static str {
        "rotate"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        if self.rsq && !self.fold {
            return Err(PassError::Invalid(
                "rotate: rsq=true needs the folded rotation (fold=true): RSQ reweights the GPTQ \
                 of the rotated weights"
                    .into(),
            ));
        }
        let idioms = Idioms::find(g)?;
        let stream = find_stream(g, &idioms, StreamUse::ROTATE)?;
        let constants_before = crate::same_constants::constants(g);
        let q = Rotation::random_hadamard(stream.d, self.seed).ok_or_else(|| {
            PassError::Invalid(format!("rotate: no rotation of hidden size {}", stream.d))
        })?;
        let before = peaks(g, &idioms)?;
        let folded = fold_norm_scales(g, &idioms, &stream)?;
        if !self.fold {
            return self.run_explicit(g, cx, &idioms, &stream, &q, folded);
        }
        rotate_stream(g, &idioms, &stream, &q)?;
        cx.note(format!(
            "residual stream (d = {}): {}; {} norm scales folded into {} readers, {} writers, embeddings rotated",
            stream.d,
            q.how,
            folded,
            stream.norms.iter().map(|(_, r)| r.len()).sum::<usize>(),
            stream.writers.len()
        ));
        let mut touched = 1 + folded + stream.writers.len();
        if self.online {
            let mut factors = Vec::new();
            for m in &idioms.mlps {
                let how = insert_down_hadamard(g, &idioms, m.down, &mut factors)?;
                touched += 2;
                cx.note(format!(
                    "online Hadamard before {}: {how}",
                    layer_name(g, &idioms, m.down)
                ));
            }
            for a in &idioms.attention {
                let how = rotate_value_output(g, &idioms, a)?;
                touched += 2;
                cx.note(format!(
                    "V/O per head ({} and {}): {how}",
                    layer_name(g, &idioms, a.v),
                    a.o.map(|o| layer_name(g, &idioms, o)).unwrap_or_default()
                ));
            }
        }
        for (li, p) in before {
            let l = &idioms.linears[li];
            let after = weights::read_input(g, l.node, 1, "weight")?;
            cx.note(format!(
                "{}: weight peak/RMS {:.2} → {:.2}",
                layer_name(g, &idioms, li),
                p,
                peak_to_rms(&after.data)
            ));
        }
        if self.rsq {
            // The rotation itself is exact; the weighting happens in the GPTQ that reads
            // this request (a `compc.` key, never exported).
            g.metadata.insert(
                crate::quant::importance::METADATA_KEY.into(),
                crate::quant::importance::Importance::AttnCon.name().into(),
            );
            cx.note(
                "RSQ: the next quant{method=gptq} weights tokens by attention received (attncon)",
            );
        }
        // A weight several layers share is rotated once per reader; where the copies are
        // identical (no reader-specific norm scale was folded in), and for the repeated
        // Hadamard factors, one constant serves them all.
        let merged = crate::same_constants::merge_new(g, &constants_before)?;
        if merged > 0 {
            cx.note(format!(
                "{merged} constants written here were byte-identical to another one (Hadamard \
                 factors, or a weight several layers share): stored once"
            ));
        }
        remove_dead_nodes(g)?;
        cx.touch(touched);
        Ok(Changed::Yes)
    }
}

impl Rotate {
    /// `fold=false`: the rotations as explicit ops ([`super::explicit`]).
    fn run_explicit(
        &self,
        g: &mut Graph,
        cx: &mut PassContext,
        idioms: &Idioms,
        stream: &Stream,
        q: &Rotation,
        folded: usize,
    ) -> Result<Changed, PassError> {
        let n = rotate_stream_explicit(g, idioms, stream, q)?;
        cx.note(format!(
            "residual stream (d = {}): {}, as {n} explicit MatMuls by Q or Qᵀ (fold=false); \
             {folded} norm scales folded into their readers",
            stream.d, q.how
        ));
        let mut touched = 1 + folded + n;
        if self.online {
            for m in &idioms.mlps {
                let how = down_hadamard_pair(g, idioms, m.down)?;
                touched += 2;
                cx.note(format!(
                    "online Hadamard before {}: {how}",
                    layer_name(g, idioms, m.down)
                ));
            }
            if !idioms.attention.is_empty() {
                cx.note(
                    "fold=false leaves V/O unrotated: the per-head rotation has no op of its own",
                );
            }
        }
        remove_dead_nodes(g)?;
        cx.touch(touched);
        Ok(Changed::Yes)
    }
}

fn layer_name(g: &Graph, idioms: &Idioms, li: usize) -> String {
    let n = g.node(idioms.linears[li].node);
    if n.name.is_empty() {
        format!("linear[{li}]")
    } else {
        format!("`{}`", n.name)
    }
}

fn peaks(g: &Graph, idioms: &Idioms) -> Result<Peaks, PassError> {
    let mut out = Vec::new();
    for (i, l) in idioms.linears.iter().enumerate() {
        if let Some(w) = g.const_weight(l.weight) {
            if w.dtype.is_float() && w.dims.len() == 2 {
                let m = weights::read(g, l.weight, "weight")?;
                out.push((i, peak_to_rms(&m.data)));
            }
        }
    }
    Ok(out)
}

/// `B[j, :] *= γ_j` for every reader of each stream norm, then `γ ← 1`. Returns how many
/// norms had a scale.
pub fn fold_norm_scales(
    g: &mut Graph,
    idioms: &Idioms,
    stream: &Stream,
) -> Result<usize, PassError> {
    let mut folded = 0;
    for (ni, readers) in &stream.norms {
        let norm = &idioms.norms[*ni];
        let Some(scale) = norm.scale else { continue };
        let gamma = weights::read(g, scale, "norm scale")?;
        let d = stream.d;
        let gv: Vec<f64> = match gamma.data.len() {
            1 => vec![gamma.data[0]; d],
            n if n == d => gamma.data.clone(),
            n => {
                return Err(PassError::Invalid(format!(
                    "rotate: norm scale `{}` has {n} values, the stream has {d}",
                    gamma.name
                )))
            }
        };
        for &li in readers {
            let node = idioms.linears[li].node;
            let mut b = weights::read_input(g, node, 1, "reader weight")?;
            let cols = b.data.len() / d;
            for (row, &s) in b.data.chunks_mut(cols).zip(&gv) {
                row.iter_mut().for_each(|v| *v *= s);
            }
            weights::write_input(g, node, 1, &b, "_normfold")?;
        }
        let ones = Mat64 {
            data: vec![1.0; gamma.data.len()],
            ..gamma
        };
        let c = weights::add_const(g, &ones, "_unit")?;
        for &n in &norm.nodes {
            if let Some(i) = weights::input_index(g, n, scale) {
                g.set_input(n, i, Some(c));
            }
        }
        folded += 1;
    }
    Ok(folded)
}

/// Embeddings `E ← E·Q`, readers `B ← Qᵀ·B`, writers `B ← B·Q` (and their biases).
pub fn rotate_stream(
    g: &mut Graph,
    idioms: &Idioms,
    stream: &Stream,
    q: &Rotation,
) -> Result<(), PassError> {
    let d = stream.d;
    let mut e = weights::read(g, stream.embed_table, "embedding table")?;
    q.right_mul(&mut e.data);
    set_const_input(g, stream.embed_gather, stream.embed_table, &e, "_rot")?;
    for (_, readers) in &stream.norms {
        for &li in readers {
            let node = idioms.linears[li].node;
            let mut b = weights::read_input(g, node, 1, "reader weight")?;
            let cols = b.data.len() / d;
            q.left_mul_t(&mut b.data, cols);
            weights::write_input(g, node, 1, &b, "_rot")?;
        }
    }
    for &li in &stream.writers {
        let l = &idioms.linears[li];
        let mut b = weights::read_input(g, l.node, 1, "writer weight")?;
        q.right_mul(&mut b.data);
        weights::write_input(g, l.node, 1, &b, "_rot")?;
        if let Some((add, bias)) = l.bias {
            let cur = current_const(g, add, bias);
            let mut bv = weights::read(g, cur, "writer bias")?;
            q.right_mul(&mut bv.data);
            set_const_input(g, add, cur, &bv, "_rot")?;
        }
    }
    Ok(())
}

/// The constant `node` reads now in place of `orig` (an earlier rewrite may have replaced
/// it): `orig` if still read, else the node's only constant input.
pub fn current_const(g: &Graph, node: NodeId, orig: ValueRef) -> ValueRef {
    if weights::input_index(g, node, orig).is_some() {
        return orig;
    }
    g.node(node)
        .inputs()
        .iter()
        .flatten()
        .copied()
        .find(|v| g.const_weight(*v).is_some())
        .unwrap_or(orig)
}

/// Makes `node` read a new constant holding `m` wherever it read `old`.
pub fn set_const_input(
    g: &mut Graph,
    node: NodeId,
    old: ValueRef,
    m: &Mat64,
    suffix: &str,
) -> Result<(), PassError> {
    let c = weights::add_const(g, m, suffix)?;
    g.replace_input(node, old, c);
    Ok(())
}

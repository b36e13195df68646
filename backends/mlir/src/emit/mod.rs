//! IR → MLIR text (`func` + `linalg` + `tensor` + `arith` + `math`), in pure Rust: emitting
//! needs no MLIR installation, so `--emit-mlir` and the snapshot tests work without the
//! `mlir` feature. The text is what melior parses and lowers (see `crate::compile`).
//!
//! ABI of the emitted function `@main`: graph inputs first, then every large weight as an
//! argument (weights are never giant textual constants; small ones, ≤ [`INLINE_LIMIT`]
//! elements, are inline `dense<"0x…">`), results last. Dynamic dims (`{batch}`, `{seq}`)
//! are `?`; their values are read once from the graph inputs with `tensor.dim`, which is
//! why every symbolic dim of a lowered value must be a dim of some graph input.
//!
//! One file per op family: `elementwise`, `linear` (matmul, gemm, MatMulNBits), `conv`
//! (conv and pooling), `layout` (reshape, transpose, slice, concat, gather, tile, …),
//! `reduce` (reductions, softmax, normalizations), `quant` (QuantizeLinear,
//! DequantizeLinear).

mod builder;
mod conv;
mod cpu_matmul;
mod cpu_nbits;
mod elementwise;
mod gpu_matmul;
mod gpu_nbits;
mod gpu_nbits_mma;
mod gpu_nbits_tc;
mod kernel_call;
mod layout;
mod linear;
mod quant;
mod reduce;

pub use builder::{elt, tensor_type};

use builder::{Emitter, Val};
use compc_ir::{DType, Dim, Graph, NodeId, Op, TensorType, ValueRef, WeightId};
use std::collections::HashSet;
use std::sync::Arc;

/// Constants with at most this many elements are written into the MLIR text; larger ones
/// become function arguments.
pub const INLINE_LIMIT: u64 = 64;

/// How the module is emitted for its target.
#[derive(Clone, Copy, Debug)]
pub struct EmitOptions {
    /// Constants with at most this many elements are inline; larger ones are arguments.
    pub inline_limit: u64,
    /// Lower MatMulNBits to the fused GPU kernel (`gpu.launch`) where its shape allows.
    pub gpu_kernels: bool,
    /// Let the fused GPU kernels overlap the kernel before them (programmatic dependent
    /// launch, `griddepcontrol`): sm_90 and newer.
    pub grid_wait: bool,
    /// Write f32 `exp` as polynomial arithmetic, which vectorizes on the CPU (`math.exp`
    /// is a libm call there); the GPU backend maps `math.exp` to its own intrinsics.
    pub polynomial_exp: bool,
}

impl EmitOptions {
    /// For the CPU: small constants inline ([`INLINE_LIMIT`]).
    pub const CPU: EmitOptions = EmitOptions {
        inline_limit: INLINE_LIMIT,
        gpu_kernels: false,
        grid_wait: false,
        polynomial_exp: true,
    };
    /// For the GPU every constant is an argument: an inline constant becomes a host
    /// global, which a kernel cannot read.
    pub const GPU: EmitOptions = EmitOptions {
        inline_limit: 0,
        gpu_kernels: true,
        grid_wait: false,
        polynomial_exp: false,
    };

    /// For an NVIDIA GPU of architecture `chip` (`sm_90`, `sm_80`, …): [`Self::GPU`], with
    /// programmatic dependent launch from sm_90 on. The weights are the same for every chip.
    pub fn gpu(chip: &str) -> EmitOptions {
        let sm: u32 = chip
            .strip_prefix("sm_")
            .and_then(|v| v.trim_end_matches(char::is_alphabetic).parse().ok())
            .unwrap_or(0);
        EmitOptions {
            grid_wait: sm >= 90,
            ..Self::GPU
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("{node}: the mlir backend does not lower `{op}` yet")]
    Unsupported { node: String, op: String },
    #[error("{node}: {msg}")]
    Node { node: String, msg: String },
    #[error("{0}")]
    Graph(String),
}

/// Where the bytes of a function argument come from.
#[derive(Clone, Debug)]
pub enum ParamSource {
    /// Graph input `i` (given at run time).
    Input(usize),
    /// A weight of the graph's store, used as stored.
    Weight(WeightId),
    /// Bytes derived from weights at compile time (a transposed Gemm weight, unpacked
    /// zero points, pooling divisors).
    Prepared(Arc<[u8]>),
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<Dim>,
    pub source: ParamSource,
}

#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<Dim>,
}

/// An emitted module: its text and the argument/result contract of `@main`.
#[derive(Clone, Debug)]
pub struct MlirModule {
    pub text: String,
    pub params: Vec<Param>,
    pub outputs: Vec<OutputSpec>,
}

/// The function every module defines.
pub const ENTRY: &str = "main";

/// Lowers a whole graph. Every output must be computable with the supported ops; the
/// first op that is not names itself in the error.
pub fn emit_module(g: &Graph) -> Result<MlirModule, EmitError> {
    emit_module_with(g, EmitOptions::CPU)
}

/// [`emit_module`] with explicit options (the GPU target passes [`EmitOptions::GPU`]).
pub fn emit_module_with(g: &Graph, options: EmitOptions) -> Result<MlirModule, EmitError> {
    let order = g
        .topo_order()
        .map_err(|e| EmitError::Graph(e.to_string()))?;
    let needed = needed_nodes(g, &order, &options);
    let mut em = Emitter::new(g, options);

    for (i, &id) in g.inputs().iter().enumerate() {
        let node = g.node(id);
        let ty = node.outputs[0].clone();
        let dims = ranked(&ty, &node.describe(id))?;
        let ssa = em.add_param(Param {
            name: node.name.clone(),
            dtype: ty.dtype,
            dims,
            source: ParamSource::Input(i),
        });
        em.bind(ValueRef::new(id, 0), Val { ssa, ty });
    }
    em.bind_input_symbols()?;

    for &id in &order {
        if !needed.contains(&id) || g.inputs().contains(&id) {
            continue;
        }
        em.current = g.node(id).describe(id);
        lower_node(&mut em, id)?;
    }

    let mut results = Vec::new();
    let mut outputs = Vec::new();
    for out in &g.outputs {
        let v = em.value(out.value)?;
        let dims = ranked(&v.ty, &out.name)?;
        outputs.push(OutputSpec {
            name: out.name.clone(),
            dtype: v.ty.dtype,
            dims,
        });
        results.push(v);
    }
    Ok(em.finish(&results, outputs))
}

fn ranked(ty: &TensorType, what: &str) -> Result<Vec<Dim>, EmitError> {
    ty.shape
        .dims()
        .map(|d| d.to_vec())
        .ok_or_else(|| EmitError::Graph(format!("{what}: the mlir backend needs ranked shapes")))
}

/// Which inputs of a node are read as tensors at run time. The others (reshape targets,
/// slice bounds, clip limits, range bounds, resize scales) are compile-time constants
/// read from the weight store, so the shape arithmetic that produced them is not lowered.
fn tensor_inputs(op: &Op, n_inputs: usize) -> Vec<usize> {
    match op {
        Op::Reshape(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Slice
        | Op::Clip
        | Op::Resize(_)
        | Op::Expand
        | Op::Tile
        | Op::Flatten(_) => vec![0],
        Op::Range | Op::Shape(_) => vec![],
        // B, scales, zero points and g_idx are read at compile time; A and the bias run.
        Op::MatMulNBits(_) => vec![0, 5],
        _ => (0..n_inputs).collect(),
    }
}

/// The nodes whose values the outputs need as tensors (shape-only subgraphs drop out).
fn needed_nodes(g: &Graph, order: &[NodeId], options: &EmitOptions) -> HashSet<NodeId> {
    let mut needed: HashSet<NodeId> = g.outputs.iter().map(|o| o.value.node).collect();
    for &id in order.iter().rev() {
        if !needed.contains(&id) {
            continue;
        }
        let node = g.node(id);
        if matches!(node.op, Op::Shape(_)) {
            // `shape` reads only its input's dims, which the emitter knows without it.
            continue;
        }
        // A weight the CPU matmul kernel reads in panels is prepared at compile time; the
        // original is lowered only if something else reads it.
        let panelled = linear::panelled_weight(g, id, options).is_some();
        for i in tensor_inputs(&node.op, node.inputs().len()) {
            if panelled && i == 1 {
                continue;
            }
            if let Some(v) = node.input(i) {
                needed.insert(v.node);
            }
        }
    }
    needed
}

fn lower_node(em: &mut Emitter, id: NodeId) -> Result<(), EmitError> {
    let g = em.g;
    let node = g.node(id);
    let out = ValueRef::new(id, 0);
    let val = match &node.op {
        Op::Const(wid) => em.constant(*wid)?,
        Op::Unary(k) => elementwise::unary(em, id, *k)?,
        Op::Binary(k) => elementwise::binary(em, id, *k)?,
        Op::Variadic(k) => elementwise::variadic(em, id, *k)?,
        Op::Where => elementwise::select(em, id)?,
        Op::Clip => elementwise::clip(em, id)?,
        Op::Cast(c) => elementwise::cast(em, id, c.to)?,
        Op::HardSigmoid(h) => elementwise::hard_sigmoid(em, id, h.alpha, h.beta)?,
        Op::LeakyRelu(a) => elementwise::leaky_relu(em, id, a.alpha)?,
        Op::Gelu(gl) => elementwise::gelu(em, id, &gl.approximate)?,
        Op::MatMul => linear::matmul(em, id)?,
        Op::Gemm(gm) => linear::gemm(em, id, gm)?,
        Op::MatMulNBits(q) => linear::matmul_nbits(em, id, q)?,
        Op::Conv(c) => conv::conv(em, id, c)?,
        Op::MaxPool(p) => conv::pool(em, id, p, true)?,
        Op::AveragePool(p) => conv::pool(em, id, p, false)?,
        Op::GlobalAveragePool => reduce::global_average_pool(em, id)?,
        Op::Reshape(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Flatten(_) => {
            layout::reshape_to_output(em, id)?
        }
        Op::Transpose(t) => layout::transpose(em, id, t.perm.as_deref())?,
        Op::Slice => layout::slice(em, id)?,
        Op::Concat(c) => layout::concat(em, id, c.axis)?,
        Op::Gather(a) => layout::gather(em, id, a.axis)?,
        Op::Shape(s) => layout::shape_of(em, id, s.start, s.end)?,
        Op::Range => layout::range(em, id)?,
        Op::Expand => layout::broadcast_to_output(em, id)?,
        Op::Tile => layout::tile(em, id)?,
        Op::Resize(r) => layout::resize(em, id, r)?,
        Op::Softmax(a) => reduce::softmax(em, id, a.axis)?,
        Op::LayerNorm(n) => reduce::layer_norm(em, id, n, true)?,
        Op::RmsNorm(n) => reduce::layer_norm(em, id, n, false)?,
        Op::Reduce(k, r) => reduce::reduce(em, id, *k, r)?,
        Op::QuantizeLinear(a) => quant::quantize(em, id, a)?,
        Op::DequantizeLinear(_) => quant::dequantize(em, id)?,
        other => {
            return Err(EmitError::Unsupported {
                node: node.describe(id),
                op: other.text_name(),
            })
        }
    };
    em.bind(out, val);
    Ok(())
}

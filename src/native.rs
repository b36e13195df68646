//! Native compilation (`--target cpu`, `--emit-mlir`): the graph is first canonicalized
//! with compc's own exact passes, so shape arithmetic is folded into static reshapes,
//! norms and GELUs are fused ops, and the MLIR emitter sees a small op set.
//!
//! Weights stored as QDQ codes (`quant{format=qdq}`, 8-bit weights) are dequantized into
//! float constants first: the native convolutions and matmuls compute in float, and with
//! constant weights the clean-up folds BatchNormalization into the convolutions before
//! it, and grouped convolutions see a constant filter. The compiled folder then holds those weights as
//! f32; `MatMulNBits` weights keep their codes (the fused kernels read them).

use anyhow::{anyhow, Result};
use compc_ir::{Graph, Op, ValueRef};
use compc_passes::{PassManager, Registry};
use compc_runtime::{eval_op, Tensor};

/// The exact passes run before lowering.
pub const PRE_LOWERING: &str = "const-fold,egraph-opt,dce";

/// A canonicalized copy of `g`, ready for the MLIR emitter.
pub fn prepare(g: &Graph) -> Result<Graph> {
    let passes = Registry::with_builtin_passes()
        .parse(PRE_LOWERING)
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = g.clone();
    dequantize_constants(&mut out)?;
    let mut pm = PassManager::new(passes);
    pm.run(&mut out).map_err(|e| anyhow!("{e}"))?;
    Ok(out)
}

/// Replaces every DequantizeLinear of constants by its float result (evaluated by the
/// reference runtime's kernel, so per-tensor, per-axis and blocked scales all agree with
/// it). Returns how many were folded.
fn dequantize_constants(g: &mut Graph) -> Result<usize> {
    let mut folded = 0;
    for id in g.topo_order().map_err(|e| anyhow!("{e}"))? {
        let node = g.node(id);
        if !matches!(node.op, Op::DequantizeLinear(_)) {
            continue;
        }
        let mut inputs = Vec::with_capacity(node.inputs().len());
        for v in node.inputs() {
            inputs.push(match v {
                None => None,
                Some(v) => match g.const_weight(*v) {
                    Some(w) => Some(Tensor::from_weight(w)?),
                    None => break,
                },
            });
        }
        if inputs.len() < node.inputs().len() {
            continue;
        }
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
        let what = node.describe(id);
        let name = format!("{}_dequantized", node.name);
        let [y] = <[Tensor; 1]>::try_from(eval_op(&node.op, &refs, 1)?)
            .map_err(|_| anyhow!("{what}: expected one output"))?;
        let c = g.add_const(y.to_weight(&name)?);
        g.replace_all_uses(ValueRef::new(id, 0), ValueRef::new(c, 0));
        folded += 1;
    }
    Ok(folded)
}

/// The MLIR text of `g` after [`prepare`].
pub fn emit_mlir(g: &Graph) -> Result<compc_backend_mlir::emit::MlirModule> {
    let p = prepare(g)?;
    Ok(compc_backend_mlir::emit::emit_module(&p)?)
}

/// JIT-compiles `g` in process (tests and benchmarks).
#[cfg(feature = "mlir")]
pub fn jit(g: &Graph) -> Result<compc_runtime::native::NativeModel> {
    let p = prepare(g)?;
    let m = compc_backend_mlir::emit::emit_module(&p)?;
    Ok(compc_backend_mlir::compile::jit(&p, &m, 3)?)
}

/// Compiles `g` for the CPU into `dir` (shared library, weights, manifest).
pub fn compile_cpu(g: &Graph, dir: &std::path::Path) -> Result<()> {
    let p = prepare(g)?;
    compc_backend_mlir::compile_cpu(&p, dir)?;
    Ok(())
}

/// Compiles `g` for an NVIDIA GPU (`chip`, e.g. `sm_90`) into `dir`.
pub fn compile_gpu(g: &Graph, dir: &std::path::Path, chip: &str) -> Result<()> {
    let p = prepare(g)?;
    compc_backend_mlir::compile_gpu(&p, dir, chip)?;
    Ok(())
}

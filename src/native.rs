//! Native compilation (`--target cpu`, `--emit-mlir`): the graph is first canonicalized
//! with compc's own exact passes, so shape arithmetic is folded into static reshapes,
//! norms and GELUs are fused ops, and the MLIR emitter sees a small op set.
//!
//! Weights stored as QDQ codes (`quant{format=qdq}`, 8-bit weights): a MatMul's become
//! `MatMulNBits` first, so that the compiled folder keeps their integer codes and the
//! fused kernels dequantize them in registers, as for `quant`'s own MatMulNBits. The rest
//! (convolution and Gemm kernels) are dequantized into float constants: the native
//! convolutions compute in float, and with constant weights the clean-up folds
//! BatchNormalization into the convolutions before it, and grouped convolutions see a
//! constant filter. The compiled folder holds those as f32.
//!
//! 2-bit `MatMulNBits` (`quant{bits=2}`) is widened to 4-bit containers with the same
//! codes, which the fused kernels read. `rotate`'s online Hadamard nodes become a few
//! small MatMuls and Transposes (`rotate::hadamard_matmuls`), which the emitter lowers
//! like any other.

use anyhow::{anyhow, Result};
use compc_ir::Graph;
use compc_passes::const_fold::fold_dequantized_weights;
use compc_passes::quant::qdq_to_nbits::qdq_matmuls_to_nbits;
use compc_passes::quant::widen_nbits::widen_two_bit_nbits;
use compc_passes::rotate::hadamard_matmuls::hadamards_to_matmuls;
use compc_passes::{PassManager, Registry};

/// The exact passes run before lowering.
pub const PRE_LOWERING: &str = "const-fold,egraph-opt,dce";

/// A canonicalized copy of `g`, ready for the MLIR emitter.
pub fn prepare(g: &Graph) -> Result<Graph> {
    let passes = Registry::with_builtin_passes()
        .parse(PRE_LOWERING)
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = g.clone();
    qdq_matmuls_to_nbits(&mut out).map_err(|e| anyhow!("{e}"))?;
    widen_two_bit_nbits(&mut out).map_err(|e| anyhow!("{e}"))?;
    fold_dequantized_weights(&mut out).map_err(|e| anyhow!("{e}"))?;
    let mut pm = PassManager::new(passes);
    pm.run(&mut out).map_err(|e| anyhow!("{e}"))?;
    // After the clean-up, which knows Hadamard pairs that cancel.
    hadamards_to_matmuls(&mut out).map_err(|e| anyhow!("{e}"))?;
    Ok(out)
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

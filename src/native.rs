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

/// What [`prepare`] rewrote so that the emitter could lower it, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lowered {
    /// QDQ MatMul weights that became MatMulNBits (integer codes kept).
    pub qdq_matmuls_to_nbits: usize,
    /// 2-bit MatMulNBits widened to 4-bit containers.
    pub two_bit_widened: usize,
    /// Other QDQ weights (convolutions, Gemms) dequantized into f32 constants.
    pub dequantized_to_f32: usize,
    /// Online Hadamard nodes rewritten as small MatMuls.
    pub hadamards_to_matmuls: usize,
}

impl Lowered {
    /// One line per kind of rewrite that happened.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |n: usize, what: &str| {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        };
        say(
            self.qdq_matmuls_to_nbits,
            "QDQ MatMul weight(s) became MatMulNBits: their integer codes are kept",
        );
        say(
            self.two_bit_widened,
            "2-bit MatMulNBits widened to 4-bit containers (the same codes, twice the bytes)",
        );
        say(
            self.dequantized_to_f32,
            "QDQ convolution or Gemm weight(s) dequantized to f32 (the native convolutions \
             compute in float)",
        );
        say(
            self.hadamards_to_matmuls,
            "online Hadamard(s) became small MatMuls, one per Kronecker factor",
        );
        out
    }
}

/// A canonicalized copy of `g`, ready for the MLIR emitter.
pub fn prepare(g: &Graph) -> Result<Graph> {
    Ok(prepare_counted(g)?.0)
}

/// [`prepare`], also saying what it rewrote.
pub fn prepare_counted(g: &Graph) -> Result<(Graph, Lowered)> {
    let passes = Registry::with_builtin_passes()
        .parse(PRE_LOWERING)
        .map_err(|e| anyhow!("{e}"))?;
    let mut out = g.clone();
    let err = |e: compc_passes::PassError| anyhow!("{e}");
    let mut lowered = Lowered {
        qdq_matmuls_to_nbits: qdq_matmuls_to_nbits(&mut out).map_err(err)?,
        two_bit_widened: widen_two_bit_nbits(&mut out).map_err(err)?,
        dequantized_to_f32: fold_dequantized_weights(&mut out).map_err(err)?,
        ..Lowered::default()
    };
    let mut pm = PassManager::new(passes);
    pm.run(&mut out).map_err(|e| anyhow!("{e}"))?;
    // After the clean-up, which knows Hadamard pairs that cancel.
    lowered.hadamards_to_matmuls = hadamards_to_matmuls(&mut out).map_err(err)?;
    Ok((out, lowered))
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
pub fn compile_cpu(g: &Graph, dir: &std::path::Path) -> Result<Lowered> {
    let (p, lowered) = prepare_counted(g)?;
    compc_backend_mlir::compile_cpu(&p, dir)?;
    Ok(lowered)
}

/// Compiles `g` for an NVIDIA GPU (`chip`, e.g. `sm_90`) into `dir`.
pub fn compile_gpu(g: &Graph, dir: &std::path::Path, chip: &str) -> Result<Lowered> {
    let (p, lowered) = prepare_counted(g)?;
    compc_backend_mlir::compile_gpu(&p, dir, chip)?;
    Ok(lowered)
}

//! The NVIDIA GPU target (`--target gpu`): the same `linalg` module as the CPU target,
//! emitted with every constant as an argument ([`crate::emit::EmitOptions::GPU`]), is
//! bufferized, mapped to blocks and threads, lowered to PTX kernels, and linked with a
//! host function that launches them through [`shim`]. `compc_runtime::native::gpu` loads
//! the result with the CUDA driver (cudarc).

#[cfg(feature = "mlir")]
pub mod compile;
pub mod hand_kernels;
pub mod mapping;
pub mod pipeline;
pub mod ptx_summary;
pub mod result_copies;
pub mod rewrite;
pub mod shim;
pub mod wide_loops;

/// The architecture PTX is generated for unless asked otherwise (H100).
pub const DEFAULT_CHIP: &str = "sm_90";

//! compc: a compiler and IR for neural-network compression.
//!
//! This crate is the `compc` command and a thin facade over the workspace crates, so a
//! library user depends on one crate:
//! - [`ir`]: the graph IR, verifier, shape inference and text format;
//! - [`passes`]: the `Pass` trait, registry, pipeline syntax, pass manager and passes;
//! - [`runtime`]: the reference interpreter and calibration executor;
//! - [`onnx`]: ONNX import and export.
//!
//! [`driver`] holds what the command does (load, run a pipeline, write an output folder
//! atomically), usable from code too.

pub use compc_ir as ir;
pub use compc_passes as passes;
pub use compc_runtime as runtime;

pub use compc_backend_mlir as mlir;

pub mod onnx {
    pub use compc_backend_onnx as export;
    pub use compc_frontend_onnx as import;
}

pub mod calib;
pub mod conformance;
pub mod driver;
pub mod eval;
pub mod native;
pub mod outdir;

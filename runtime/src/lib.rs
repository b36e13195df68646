//! compc's reference runtime: an interpreter for any IR graph with ONNX semantics. It is
//! the numeric oracle every pass is checked against, and (through [`Executor`]) the
//! calibration executor that taps intermediate values for GPTQ/AWQ/QwT-style passes.
//!
//! - [`Tensor`]: dtype + shape + flat buffer; f16/bf16 compute in f32, 4-bit unpacked.
//! - [`eval_op`]: one node's kernel (files under `ops/`, one per op family).
//! - [`Executor`] / [`run`]: whole graphs, freeing each intermediate after its last use.
//! - [`npz`]: numpy `.npz` input/output.

// Numeric kernels index several parallel arrays with one loop variable; iterator
// chains over zips of four slices read worse than the index.
#![allow(clippy::needless_range_loop)]

pub mod broadcast;
pub mod control;
pub mod error;
pub mod executor;
pub mod native;
pub mod npz;
pub mod ops;
pub mod strings;
pub mod tensor;
pub mod value;

pub use error::RuntimeError;
pub use executor::{run, run_values, Arg, Executor};
pub use ops::eval_op;
pub use ops::index::router_k;
pub use ops::quant::matmul_nbits_weight;
pub use tensor::{Elem, Tensor, TensorData};
pub use value::{Sequence, StrTensor, Value};

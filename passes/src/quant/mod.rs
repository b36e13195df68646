//! Pass `quant`: post-training quantization of linear layers (techniques.md §1).
//!
//! - [`options`]: the option schema and how unset options are decided;
//! - [`grid`]: the uniform affine quantizer; [`qmatrix`]: a quantized weight matrix;
//! - [`layers`]: which layers are quantized, read and written in W-form;
//! - methods: [`rtn`], [`gptq`], [`awq`], [`smoothquant`]; activation ranges:
//!   [`act_calib`];
//! - lowerings: [`lower_qdq`] (QuantizeLinear/DequantizeLinear, also for activations) and
//!   [`lower_nbits`] (`com.microsoft.MatMulNBits`);
//! - [`pass`]: the pass itself, which runs a method over every layer block by block and
//!   lowers the result.

pub mod act_calib;
pub mod awq;
pub mod fold;
pub mod gptq;
pub mod grid;
pub mod importance;
pub mod layers;
pub mod lower_nbits;
pub mod lower_qdq;
pub mod options;
pub mod pass;
pub mod qdq_to_nbits;
pub mod qmatrix;
pub mod rtn;
pub mod smoothquant;
pub mod widen_nbits;

pub use grid::Grid;
pub use options::{QuantConfig, OPTIONS};
pub use pass::Quant;
pub use qmatrix::QMatrix;

use crate::pass::Exactness;
use crate::registry::PassDescriptor;

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "quant",
        summary: "post-training quantization of linear layers (RTN, GPTQ, AWQ, SmoothQuant) to QDQ or MatMulNBits",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| Ok(Box::new(Quant::new(o.clone()))),
    }
}

//! Pass `fold-affine`: compensation of quantization error fitted on calibration data
//! (techniques.md §3): QwT-v2's channel-wise affine compensation folded into the
//! quantized layers (`method=cwac`), or QwT's block-wise linear compensation
//! (`method=qwt`).
//!
//! - [`options`]: the option schema;
//! - [`affine`]: CWAC's streamed per-channel sums and closed-form fit;
//! - [`layer`]: the quantized layers with their float twins, and the folding algebra;
//! - [`lstsq`]: QwT's streamed least squares with its `r²`;
//! - [`qwt`]: the block spans, the float copy of the graph and QwT's insertion;
//! - [`pass`]: the pass, block-sequential over the calibration data.

pub mod affine;
pub mod layer;
pub mod lstsq;
pub mod options;
pub mod pass;
pub mod qwt;

pub use options::{FoldAffineConfig, OPTIONS};
pub use pass::FoldAffine;

use crate::pass::Exactness;
use crate::registry::PassDescriptor;

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "fold-affine",
        summary: "compensation of quantization error fitted on calibration data (after quant): channel-wise affine (QwT-v2 CWAC) folded into each quantized layer's scales and bias, or block-wise linear (QwT) as a MatMul+Add per block",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| {
            FoldAffineConfig::resolve(o)?;
            Ok(Box::new(FoldAffine::new(o.clone())))
        },
    }
}

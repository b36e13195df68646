//! Pass `fold-affine`: compensation of quantization error folded into the quantized
//! layers (techniques.md §3.2, QwT-v2's channel-wise affine compensation).
//!
//! - [`options`]: the option schema;
//! - [`affine`]: the streamed per-channel sums and the closed-form fit;
//! - [`layer`]: the quantized layers with their float twins, and the folding algebra;
//! - [`pass`]: the pass, block-sequential over the calibration data.

pub mod affine;
pub mod layer;
pub mod options;
pub mod pass;

pub use options::{FoldAffineConfig, OPTIONS};
pub use pass::FoldAffine;

use crate::pass::Exactness;
use crate::registry::PassDescriptor;

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "fold-affine",
        summary: "channel-wise affine compensation of quantization error (QwT-v2 CWAC), fitted on calibration data and folded into each quantized layer's scales and bias (after quant)",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| {
            FoldAffineConfig::resolve(o)?;
            Ok(Box::new(FoldAffine::new(o.clone())))
        },
    }
}

//! Pass `low-rank`: factor linear layers into two thinner ones (techniques.md §8).
//!
//! - [`options`]: the option schema and the resolved configuration;
//! - [`factor`]: truncated SVD, ASVD's scaled SVD, SVD-LLM's whitened SVD and the
//!   output-feature PCA of one weight in f64;
//! - [`pass`]: the pass itself: picks the layers, collects calibration statistics,
//!   rewrites each layer into two MatMuls and reports what it did.

pub mod alloc;
pub mod factor;
pub mod options;
pub mod pass;

pub use options::{LowRankConfig, OPTIONS};
pub use pass::LowRank;

use crate::pass::Exactness;
use crate::registry::PassDescriptor;

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "low-rank",
        summary: "factor linear layers into two MatMuls of rank r: truncated SVD, ASVD (activation-scaled), SVD-LLM (whitened by the calibration Gram matrix) or pca-out (PCA of the output features, mean folded into the bias)",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| {
            LowRankConfig::resolve(o)?;
            Ok(Box::new(LowRank::new(o.clone())))
        },
    }
}

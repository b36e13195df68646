//! Pass `prune`: unstructured, N:M and structured pruning (techniques.md §2).
//!
//! - [`options`]: the option schema and the resolved configuration;
//! - scores and masks: [`magnitude`], [`wanda`], [`pattern`] (unstructured / N:M masks
//!   and their checks), [`sparsegpt`] (OBS updates, sharing GPTQ's Hessian machinery in
//!   [`crate::calib::hessian`]);
//! - [`sparse`]: runs a method over the layers, block by block when it is calibrated;
//! - [`structured`]: dependency groups of coupled dimensions, importance, and the rewrite
//!   that shrinks the tensors;
//! - [`pass`]: the pass itself.

pub mod magnitude;
pub mod options;
pub mod pass;
pub mod pattern;
pub mod sparse;
pub mod sparsegpt;
pub mod structured;
pub mod wanda;

pub use options::{PruneConfig, OPTIONS};
pub use pass::Prune;

use crate::pass::Exactness;
use crate::registry::PassDescriptor;

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "prune",
        summary: "weight pruning: magnitude, Wanda or SparseGPT to a sparsity (unstructured, 2:4, 4:8), or structured removal of MLP hidden units, attention heads, convolution channels or hidden-size channels",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| Ok(Box::new(Prune::new(o.clone()))),
    }
}

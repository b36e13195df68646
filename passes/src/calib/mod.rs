//! Calibration machinery shared by the lossy passes (quant, prune): checking
//! calibration data against the model, running the graph batch by batch with earlier
//! results cached at a cut (so block ℓ's statistics come from the already-compressed
//! blocks before it), and accumulating input statistics of linear layers (the Hessian
//! `2XᵀX/N`, mean and max |x| per channel).

pub mod hessian;
pub mod linalg;
pub mod runner;
pub mod sequential;
pub mod stats;

pub use runner::CalibRunner;
pub use sequential::{Sequencer, Stage};
pub use stats::InputStats;

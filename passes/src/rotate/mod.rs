//! The `rotate` pass and its parts: Hadamard constructions, the rotation primitive, the
//! residual stream's structure, norm folding and stream rotation, online rotations, and
//! the same rotations as explicit ops (`fold=false`).

pub mod explicit;
pub mod hadamard;
pub mod hadamard_matmuls;
pub mod online;
pub mod pass;
pub mod rotation;
pub mod stream;
pub mod weights;

pub use pass::{descriptor, Rotate};

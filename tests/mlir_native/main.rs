//! The MLIR backend's native code (feature `mlir`): the CPU target (`cpu`) and the GPU
//! target (`gpu`). They share one test binary because every binary built with the
//! feature links LLVM/MLIR statically (~300 MB each); the emitter's own tests, which need
//! no MLIR installation, are `tests/mlir_emit.rs`.

#![cfg(feature = "mlir")]

#[path = "../common/mod.rs"]
mod common;

mod cpu;
mod gpu;

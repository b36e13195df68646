//! The MLIR pass pipeline from tensor-level linalg to the LLVM dialect on CPU.

use crate::schedule::cpu_schedule;

/// After [`SCHEDULE_PIPELINE`]: bufferize (function boundaries with
/// identity layouts, results turned into caller-allocated out-params, intermediate
/// buffers freed by ownership-based deallocation, allocated from
/// [`crate::block_cache`]), lower linalg to loops and the
/// schedule's vector transfers to unrolled 1-D ones, then everything to LLVM. Transcendentals go through LLVM intrinsics or libm (`erff`).
pub fn cpu_pipeline() -> String {
    [
        "builtin.module(",
        "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},",
        "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},",
        "buffer-deallocation-pipeline,",
        "func.func(convert-linalg-to-loops),",
        "convert-vector-to-scf{full-unroll=1},",
        "convert-scf-to-cf, expand-strided-metadata, lower-affine,",
        "convert-vector-to-llvm{reassociate-fp-reductions=1},",
        "finalize-memref-to-llvm{use-generic-functions=1}, convert-math-to-llvm, convert-math-to-libm,",
        "convert-arith-to-llvm, convert-ub-to-llvm, convert-index-to-llvm, convert-cf-to-llvm,",
        "convert-func-to-llvm,",
        "reconcile-unrealized-casts)",
    ]
    .concat()
}

/// First stage: register-tile and vectorize the matmuls ([`cpu_schedule`]'s
/// `__contractions`), fuse element-wise chains, then the rest of the schedule. Fusion runs
/// before the convolutions are generalized: a generic convolution would otherwise absorb
/// its element-wise producers and recompute them (an erf or sigmoid per multiply-add).
pub const SCHEDULE_PIPELINE: &str = "builtin.module(transform-interpreter{entry-point=__contractions}, func.func(linalg-fuse-elementwise-ops, canonicalize, cse), transform-interpreter)";

/// The emitted module with [`cpu_schedule`] attached for the transform interpreter.
pub fn with_cpu_schedule(text: &str) -> String {
    let body = text
        .trim_end()
        .strip_suffix('}')
        .expect("an emitted module ends with `}`");
    let body = body.replacen(
        "module {",
        "module attributes {transform.with_named_sequence} {",
        1,
    );
    format!("{body}{}}}\n", cpu_schedule())
}

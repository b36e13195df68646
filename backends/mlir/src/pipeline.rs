//! The MLIR pass pipeline from tensor-level linalg to the LLVM dialect on CPU.

/// Fuse element-wise chains into their producers, bufferize (function boundaries with
/// identity layouts, results turned into caller-allocated out-params, intermediate
/// buffers freed by ownership-based deallocation), lower linalg to loops, then everything
/// to LLVM. Transcendentals go through LLVM intrinsics or libm (`erff`).
pub fn cpu_pipeline() -> String {
    [
        "builtin.module(",
        "func.func(canonicalize, cse, linalg-fuse-elementwise-ops, canonicalize),",
        "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},",
        "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},",
        "buffer-deallocation-pipeline,",
        "func.func(convert-linalg-to-loops),",
        "convert-scf-to-cf, expand-strided-metadata, lower-affine,",
        "finalize-memref-to-llvm, convert-math-to-llvm, convert-math-to-libm,",
        "convert-arith-to-llvm, convert-index-to-llvm, convert-cf-to-llvm, convert-func-to-llvm,",
        "reconcile-unrealized-casts)",
    ]
    .concat()
}

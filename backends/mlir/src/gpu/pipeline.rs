//! The MLIR pass pipelines of the GPU target (see [`super::compile`] for the stages).

/// Fuse element-wise chains, then bufferize like the CPU target.
pub const BUFFERIZE: &str = concat!(
    "builtin.module(func.func(linalg-fuse-elementwise-ops, canonicalize, cse),",
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},",
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},",
    "buffer-deallocation-pipeline, canonicalize)"
);

/// Every linalg op becomes one `scf.parallel` over its parallel dims.
pub const TO_LOOPS: &str =
    "builtin.module(func.func(convert-linalg-to-parallel-loops, canonicalize))";

/// Mapped parallel loops → outlined kernels → NVVM → PTX text for `chip`.
/// `gpu-launch-sink-index-computations` moves the constants (and index arithmetic on
/// them) that canonicalization hoisted out of each `gpu.launch` back into it before
/// outlining; without it every such constant became a kernel parameter, so PTX shifted
/// and masked by registers instead of immediates (the int4 kernel's 11008×4096 chain went
/// from 53% to 66% of copy bandwidth on an H100 with it, and every kernel got shorter). `+ptx80` is the
/// oldest PTX version that knows sm_90; `format=isa` keeps PTX (no `ptxas` needed).
pub fn to_kernels(chip: &str) -> String {
    [
        "builtin.module(func.func(convert-parallel-loops-to-gpu), gpu-launch-sink-index-computations, gpu-kernel-outlining,",
        "lower-affine, convert-scf-to-cf, expand-strided-metadata, lower-affine,",
        &format!("nvvm-attach-target{{chip={chip} features=+ptx80 O=3}},"),
        "gpu.module(convert-gpu-to-nvvm, canonicalize, cse, reconcile-unrealized-casts),",
        "gpu-module-to-binary{format=isa})",
    ]
    .concat()
}

/// The host function → LLVM: buffers through the generic allocation functions (which
/// the runtime backs with device memory), launches through MLIR's GPU runtime API.
pub const HOST: &str = concat!(
    "builtin.module(finalize-memref-to-llvm{use-generic-functions=1}, convert-arith-to-llvm,",
    "convert-index-to-llvm, convert-cf-to-llvm, gpu-to-llvm, convert-func-to-llvm,",
    "reconcile-unrealized-casts)"
);

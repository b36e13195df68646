//! The MLIR pass pipeline from tensor-level linalg to the LLVM dialect on CPU.

/// After [`SCHEDULE_PIPELINE`]: bufferize (function boundaries with
/// identity layouts, results turned into caller-allocated out-params, intermediate
/// buffers freed by ownership-based deallocation), lower linalg to loops, then everything
/// to LLVM. Transcendentals go through LLVM intrinsics or libm (`erff`).
pub fn cpu_pipeline() -> String {
    [
        "builtin.module(",
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

/// First stage: fuse element-wise chains, then apply [`CPU_SCHEDULE`]. Fusion runs before
/// the contractions are generalized: a generic matmul or convolution would otherwise
/// absorb its element-wise producers and recompute them (an erf or sigmoid per
/// multiply-add).
pub const SCHEDULE_PIPELINE: &str =
    "builtin.module(func.func(linalg-fuse-elementwise-ops, canonicalize, cse), transform-interpreter)";

/// Loop orders for speed, applied by the transform interpreter before the pipeline: the
/// named contractions are generalized and interchanged so their innermost loop runs along
/// the output's contiguous dim (n for matmuls, the output width for convolutions and
/// pooling). Loops that are parallel and unit-stride innermost are what LLVM's loop
/// vectorizer turns into SIMD code; the named ops' own order (reduction innermost) is not.
pub const CPU_SCHEDULE: &str = r#"
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %mm = transform.structured.match ops{["linalg.matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    %mmg = transform.structured.generalize %mm : (!transform.any_op) -> !transform.any_op
    %mmi = transform.structured.interchange %mmg iterator_interchange = [0, 2, 1] : (!transform.any_op) -> !transform.any_op
    %bm = transform.structured.match ops{["linalg.batch_matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    %bmg = transform.structured.generalize %bm : (!transform.any_op) -> !transform.any_op
    %bmi = transform.structured.interchange %bmg iterator_interchange = [0, 1, 3, 2] : (!transform.any_op) -> !transform.any_op
    %cv = transform.structured.match ops{["linalg.conv_2d_nchw_fchw"]} in %root : (!transform.any_op) -> !transform.any_op
    %cvg = transform.structured.generalize %cv : (!transform.any_op) -> !transform.any_op
    %cvi = transform.structured.interchange %cvg iterator_interchange = [0, 1, 4, 5, 6, 2, 3] : (!transform.any_op) -> !transform.any_op
    %dw = transform.structured.match ops{["linalg.depthwise_conv_2d_nchw_chw"]} in %root : (!transform.any_op) -> !transform.any_op
    %dwg = transform.structured.generalize %dw : (!transform.any_op) -> !transform.any_op
    %dwi = transform.structured.interchange %dwg iterator_interchange = [0, 3, 4, 5, 1, 2] : (!transform.any_op) -> !transform.any_op
    %pl = transform.structured.match ops{["linalg.pooling_nchw_max", "linalg.pooling_nchw_sum"]} in %root : (!transform.any_op) -> !transform.any_op
    %plg = transform.structured.generalize %pl : (!transform.any_op) -> !transform.any_op
    %pli = transform.structured.interchange %plg iterator_interchange = [0, 1, 4, 5, 2, 3] : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
"#;

/// The emitted module with [`CPU_SCHEDULE`] attached for the transform interpreter.
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
    format!("{body}{CPU_SCHEDULE}}}\n")
}

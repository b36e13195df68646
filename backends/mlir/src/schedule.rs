//! The CPU loop schedule: a transform-dialect script the transform interpreter applies to
//! the emitted module before bufferization (see [`crate::pipeline::SCHEDULE_PIPELINE`]).
//!
//! Two entry points run at two moments:
//! - `__contractions`, first, on the module as emitted: matmuls are register-tiled and
//!   vectorized while they are still named ops (element-wise fusion would otherwise turn a
//!   matmul next to a reshape into a higher-rank `linalg.generic` no recipe matches).
//! - `__transform_main`, after element-wise fusion: convolutions are register-tiled and
//!   vectorized, element-wise ops vectorized along their innermost dim, pooling is put in
//!   a loop order LLVM's loop vectorizer handles, and all vector ops are lowered to 1-D
//!   FMAs, loads and stores.

/// The transform script: [`SEQUENCES`], the element-wise recipes for each rank, then
/// [`MAIN`].
pub fn cpu_schedule() -> String {
    let ranks = 1..=MAX_ELEMENTWISE_RANK;
    let sequences: String = ranks.clone().map(elementwise_sequences).collect();
    let mut pairs: Vec<String> = ranks
        .map(|r| format!("        @match_elementwise{r} -> @vectorize_elementwise{r}"))
        .collect();
    let reductions: String = SPATIAL_REDUCTION_RANKS
        .map(spatial_reduction_sequences)
        .collect();
    pairs.extend(SPATIAL_REDUCTION_RANKS.map(|r| {
        format!("        @match_spatial_reduction{r} -> @vectorize_spatial_reduction{r}")
    }));
    let contractions = [
        contraction_sequence("tile_batch_matmul", 1, false),
        contraction_sequence("tile_matmul", 0, false),
        contraction_sequence("tile_fuse_batch_matmul", 1, true),
    ]
    .join("\n");
    let conv_fused = [
        conv_fused_sequence("tile_conv_fused", 8),
        conv_fused_sequence("tile_conv_fused_wide", 16),
    ]
    .join("\n");
    format!(
        "{}{sequences}{reductions}{}",
        SEQUENCES
            .replace("{contraction_sequences}", &contractions)
            .replace("{conv_fused_sequences}", &conv_fused),
        MAIN.replace("{elementwise_pairs}", &pairs.join(",\n"))
    )
}

/// The named sequences of the matmul and convolution recipes and `__contractions`.
///
/// Register tile of a matmul: 8 rows × 32 columns of the output (8 × 16 on hosts without
/// AVX-512, see [`wide_register_file`]) stay in vector registers while k runs; every k step
/// is one outer product: a row of B (two or one vector loads) times 8 broadcast elements
/// of A (LLVM folds the broadcasts into the FMAs' memory operands).
///
/// Tiling: `tile_using_for` cuts m × n into 8 × 32 (or 8 × 16) tiles (batch dims by 1); the m and n
/// loops are peeled, so the full tiles have static shapes and vectorize without masks,
/// while the last partial row or column of tiles (dynamic batch·sequence, N not a multiple
/// of the tile) is vectorized with masks. Each tile's k loop is then tiled by 1 and vectorized;
/// LICM and `hoist_loop_invariant_subsets` move the accumulator's read and write out of
/// the k loop, so it is carried in registers.
///
/// Peeling fails (silenceably) when the tile already divides the dim; `@peel` is included
/// with failures suppressed so that case just keeps the loop.
const SEQUENCES: &str = r#"
  transform.named_sequence @peel(%l: !transform.op<"scf.for"> {transform.consumed}) {
    %main, %rest = transform.loop.peel %l : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
    transform.yield
  }

{contraction_sequences}
  // The accumulator's transfer_read/transfer_write pair becomes a loop-carried vector
  // (masks are hoisted first, else the masked pair is not recognized as loop-invariant).
  transform.named_sequence @hoist_accumulator(%f: !transform.any_op {transform.readonly}, %k: !transform.any_op {transform.readonly}) {
    transform.apply_patterns to %f {
      transform.apply_patterns.vector.lower_masked_transfers
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    transform.apply_licm to %k : !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %k : !transform.any_op
    transform.yield
  }

  // A static-shaped linalg op vectorized as a whole (failures are suppressed by the caller).
  transform.named_sequence @vectorize_whole(%op: !transform.any_op {transform.consumed}) {
    transform.structured.vectorize %op : !transform.any_op
    transform.yield
  }

  transform.named_sequence @__contractions(%root: !transform.any_op {transform.readonly}) {
    // 1×1 convolutions: the accumulator's producer (the bias broadcast) is fused into the
    // tiles; tiling by `fuse` takes producers of the inputs too, but here those are a
    // constant and a reshape, which it does not fuse.
    %bmf = transform.structured.match ops{["linalg.batch_matmul"]} attributes{compc.fuse_init} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bmf : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_fuse_batch_matmul failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %bm = transform.structured.match ops{["linalg.batch_matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %bm : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_batch_matmul failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %mm = transform.structured.match ops{["linalg.matmul"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %mm : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_matmul failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    transform.yield
  }


  // Depthwise convolution: 4 output rows × 8 output columns of one channel stay in
  // registers while the kh × kw taps run; each tap is one multiply-add of contiguous input
  // rows by a broadcast weight. Tiling every other dim by 1 and folding the unit dims turns
  // the tile into an element-wise op the vectorizer handles. Tiles that are partial (the
  // output is not a multiple of 4 × 8) stay scalar loops.
  transform.named_sequence @tile_depthwise(%op: !transform.any_op {transform.consumed}) {
    %g = transform.structured.generalize %op : (!transform.any_op) -> !transform.any_op
    // (n, oh, ow, c, kh, kw) -> (n, c, oh, ow, kh, kw)
    %i = transform.structured.interchange %g iterator_interchange = [0, 3, 1, 2, 4, 5] : (!transform.any_op) -> !transform.any_op
    %t, %ln, %lc, %lh, %lw, %lkh, %lkw = transform.structured.tile_using_for %i tile_sizes [1, 1, 4, 8, 1, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.include @taps_kh_kw failures(propagate) (%lkh, %lkw) : (!transform.any_op, !transform.any_op) -> ()
    transform.yield
  }

  // The same with the accumulator's producer (a bias broadcast) fused into the tile loops
  // over the output and vectorized whole, so each tile starts from the bias in registers
  // (see `compc.fuse_init` in the emitter).
  transform.named_sequence @tile_depthwise_fused(%op: !transform.any_op {transform.consumed}) {
    %g = transform.structured.generalize %op : (!transform.any_op) -> !transform.any_op
    %i = transform.structured.interchange %g iterator_interchange = [0, 3, 1, 2, 4, 5] : (!transform.any_op) -> !transform.any_op
    %o, %ln, %lc, %lh, %lw = transform.structured.fuse %i tile_sizes [1, 1, 4, 8, 0, 0] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    %acc = transform.get_producer_of_operand %o[2] : (!transform.any_op) -> !transform.any_op
    transform.include @vectorize_whole failures(suppress) (%acc) : (!transform.any_op) -> ()
    %t, %lkh, %lkw = transform.structured.tile_using_for %o tile_sizes [0, 0, 0, 0, 1, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    transform.include @taps_kh_kw failures(propagate) (%lkh, %lkw) : (!transform.any_op, !transform.any_op) -> ()
    // Folds the slices between the bias write and the accumulator's first read, so the
    // tile starts from the broadcast bias in registers (no store and reload).
    transform.apply_patterns to %lw {
      transform.apply_patterns.tensor.fold_tensor_subset_ops
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    transform.yield
  }

{conv_fused_sequences}
  // Convolution (1×1 ones are matmuls already): 4 filters × 2 output rows × 8 columns in
  // registers while the c × kh × kw taps run, each tap 4 broadcast weights times 2
  // contiguous input rows.
  transform.named_sequence @tile_conv(%op: !transform.any_op {transform.consumed}) {
    %g = transform.structured.generalize %op : (!transform.any_op) -> !transform.any_op
    // (n, f, oh, ow, c, kh, kw)
    %t, %ln, %lf, %lh, %lw, %lc, %lkh, %lkw = transform.structured.tile_using_for %g tile_sizes [1, 4, 2, 8, 1, 1, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.include @taps_c_kh_kw failures(propagate) (%lc, %lkh, %lkw) : (!transform.any_op, !transform.any_op, !transform.any_op) -> ()
    transform.yield
  }

  // The kh × kw tap loops of a convolution tile: the innermost tap vectorized, then the
  // accumulator's read and write hoisted out of the kw and kh loops, so it stays in
  // registers while the taps run.
  transform.named_sequence @taps_kh_kw(%lkh: !transform.any_op {transform.readonly}, %lkw: !transform.any_op {transform.readonly}) {
    transform.include @vectorize_taps failures(suppress) (%lkw) : (!transform.any_op) -> ()
    transform.loop.hoist_loop_invariant_subsets %lkw : !transform.any_op
    transform.apply_licm to %lkh : !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %lkh : !transform.any_op
    transform.yield
  }

  // The same with an input-channel loop around the taps (dense convolutions): the
  // accumulator is hoisted out of it too.
  transform.named_sequence @taps_c_kh_kw(%lc: !transform.any_op {transform.readonly}, %lkh: !transform.any_op {transform.readonly}, %lkw: !transform.any_op {transform.readonly}) {
    transform.include @taps_kh_kw failures(propagate) (%lkh, %lkw) : (!transform.any_op, !transform.any_op) -> ()
    transform.apply_licm to %lc : !transform.any_op
    transform.loop.hoist_loop_invariant_subsets %lc : !transform.any_op
    transform.yield
  }

  // The tile in the innermost tap loop: unit dims folded away, vectorized, the
  // accumulator's read and write made loop-invariant.
  transform.named_sequence @vectorize_taps(%l: !transform.any_op {transform.readonly}) {
    transform.apply_patterns to %l {
      transform.apply_patterns.linalg.fold_unit_extent_dims_via_slices
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %t = transform.structured.match interface{LinalgOp} in %l : (!transform.any_op) -> !transform.any_op
    transform.structured.vectorize %t : !transform.any_op
    transform.apply_patterns to %l {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    transform.apply_licm to %l : !transform.any_op
    // The tap is `acc + x * w` as two ops; allowing contraction lets LLVM fuse them into
    // one FMA (the named op's body carries no fast-math flags of its own).
    %mac = transform.structured.match ops{["arith.mulf", "arith.addf"]} in %l : (!transform.any_op) -> !transform.any_op
    %contract = transform.param.constant #arith.fastmath<contract> -> !transform.any_param
    transform.annotate %mac "fastmath" = %contract : !transform.any_op, !transform.any_param
    transform.yield
  }
"#;

/// `__transform_main`; `{elementwise_pairs}` is the matcher → action list of
/// [`elementwise_sequences`].
const MAIN: &str = r#"
  // Convolutions are register-tiled as above, element-wise ops vectorized by
  // `elementwise_sequences` (consuming the root: the matched ops are rewritten). Pooling
  // is generalized and interchanged so its innermost loop runs along the output width:
  // loops that are parallel and unit-stride innermost are what LLVM's loop vectorizer
  // turns into SIMD code; the named op's own order (window innermost) is not. Then all
  // vector ops are lowered to 1-D vectors: contractions to outer products to FMAs,
  // transfers to 1-D loads and stores.
  transform.named_sequence @__transform_main(%root0: !transform.any_op {transform.consumed}) {
    %cvw = transform.structured.match ops{["linalg.conv_2d_nchw_fchw"]} attributes{compc.fuse_init, compc.wide} in %root0 : (!transform.any_op) -> !transform.any_op
    transform.foreach %cvw : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_conv_fused_wide failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %cvf = transform.structured.match ops{["linalg.conv_2d_nchw_fchw"]} attributes{compc.fuse_init} in %root0 : (!transform.any_op) -> !transform.any_op
    transform.foreach %cvf : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_conv_fused failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %dwf = transform.structured.match ops{["linalg.depthwise_conv_2d_nchw_chw"]} attributes{compc.fuse_init} in %root0 : (!transform.any_op) -> !transform.any_op
    transform.foreach %dwf : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_depthwise_fused failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %cv = transform.structured.match ops{["linalg.conv_2d_nchw_fchw"]} in %root0 : (!transform.any_op) -> !transform.any_op
    transform.foreach %cv : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_conv failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %dw = transform.structured.match ops{["linalg.depthwise_conv_2d_nchw_chw"]} in %root0 : (!transform.any_op) -> !transform.any_op
    transform.foreach %dw : !transform.any_op {
    ^bb0(%op: !transform.any_op):
      transform.include @tile_depthwise failures(propagate) (%op) : (!transform.any_op) -> ()
    }
    %root = transform.foreach_match in %root0
{elementwise_pairs}
      : (!transform.any_op) -> !transform.any_op
    %pl = transform.structured.match ops{["linalg.pooling_nchw_max", "linalg.pooling_nchw_sum"]} in %root : (!transform.any_op) -> !transform.any_op
    %plg = transform.structured.generalize %pl : (!transform.any_op) -> !transform.any_op
    %pli = transform.structured.interchange %plg iterator_interchange = [0, 1, 4, 5, 2, 3] : (!transform.any_op) -> !transform.any_op
    %f = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %f {
      transform.apply_patterns.vector.lower_masked_transfers
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_outerproduct
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.cast_away_vector_leading_one_dim
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    transform.yield
  }
"#;

/// Whether the host has 32 vector registers of 16 f32 (AVX-512): then a plain matmul's
/// register tile is 8 rows × 32 columns, two B vectors per k step for eight broadcast
/// elements of A. With 8 × 16 each k step issues nine loads for eight FMAs and is bound by
/// the load ports; measured on the trained LM (`cargo bench --bench native_cpu`, 8 × 32
/// tokens), 8 × 32 took the compiled model from 1.8× to 1.2× onnxruntime's time. With 16
/// registers (AVX2) the 32-column tile would spill, so it stays at 16 columns there. The
/// code is compiled for the host it is scheduled on (the JIT and `--target cpu` alike).
fn wide_register_file() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `@name`: the register-tiling recipe of [`SEQUENCES`] for a matmul with `batch` leading
/// batch dims (tiled by 1): m × n cut into 8 × 32 tiles (8 × 16 for a plain matmul on a
/// host without [`wide_register_file`]), m and n peeled, then each tile's k loop tiled by
/// 1 and vectorized as a contraction with the accumulator hoisted.
///
/// With `fuse`, tiling is `transform.structured.fuse`, which also pulls the producer of
/// the accumulator (a bias broadcast) into the tile loops; that producer's tile is then
/// vectorized whole, so its vector write folds into the accumulator's first read (the tile
/// starts from a broadcast of the bias, in registers). These are the 1×1 convolutions,
/// whose k (input channels, 16–96 here) is short: their tile is 8 × 32 (16 accumulators,
/// two vector loads of B per 16 FMAs instead of one per 8), which measured about 8 %
/// faster on the CNN than 8 × 16.
fn contraction_sequence(name: &str, batch: usize, fuse: bool) -> String {
    let (tiler, vectorize_fused) = if fuse {
        (
            "fuse",
            format!(
                r#"    %fused = transform.structured.match ops{{["linalg.generic"]}} in {} : (!transform.any_op) -> !transform.any_op
    transform.foreach %fused : !transform.any_op {{
    ^bb0(%g: !transform.any_op):
      transform.include @vectorize_whole failures(suppress) (%g) : (!transform.any_op) -> ()
    }}
"#,
                if batch > 0 { "%lb" } else { "%lm" }
            ),
        )
    } else {
        ("tile_using_for", String::new())
    };
    let ones = |v: &str| vec![v; batch].join(", ") + if batch > 0 { ", " } else { "" };
    let loops: Vec<String> = (0..batch)
        .map(|b| {
            if batch == 1 {
                "%lb".into()
            } else {
                format!("%lb{b}")
            }
        })
        .chain(["%lm".into(), "%ln".into()])
        .collect();
    let any = |count: usize| vec!["!transform.any_op"; count].join(", ");
    format!(
        r#"  transform.named_sequence @{name}(%op: !transform.any_op {{transform.consumed}}) {{
    %t, {loops} = transform.structured.{tiler} %op tile_sizes [{b1}8, {tn}, 0] : (!transform.any_op) -> ({results})
    %f = transform.get_parent_op {outer} {{op_name = "func.func"}} : (!transform.any_op) -> !transform.any_op
    transform.annotate %t "compc.tile" : !transform.any_op
    %n = transform.cast %ln : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%n) : (!transform.op<"scf.for">) -> ()
    %m = transform.cast %lm : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%m) : (!transform.op<"scf.for">) -> ()
    transform.apply_patterns to %f {{
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
{vectorize_fused}    %tiles = transform.structured.match attributes{{compc.tile}} in %f : (!transform.any_op) -> !transform.any_op
    transform.foreach %tiles : !transform.any_op {{
    ^bb0(%o: !transform.any_op):
      %v, %k = transform.structured.tile_using_for %o tile_sizes [{b0}0, 0, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
      transform.structured.vectorize %v vector_sizes [{b1}8, {tn}, 1] {{create_named_contraction}} : !transform.any_op
      transform.include @hoist_accumulator failures(propagate) (%f, %k) : (!transform.any_op, !transform.any_op) -> ()
    }}
    transform.yield
  }}
"#,
        outer = loops[0],
        loops = loops.join(", "),
        b1 = ones("1"),
        b0 = ones("0"),
        results = any(loops.len() + 1),
        tn = if fuse || wide_register_file() { 32 } else { 16 },
    )
}

/// Element-wise ops of every rank up to this one are vectorized by the schedule.
const MAX_ELEMENTWISE_RANK: usize = 6;

/// The matcher and action for all-parallel `linalg.generic`s of rank `r` (the tile sizes
/// depend on the rank, which a transform script cannot compute): tiles of 1 × … × 1 × 16
/// along the innermost (contiguous) dim, vectorized with masks where the dim is shorter
/// or dynamic; broadcast operands become broadcast loads. Ops the vectorizer rejects
/// (say, with a data-dependent `tensor.extract`) stay loops: the action's failures are
/// suppressed. Without this LLVM fully unrolls a short static inner loop (a 16-wide image
/// row) before its loop vectorizer runs, then vectorizes the next loop out with gathers.
fn elementwise_sequences(r: usize) -> String {
    let sizes: Vec<&str> = (0..r)
        .map(|i| if i + 1 == r { "16" } else { "1" })
        .collect();
    let sizes = sizes.join(", ");
    let loops: Vec<String> = (0..r).map(|i| format!("%l{i}")).collect();
    let handles = vec!["!transform.any_op"; r + 1].join(", ");
    format!(
        r#"
  transform.named_sequence @match_elementwise{r}(%op: !transform.any_op {{transform.readonly}}) -> !transform.any_op {{
    transform.match.operation_name %op ["linalg.generic"] : !transform.any_op
    transform.match.structured %op : !transform.any_op {{
    ^bb0(%s: !transform.any_op):
      transform.match.structured.dim %s[all] {{parallel}} : !transform.any_op
      %rank = transform.match.structured.rank %s : (!transform.any_op) -> !transform.param<i64>
      %want = transform.param.constant {r} : i64 -> !transform.param<i64>
      transform.match.param.cmpi eq %rank, %want : !transform.param<i64>
      transform.match.structured.yield
    }}
    transform.yield %op : !transform.any_op
  }}
  transform.named_sequence @vectorize_elementwise{r}(%op: !transform.any_op {{transform.consumed}}) {{
    transform.include @tile_elementwise{r} failures(suppress) (%op) : (!transform.any_op) -> ()
    transform.yield
  }}
  transform.named_sequence @tile_elementwise{r}(%op: !transform.any_op {{transform.consumed}}) {{
    %t, {loops} = transform.structured.tile_using_for %op tile_sizes [{sizes}] : (!transform.any_op) -> ({handles})
    transform.structured.vectorize %t vector_sizes [{sizes}] : !transform.any_op
    transform.yield
  }}
"#,
        loops = loops.join(", ")
    )
}

/// Ranks of the spatial reductions [`spatial_reduction_sequences`] vectorizes.
const SPATIAL_REDUCTION_RANKS: std::ops::RangeInclusive<usize> = 3..=6;

/// The matcher and action for a `linalg.generic` of rank `r` whose two innermost dims are
/// reductions and all others parallel: a global average pool, or a spatially weighted sum
/// (`sum_hw x[n, c, h, w] · s[n, h, w]`). Every parallel dim is tiled by 1 and the whole
/// (static) `h × w` plane is vectorized: one vector read per row, element-wise multiplies,
/// and one 1-D `vector.reduction` per plane (a tree of adds: the pipeline lowers FP
/// reductions with reassociation). Left to LLVM, the loops are vectorized along the
/// channels with gathers. Dynamic planes fail to vectorize; the failure is suppressed.
fn spatial_reduction_sequences(r: usize) -> String {
    let sizes: Vec<&str> = (0..r).map(|i| if i + 2 >= r { "0" } else { "1" }).collect();
    let sizes = sizes.join(", ");
    let loops: Vec<String> = (0..r - 2).map(|i| format!("%l{i}")).collect();
    let handles = vec!["!transform.any_op"; r - 1].join(", ");
    format!(
        r#"
  transform.named_sequence @match_spatial_reduction{r}(%op: !transform.any_op {{transform.readonly}}) -> !transform.any_op {{
    transform.match.operation_name %op ["linalg.generic"] : !transform.any_op
    transform.match.structured %op : !transform.any_op {{
    ^bb0(%s: !transform.any_op):
      %rank = transform.match.structured.rank %s : (!transform.any_op) -> !transform.param<i64>
      %want = transform.param.constant {r} : i64 -> !transform.param<i64>
      transform.match.param.cmpi eq %rank, %want : !transform.param<i64>
      transform.match.structured.dim %s[-1, -2] {{reduction}} : !transform.any_op
      transform.match.structured.dim %s[except(-1, -2)] {{parallel}} : !transform.any_op
      transform.match.structured.yield
    }}
    transform.yield %op : !transform.any_op
  }}
  transform.named_sequence @vectorize_spatial_reduction{r}(%op: !transform.any_op {{transform.consumed}}) {{
    transform.include @tile_spatial_reduction{r} failures(suppress) (%op) : (!transform.any_op) -> ()
    transform.yield
  }}
  transform.named_sequence @tile_spatial_reduction{r}(%op: !transform.any_op {{transform.consumed}}) {{
    %t, {loops} = transform.structured.tile_using_for %op tile_sizes [{sizes}] : (!transform.any_op) -> ({handles})
    transform.structured.vectorize %t : !transform.any_op
    transform.yield
  }}
"#,
        loops = loops.join(", ")
    )
}
/// A convolution tiled 4 filters × 2 output rows × `width` columns with its accumulator's
/// producer (a bias broadcast) fused into the tile loops and vectorized whole, so each
/// tile starts from the bias in registers (see `compc.fuse_init` in the emitter); then
/// the c × kh × kw taps as in `@tile_conv`. `width` 16 is for output rows that are a
/// multiple of 16 wide (`compc.wide`), where each tap is a full AVX-512 vector.
fn conv_fused_sequence(name: &str, width: usize) -> String {
    format!(
        r#"  transform.named_sequence @{name}(%op: !transform.any_op {{transform.consumed}}) {{
    %g = transform.structured.generalize %op : (!transform.any_op) -> !transform.any_op
    %o, %ln, %lf, %lh, %lw = transform.structured.fuse %g tile_sizes [1, 4, 2, {width}, 0, 0, 0] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    %acc = transform.get_producer_of_operand %o[2] : (!transform.any_op) -> !transform.any_op
    transform.include @vectorize_whole failures(suppress) (%acc) : (!transform.any_op) -> ()
    %t, %lc, %lkh, %lkw = transform.structured.tile_using_for %o tile_sizes [0, 0, 0, 0, 1, 1, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    transform.include @taps_c_kh_kw failures(propagate) (%lc, %lkh, %lkw) : (!transform.any_op, !transform.any_op, !transform.any_op) -> ()
    // Folds the slices between the bias write and the accumulator's first read, so the
    // tile starts from the broadcast bias in registers (no store and reload).
    transform.apply_patterns to %lw {{
      transform.apply_patterns.tensor.fold_tensor_subset_ops
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
    transform.yield
  }}
"#
    )
}

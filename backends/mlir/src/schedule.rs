//! The CPU loop schedule: a transform-dialect script the transform interpreter applies to
//! the emitted module before bufferization (see [`crate::pipeline::SCHEDULE_PIPELINE`]).
//!
//! Two entry points run at two moments:
//! - `__contractions`, first, on the module as emitted: matmuls are register-tiled and
//!   vectorized while they are still named ops (element-wise fusion would otherwise turn a
//!   matmul next to a reshape into a higher-rank `linalg.generic` no recipe matches).
//! - `__transform_main`, after element-wise fusion: the remaining named ops are put in a
//!   loop order LLVM's loop vectorizer handles, and the vector ops of the first stage are
//!   lowered to 1-D FMAs, loads and stores.

/// Register tile of a matmul: `MR` rows × `NR` columns of the output stay in vector
/// registers while k runs (8 × 16 f32 = 8 AVX-512 or 16 AVX2 registers); every k step is
/// one outer product: a row of B (one vector load) times MR broadcast elements of A (LLVM
/// folds the broadcasts into the FMAs' memory operands).
///
/// Tiling: `tile_using_for` cuts m × n into MR × NR tiles (batch dims by 1); the m and n
/// loops are peeled, so the full tiles have static shapes and vectorize without masks,
/// while the last partial row or column of tiles (dynamic batch·sequence, N not a multiple
/// of NR) is vectorized with masks. Each tile's k loop is then tiled by 1 and vectorized;
/// LICM and `hoist_loop_invariant_subsets` move the accumulator's read and write out of
/// the k loop, so it is carried in registers.
///
/// Peeling fails (silenceably) when the tile already divides the dim; `@peel` is included
/// with failures suppressed so that case just keeps the loop.
pub const CPU_SCHEDULE: &str = r#"
  transform.named_sequence @peel(%l: !transform.op<"scf.for"> {transform.consumed}) {
    %main, %rest = transform.loop.peel %l : (!transform.op<"scf.for">) -> (!transform.any_op, !transform.any_op)
    transform.yield
  }

  transform.named_sequence @tile_batch_matmul(%op: !transform.any_op {transform.consumed}) {
    %t, %lb, %lm, %ln = transform.structured.tile_using_for %op tile_sizes [1, 8, 16, 0] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op, !transform.any_op)
    %f = transform.get_parent_op %lb {op_name = "func.func"} : (!transform.any_op) -> !transform.any_op
    transform.annotate %t "compc.tile" : !transform.any_op
    %n = transform.cast %ln : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%n) : (!transform.op<"scf.for">) -> ()
    %m = transform.cast %lm : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%m) : (!transform.op<"scf.for">) -> ()
    transform.apply_patterns to %f {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %tiles = transform.structured.match attributes{compc.tile} in %f : (!transform.any_op) -> !transform.any_op
    transform.foreach %tiles : !transform.any_op {
    ^bb0(%o: !transform.any_op):
      %v, %k = transform.structured.tile_using_for %o tile_sizes [0, 0, 0, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
      transform.structured.vectorize %v vector_sizes [1, 8, 16, 1] {create_named_contraction} : !transform.any_op
      transform.include @hoist_accumulator failures(propagate) (%f, %k) : (!transform.any_op, !transform.any_op) -> ()
    }
    transform.yield
  }

  transform.named_sequence @tile_matmul(%op: !transform.any_op {transform.consumed}) {
    %t, %lm, %ln = transform.structured.tile_using_for %op tile_sizes [8, 16, 0] : (!transform.any_op) -> (!transform.any_op, !transform.any_op, !transform.any_op)
    %f = transform.get_parent_op %lm {op_name = "func.func"} : (!transform.any_op) -> !transform.any_op
    transform.annotate %t "compc.tile" : !transform.any_op
    %n = transform.cast %ln : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%n) : (!transform.op<"scf.for">) -> ()
    %m = transform.cast %lm : !transform.any_op to !transform.op<"scf.for">
    transform.include @peel failures(suppress) (%m) : (!transform.op<"scf.for">) -> ()
    transform.apply_patterns to %f {
      transform.apply_patterns.canonicalization
    } : !transform.any_op
    %tiles = transform.structured.match attributes{compc.tile} in %f : (!transform.any_op) -> !transform.any_op
    transform.foreach %tiles : !transform.any_op {
    ^bb0(%o: !transform.any_op):
      %v, %k = transform.structured.tile_using_for %o tile_sizes [0, 0, 1] : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
      transform.structured.vectorize %v vector_sizes [8, 16, 1] {create_named_contraction} : !transform.any_op
      transform.include @hoist_accumulator failures(propagate) (%f, %k) : (!transform.any_op, !transform.any_op) -> ()
    }
    transform.yield
  }

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

  transform.named_sequence @__contractions(%root: !transform.any_op {transform.readonly}) {
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

  // Named ops not register-tiled are generalized and interchanged so their innermost loop
  // runs along the output's contiguous dim (the output width for convolutions and
  // pooling): loops that are parallel and unit-stride innermost are what LLVM's loop
  // vectorizer turns into SIMD code; the named ops' own order (reduction innermost) is not.
  // Then the vector ops of `__contractions` are lowered to 1-D vectors: contractions to
  // outer products to FMAs, transfers to 1-D loads and stores.
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %cv = transform.structured.match ops{["linalg.conv_2d_nchw_fchw"]} in %root : (!transform.any_op) -> !transform.any_op
    %cvg = transform.structured.generalize %cv : (!transform.any_op) -> !transform.any_op
    %cvi = transform.structured.interchange %cvg iterator_interchange = [0, 1, 4, 5, 6, 2, 3] : (!transform.any_op) -> !transform.any_op
    %dw = transform.structured.match ops{["linalg.depthwise_conv_2d_nchw_chw"]} in %root : (!transform.any_op) -> !transform.any_op
    %dwg = transform.structured.generalize %dw : (!transform.any_op) -> !transform.any_op
    %dwi = transform.structured.interchange %dwg iterator_interchange = [0, 3, 4, 5, 1, 2] : (!transform.any_op) -> !transform.any_op
    %pl = transform.structured.match ops{["linalg.pooling_nchw_max", "linalg.pooling_nchw_sum"]} in %root : (!transform.any_op) -> !transform.any_op
    %plg = transform.structured.generalize %pl : (!transform.any_op) -> !transform.any_op
    %pli = transform.structured.interchange %plg iterator_interchange = [0, 1, 4, 5, 2, 3] : (!transform.any_op) -> !transform.any_op
    %f = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %f {
      transform.apply_patterns.vector.lower_masked_transfers
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

//! f32 matrix products on the GPU: a hand-scheduled kernel with shared-memory staging,
//! written as `gpu.launch` in a private helper function that `@main` calls (the generic
//! lowering maps one thread to one output, and every thread then reads a whole row of A
//! and a whole column of B from global memory).
//!
//! The schedule is the classic tiled one:
//! - a block of 256 threads computes a [`TILE`]×[`TILE`] tile of the output; thread
//!   (r, c) of the 16×16 grid computes the 4×4 outputs at rows r + 16i and columns
//!   c + 16j, so its shared-memory reads are broadcasts (A) and 16 consecutive words (B),
//!   and its global stores are coalesced;
//! - K advances in steps of [`STEP`]: the block stages the [`TILE`]×[`STEP`] slab of A and
//!   the [`STEP`]×[`TILE`] slab of B in shared memory with coalesced loads (each value of
//!   A and B is then read from global memory once per block instead of once per output),
//!   waits at a barrier, and every thread does its 16·[`STEP`] multiply-adds from shared
//!   memory;
//! - A's slab is stored transposed with a row stride of [`TILE`] + 1, so that the
//!   transposing stores fall in different banks;
//! - edges (M, N or K not a multiple of the tile) load zeros and skip their stores, so any
//!   shape runs; M may be dynamic.
//!
//! The multiply-adds carry `fastmath<contract>`, so they become `fma.rn.f32`.

use super::builder::{Emitter, Val};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Output rows and columns per block.
const TILE: u64 = 64;
/// K per shared-memory stage.
const STEP: u64 = 16;
/// Threads per block: a 16×16 grid, each with a 4×4 register tile.
const THREADS: u64 = 256;
/// Outputs per thread along each axis.
const MICRO: u64 = TILE / 16;
/// Row stride of the transposed A slab in shared memory.
const A_STRIDE: u64 = TILE + 1;

/// Emits `out = a · b` for `a` `[M, K]` or `[B, S, K]` (leading dims may be dynamic; the
/// kernel indexes the rows of a 3-D A itself, so nothing is reshaped) and `b` `[K, N]`,
/// both f32.
pub fn emit(em: &mut Emitter, a: &Val, b: &Val, out: &TensorType) -> Result<Val, EmitError> {
    let (k, n) = match (b.dims()[0].known(), b.dims()[1].known()) {
        (Some(k), Some(n)) => (k, n),
        _ => return Err(em.err("GPU matmul needs a B of static shape")),
    };
    let lead: Vec<Option<u64>> = a.dims()[..a.rank() - 1].iter().map(|d| d.known()).collect();
    let lead_ty = lead
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect::<Vec<_>>()
        .join("x");
    let suffix = lead
        .iter()
        .map(|d| d.map_or("dyn".to_string(), |v| v.to_string()))
        .collect::<Vec<_>>()
        .join("x");
    let name = format!("compc_matmul_m{suffix}_k{k}_n{n}");
    em.add_helper(name.clone(), || helper(&name, &lead_ty, lead.len(), k, n));
    let mut dims = a.dims()[..a.rank() - 1].to_vec();
    dims.push(compc_ir::Dim::Known(n));
    let own = TensorType::new(compc_ir::DType::F32, compc_ir::Shape::Ranked(dims));
    let r = kernel_call::call(em, &name, a, &[b], n, &own)?;
    // Same rank and sizes as the graph's type (dynamic dims may carry other names).
    Ok(Val {
        ssa: r.ssa,
        ty: out.clone(),
    })
}

/// Whether `emit` takes this product: A of rank 2 or 3, B 2-D and static, a result of
/// A's rank.
pub fn supported(a: &Val, b: &Val, out: &TensorType) -> bool {
    (a.rank() == 2 || a.rank() == 3)
        && b.rank() == 2
        && b.dims().iter().all(|d| d.known().is_some())
        && out.shape.dims().is_some_and(|d| d.len() == a.rank())
}

/// The helper function: one `gpu.launch` over buffers, the result written into `%om`.
fn helper(name: &str, lead_ty: &str, lead: usize, k: u64, n: u64) -> String {
    let a_t = format!("memref<{lead_ty}x{k}xf32>");
    let b_t = format!("memref<{k}x{n}xf32>");
    let o_t = format!("memref<{lead_ty}x{n}xf32>");
    // Row r of the product is A[r] (2-D) or A[r / S, r mod S] (3-D).
    let (m_def, row_index) = if lead == 2 {
        (
            format!(
                "  %m0d = memref.dim %am, %c0 : {a_t}\n  %sd = memref.dim %am, %c1 : {a_t}\n  %m = arith.muli %m0d, %sd : index\n"
            ),
            true,
        )
    } else {
        (format!("  %m = memref.dim %am, %c0 : {a_t}\n"), false)
    };
    // `idx(row)`: the index text of a row in A or out, with definitions for 3-D.
    let idx = |tag: &str, row: &str| -> (String, String) {
        if row_index {
            (
                format!(
                    "      %{tag}b = arith.divui {row}, %sd : index\n      %{tag}s = arith.remui {row}, %sd : index\n"
                ),
                format!("%{tag}b, %{tag}s"),
            )
        } else {
            (String::new(), row.to_string())
        }
    };
    let a_s = format!(
        "memref<{}xf32, #gpu.address_space<workgroup>>",
        STEP * A_STRIDE
    );
    let b_s = format!("memref<{}xf32, #gpu.address_space<workgroup>>", STEP * TILE);
    let accs = (MICRO * MICRO) as usize;
    let f32s = vec!["f32"; accs].join(", ");

    // Staging: thread t loads elements t + 256·i of each slab (i < TILE·STEP / 256).
    // A slab element e: row e / STEP, k e % STEP (16 consecutive k per row: coalesced),
    // stored transposed at k·A_STRIDE + row. B slab element e: k e / TILE, column
    // e % TILE (64 consecutive columns), stored at k·TILE + column.
    let mut stage = String::new();
    // What does not depend on k is computed once, before the K loop.
    let mut fixed = String::new();
    for i in 0..TILE * STEP / THREADS {
        let (adef, aidx) = idx(&format!("ar{i}_"), &format!("%agrc{i}"));
        fixed += &format!(
            r#"      %ae{i} = arith.addi %tx, %soff{i} : index
      %ar{i} = arith.divui %ae{i}, %cstep : index
      %ak{i} = arith.remui %ae{i}, %cstep : index
      %agr{i} = arith.addi %m0, %ar{i} : index
      %arok{i} = arith.cmpi ult, %agr{i}, %m : index
      %agrc{i} = arith.select %arok{i}, %agr{i}, %z : index
{adef}      %asr{i} = arith.muli %ak{i}, %castride : index
      %asi{i} = arith.addi %asr{i}, %ar{i} : index
      %bk{i} = arith.divui %ae{i}, %ctile : index
      %bc{i} = arith.remui %ae{i}, %ctile : index
      %bgc{i} = arith.addi %n0, %bc{i} : index
      %bcok{i} = arith.cmpi ult, %bgc{i}, %cn : index
      %bgcc{i} = arith.select %bcok{i}, %bgc{i}, %z : index
      %bsr{i} = arith.muli %bk{i}, %ctile : index
      %bsi{i} = arith.addi %bsr{i}, %bc{i} : index
"#
        );
        stage += &format!(
            r#"        %agk{i} = arith.addi %k0, %ak{i} : index
        %akok{i} = arith.cmpi ult, %agk{i}, %ck : index
        %aok{i} = arith.andi %arok{i}, %akok{i} : i1
        %agkc{i} = arith.select %akok{i}, %agk{i}, %z : index
        %av{i} = memref.load %am[{aidx}, %agkc{i}] : {a_t}
        %avz{i} = arith.select %aok{i}, %av{i}, %zero : f32
        memref.store %avz{i}, %as[%asi{i}] : {a_s}
        %bgk{i} = arith.addi %k0, %bk{i} : index
        %bkok{i} = arith.cmpi ult, %bgk{i}, %ck : index
        %bok{i} = arith.andi %bkok{i}, %bcok{i} : i1
        %bgkc{i} = arith.select %bkok{i}, %bgk{i}, %z : index
        %bv{i} = memref.load %bm[%bgkc{i}, %bgcc{i}] : {b_t}
        %bvz{i} = arith.select %bok{i}, %bv{i}, %zero : f32
        memref.store %bvz{i}, %bs[%bsi{i}] : {b_s}
"#
        );
    }

    // One k of the stage: MICRO values of A and of B from shared memory, MICRO² FMAs.
    let mut step = String::new();
    step += "          %ars = arith.muli %kk, %castride : index\n";
    step += "          %brs = arith.muli %kk, %ctile : index\n";
    for i in 0..MICRO {
        step += &format!(
            "          %xa{i}i = arith.addi %ars, %trow{i} : index\n          %xa{i} = memref.load %as[%xa{i}i] : {a_s}\n"
        );
        step += &format!(
            "          %xb{i}i = arith.addi %brs, %tcol{i} : index\n          %xb{i} = memref.load %bs[%xb{i}i] : {b_s}\n"
        );
    }
    for i in 0..MICRO {
        for j in 0..MICRO {
            let a = i * MICRO + j;
            step += &format!(
                "          %p{a} = arith.mulf %xa{i}, %xb{j} fastmath<contract> : f32\n          %s{a} = arith.addf %u{a}, %p{a} fastmath<contract> : f32\n"
            );
        }
    }
    let list = |p: &str| {
        (0..accs)
            .map(|a| format!("%{p}{a}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inits = |p: &str, v: &str| {
        (0..accs)
            .map(|a| format!("%{p}{a} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let mut store = String::new();
    for i in 0..MICRO {
        let (odef, oidx) = idx(&format!("or{i}_"), &format!("%orow{i}"));
        store += &format!(
            "      %orow{i} = arith.addi %m0, %trow{i} : index\n      %orok{i} = arith.cmpi ult, %orow{i}, %m : index\n{odef}"
        );
        for j in 0..MICRO {
            let a = i * MICRO + j;
            store += &format!(
                r#"      %ocol{a} = arith.addi %n0, %tcol{j} : index
      %ocok{a} = arith.cmpi ult, %ocol{a}, %cn : index
      %ook{a} = arith.andi %orok{i}, %ocok{a} : i1
      scf.if %ook{a} {{
        memref.store %acc#{a}, %om[{oidx}, %ocol{a}] : {o_t}
      }}
"#
            );
        }
    }

    let consts = (0..TILE * STEP / THREADS)
        .map(|i| format!("      %soff{i} = arith.constant {} : index\n", THREADS * i))
        .chain((0..MICRO).map(|i| {
            format!(
                "      %o{i} = arith.constant {} : index\n      %trow{i} = arith.addi %trow, %o{i} : index\n      %tcol{i} = arith.addi %tcol, %o{i} : index\n",
                16 * i
            )
        }))
        .collect::<String>();

    format!(
        r#"func.func private @{name}(%am: {a_t}, %bm: {b_t}, %om: {o_t}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{m_def}  %ctile1 = arith.constant {tile_m1} : index
  %ctile0 = arith.constant {TILE} : index
  %mup = arith.addi %m, %ctile1 : index
  %gy = arith.divui %mup, %ctile0 : index
  %gx = arith.constant {gx} : index
  %threads = arith.constant {THREADS} : index
  %nonempty = arith.cmpi ugt, %m, %c0 : index
  scf.if %nonempty {{
    gpu.launch blocks(%bx, %by, %bz) in (%sgx = %gx, %sgy = %gy, %sgz = %c1) threads(%tx, %ty, %tz) in (%stx = %threads, %sty = %c1, %stz = %c1) workgroup(%as : {a_s}, %bs : {b_s}) {{
      %z = arith.constant 0 : index
      %one = arith.constant 1 : index
      %c16 = arith.constant 16 : index
      %cstep = arith.constant {STEP} : index
      %ctile = arith.constant {TILE} : index
      %castride = arith.constant {A_STRIDE} : index
      %ck = arith.constant {k} : index
      %cn = arith.constant {n} : index
      %zero = arith.constant 0.0 : f32
      %trow = arith.divui %tx, %c16 : index
      %tcol = arith.remui %tx, %c16 : index
{consts}      %m0 = arith.muli %by, %ctile : index
      %n0 = arith.muli %bx, %ctile : index
{fixed}      %acc:{accs} = scf.for %k0 = %z to %ck step %cstep iter_args({acc_init}) -> ({f32s}) {{
{stage}        gpu.barrier
        %part:{accs} = scf.for %kk = %z to %cstep step %one iter_args({c_init}) -> ({f32s}) {{
{step}          scf.yield {s_list} : {f32s}
        }}
        gpu.barrier
        scf.yield {part_list} : {f32s}
      }}
{store}      gpu.terminator
    }}
  }}
  return
}}
"#,
        tile_m1 = TILE - 1,
        gx = n.div_ceil(TILE),
        acc_init = inits("a", "%zero"),
        c_init = (0..accs)
            .map(|a| format!("%u{a} = %a{a}"))
            .collect::<Vec<_>>()
            .join(", "),
        s_list = list("s"),
        part_list = (0..accs)
            .map(|a| format!("%part#{a}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

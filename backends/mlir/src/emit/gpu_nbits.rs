//! MatMulNBits on the GPU: a hand-scheduled weight-only kernel with dequantization fused
//! in registers, written as `gpu.launch` in a private helper function that the module's
//! `@main` calls (the generic linalg lowering would give one thread per output with
//! uncoalesced row reads).
//!
//! Decode-time matrix–vector products are memory-bound, so the schedule is about reading
//! the packed weights once, coalesced, with many loads in flight, and about keeping the
//! activation reads (8 floats per 4-byte word of int4 codes) cheap:
//! - one warp computes two output features (the activations it loads serve both rows),
//!   eight warps per block;
//! - the codes are read as 32-bit words; lane l takes words l, l+32, l+64, … so each
//!   warp-wide load is 128 contiguous bytes, and the loop is unrolled four times so four
//!   such loads per row are in flight (out-of-range words are clamped and masked, never
//!   branched around);
//! - a word is unpacked with one vector shift and mask (`vector<8xi32>`) and turned into
//!   floats without a conversion instruction (which runs at a quarter of the FMA rate):
//!   OR-ing a code into the mantissa of 2^23 gives the float 2^23 + q exactly, and
//!   subtracting 2^23 + zero point leaves q − z; that is multiplied with the matching
//!   activations and summed, and the block scale is applied to the sum;
//! - a butterfly of `gpu.shuffle xor` sums the warp; lane 0 adds the bias and stores.
//!
//! Rows of A (batch × sequence) are a loop inside the warp: the warp's two weight rows
//! stay in L1/L2 across them, so DRAM sees each weight byte about once for any number of
//! rows.

use super::builder::{Emitter, Val};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Warps per block.
const WARPS: u64 = 8;
/// Output features per warp.
const ROWS: u64 = 2;
/// Words each lane loads per row before using them.
const UNROLL: u64 = 4;

/// Whether the fused kernel handles this shape: 4- or 8-bit codes, K made of whole
/// quantization blocks, blocks made of whole 32-bit words, and rows of A that keep a
/// word's activations 16-byte aligned.
pub fn supported(k: u64, bits: u64, block_size: u64) -> bool {
    let per_word = 32u64.checked_div(bits).unwrap_or(0);
    (bits == 4 || bits == 8)
        && block_size > 0
        && k.is_multiple_of(block_size)
        && block_size.is_multiple_of(per_word)
        && k.is_multiple_of(4)
}

/// Emits `out[m, n] = Σ_k a[m, k]·(q[n, k] − z[n, k/bs])·s[n, k/bs] (+ bias[n])`.
///
/// `bq` is the packed weight as 32-bit words `[N, K·bits/32]` (i32, little-endian: code
/// e of word w is element w·32/bits + e, at bit e·bits), `scales` f32 `[N, nb]`, `zero`
/// the zero point per block as i8 `[N, nb]`, `bias` f32 `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    em: &mut Emitter,
    a: &Val,
    bq: &Val,
    scales: &Val,
    zero: &Val,
    bias: &Val,
    n: u64,
    k: u64,
    bits: u64,
    block_size: u64,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let a2 = kernel_call::rows(em, a)?;
    let (m_ty, suffix) = kernel_call::m_text(&a2);
    let nb = k / block_size;
    let name = format!("compc_nbits{bits}_n{n}_k{k}_bs{block_size}_{suffix}");
    em.add_helper(name.clone(), || {
        helper(&name, &m_ty, n, k, nb, bits, block_size)
    });
    kernel_call::call(em, &name, &a2, &[bq, scales, zero, bias], n, out)
}

/// The helper function: one `gpu.launch` over buffers, the result written into `%om`.
fn helper(name: &str, m_ty: &str, n: u64, k: u64, nb: u64, bits: u64, bs: u64) -> String {
    let e = 32 / bits; // codes per word
    let words = k / e;
    let a_t = format!("{m_ty}x{k}xf32");
    let b_t = format!("{n}x{words}xi32");
    let s_t = format!("{n}x{nb}xf32");
    let z_t = format!("{n}x{nb}xi8");
    let o_t = format!("{m_ty}x{n}xf32");
    let grid = n.div_ceil(WARPS * ROWS);
    let shifts: Vec<String> = (0..e).map(|i| (i * bits).to_string()).collect();
    let mask = (1u64 << bits) - 1;
    let vi = format!("vector<{e}xi32>");
    let vf = format!("vector<{e}xf32>");
    // The unrolled body: every load of the step first (all words of both rows, their
    // scales, zero points and activations), then the arithmetic, so the loads are in
    // flight together instead of each waiting behind the previous word's math.
    let mut body = String::new();
    for u in 0..UNROLL {
        body += &format!(
            r#"          %w{u} = arith.addi %wbase, %uoff{u} : index
          %in{u} = arith.cmpi ult, %w{u}, %cwords : index
          %wc{u} = arith.select %in{u}, %w{u}, %k0 : index
          %kb{u} = arith.muli %wc{u}, %ce : index
          %blk{u} = arith.divui %kb{u}, %cbs : index
"#
        );
        for r in 0..ROWS {
            body += &format!(
                r#"          %wd{r}_{u} = memref.load %bm[%row{r}, %wc{u}] : memref<{b_t}>
"#
            );
        }
    }
    for u in 0..UNROLL {
        body += &format!(
            r#"          %x{u} = vector.load %am[%mi, %kb{u}] {{alignment = 16}} : memref<{a_t}>, {vf}
"#
        );
        for r in 0..ROWS {
            body += &format!(
                r#"          %s{r}_{u} = memref.load %sm[%row{r}, %blk{u}] : memref<{s_t}>
          %zq{r}_{u} = memref.load %zm[%row{r}, %blk{u}] : memref<{z_t}>
"#
            );
        }
    }
    for u in 0..UNROLL {
        for r in 0..ROWS {
            body += &format!(
                r#"          %zf{r}_{u} = arith.uitofp %zq{r}_{u} : i8 to f32
          %zm{r}_{u} = arith.addf %zf{r}_{u}, %magicf : f32
          %wv{r}_{u} = vector.broadcast %wd{r}_{u} : i32 to {vi}
          %sh{r}_{u} = arith.shrui %wv{r}_{u}, %shifts : {vi}
          %q{r}_{u} = arith.andi %sh{r}_{u}, %maskv : {vi}
          %qm{r}_{u} = arith.ori %q{r}_{u}, %magicv : {vi}
          %qf{r}_{u} = arith.bitcast %qm{r}_{u} : {vi} to {vf}
          %zv{r}_{u} = vector.broadcast %zm{r}_{u} : f32 to {vf}
          %qc{r}_{u} = arith.subf %qf{r}_{u}, %zv{r}_{u} : {vf}
          %d{r}_{u} = arith.mulf %qc{r}_{u}, %x{u} : {vf}
          %sum{r}_{u} = vector.reduction <add>, %d{r}_{u} : {vf} into f32
          %sc{r}_{u} = arith.mulf %sum{r}_{u}, %s{r}_{u} : f32
          %m{r}_{u} = arith.select %in{u}, %sc{r}_{u}, %zero : f32
"#
            );
        }
    }
    for r in 0..ROWS {
        let terms: Vec<String> = (0..UNROLL).map(|u| format!("%m{r}_{u}")).collect();
        let mut prev = format!("%acc{r}");
        for (i, t) in terms.iter().enumerate() {
            body += &format!("          %t{r}_{i} = arith.addf {prev}, {t} : f32\n");
            prev = format!("%t{r}_{i}");
        }
    }
    let yields: Vec<String> = (0..ROWS).map(|r| format!("%t{r}_{}", UNROLL - 1)).collect();
    let inits: Vec<String> = (0..ROWS).map(|r| format!("%acc{r} = %zero")).collect();
    let f32s = vec!["f32"; ROWS as usize].join(", ");
    let mut rows = String::new();
    for r in 0..ROWS {
        rows += &format!(
            r#"    %rraw{r} = arith.addi %rowbase, %roff{r} : index
    %rin{r} = arith.cmpi ult, %rraw{r}, %cn : index
    %row{r} = arith.select %rin{r}, %rraw{r}, %k0 : index
"#
        );
    }
    let mut tail = String::new();
    for r in 0..ROWS {
        let mut prev = format!("%parts#{r}");
        for i in 0..5 {
            tail += &format!(
                "        %xs{r}_{i}, %ok{r}_{i} = gpu.shuffle xor {prev}, %off{i}, %width : f32\n        %red{r}_{i} = arith.addf {prev}, %xs{r}_{i} : f32\n"
            );
            prev = format!("%red{r}_{i}");
        }
        tail += &format!(
            r#"        %store{r} = arith.andi %first, %rin{r} : i1
        scf.if %store{r} {{
          %bv{r} = memref.load %biasm[%row{r}] : memref<{n}xf32>
          %res{r} = arith.addf {prev}, %bv{r} : f32
          memref.store %res{r}, %om[%mi, %row{r}] : memref<{o_t}>
        }}
"#
        );
    }
    format!(
        r#"func.func private @{name}(%am: memref<{a_t}>, %bm: memref<{b_t}>, %sm: memref<{s_t}>, %zm: memref<{z_t}>, %biasm: memref<{n}xf32>, %om: memref<{o_t}>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %am, %c0 : memref<{a_t}>
  %grid = arith.constant {grid} : index
  %threads = arith.constant {threads} : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %threads, %sy = %c1, %sz = %c1) {{
    %k0 = arith.constant 0 : index
    %k1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %cstep = arith.constant {step} : index
    %cwords = arith.constant {words} : index
    %ce = arith.constant {e} : index
    %cbs = arith.constant {bs} : index
    %cn = arith.constant {n} : index
    %crows = arith.constant {rows_per_block} : index
    %cwr = arith.constant {ROWS} : index
{consts}    %zero = arith.constant 0.0 : f32
    %shifts = arith.constant dense<[{shifts}]> : {vi}
    %maskv = arith.constant dense<{mask}> : {vi}
    %magicv = arith.constant dense<1258291200> : {vi}
    %magicf = arith.constant 8388608.0 : f32
    %width = arith.constant 32 : i32
{offs}    %warp = arith.divui %tx, %c32 : index
    %lane = arith.remui %tx, %c32 : index
    %blockbase = arith.muli %bx, %crows : index
    %warpbase = arith.muli %warp, %cwr : index
    %rowbase = arith.addi %blockbase, %warpbase : index
{rows}    %first = arith.cmpi eq, %lane, %k0 : index
    scf.for %mi = %k0 to %m step %k1 {{
      %parts:{ROWS} = scf.for %wbase = %lane to %cwords step %cstep iter_args({inits}) -> ({f32s}) {{
{body}          scf.yield {yields} : {f32s}
      }}
{tail}    }}
    gpu.terminator
  }}
  return
}}
"#,
        threads = WARPS * 32,
        step = 32 * UNROLL,
        rows_per_block = WARPS * ROWS,
        shifts = shifts.join(", "),
        yields = yields.join(", "),
        inits = inits.join(", "),
        consts = (0..UNROLL)
            .map(|u| format!("    %uoff{u} = arith.constant {} : index\n", 32 * u))
            .chain((0..ROWS).map(|r| format!("    %roff{r} = arith.constant {r} : index\n")))
            .collect::<String>(),
        offs = [16, 8, 4, 2, 1]
            .iter()
            .enumerate()
            .map(|(i, o)| format!("    %off{i} = arith.constant {o} : i32\n"))
            .collect::<String>(),
    )
}

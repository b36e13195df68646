//! MatMulNBits on the CPU: a hand-scheduled weight-only kernel with dequantization fused
//! in registers, written as loops over buffers in a private helper function that the
//! module's `@main` calls (the generic linalg contraction has a shift, a mask, a
//! conversion and two multiplies per multiply-add, all scalar).
//!
//! The schedule:
//! - the codes are re-laid out at compile time as `[nb, bytes per block, N]`, so 16
//!   consecutive output features of one byte position are one 16-byte load; scales `s`
//!   and `−z·s` are `[nb, N]` f32, so the dequantized weight `(q − z)·s` is one FMA
//!   `q·s + (−z·s)` after the unpacking (mask / shift, then a conversion to f32);
//! - a register tile is [`ROWS`] rows of A × 16 output features: each byte of codes is
//!   unpacked once for the tile and used by [`ROWS`] FMAs per code, the activations are
//!   broadcast from memory; the low and high codes of a byte (two consecutive k) feed two
//!   separate accumulators per row, so the FMA chains are independent;
//! - rows past the end of A are clamped to the last row (their results are not stored),
//!   so any number of rows runs through the one tile shape without masks.

use super::builder::{Emitter, Val};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Rows of A per register tile (two accumulators a row: 16 of the 32 AVX-512 registers).
const ROWS: u64 = 8;
/// Output features per register tile (one AVX-512 vector of f32).
const LANES: u64 = 16;

/// Whether the kernel handles this shape: 4- or 8-bit codes, an even block size and N a
/// multiple of [`LANES`].
pub fn supported(n: u64, bits: u64, block_size: u64) -> bool {
    (bits == 4 || bits == 8)
        && block_size >= 2
        && block_size.is_multiple_of(2)
        && n.is_multiple_of(LANES)
}

/// The constant operands in the kernel's layout, from MatMulNBits' own: `packed` codes
/// `[N, nb, bytes per block]`, `scales` and unpacked `zero` points `[N, nb]`. Returns the
/// codes `[nb, bytes per block, N]`, the scales and `−zero·scale`, both `[nb, N]`.
pub fn layout(
    packed: &[u8],
    scales: &[f32],
    zero: &[f32],
    n: usize,
    nb: usize,
) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let per_block = packed.len() / (n * nb);
    let mut codes = vec![0u8; packed.len()];
    for r in 0..n {
        for b in 0..nb {
            for j in 0..per_block {
                codes[(b * per_block + j) * n + r] = packed[(r * nb + b) * per_block + j];
            }
        }
    }
    let mut s = vec![0f32; n * nb];
    let mut zs = vec![0f32; n * nb];
    for r in 0..n {
        for b in 0..nb {
            s[b * n + r] = scales[r * nb + b];
            zs[b * n + r] = -zero[r * nb + b] * scales[r * nb + b];
        }
    }
    (codes, s, zs)
}

/// Emits `out[m, n] = Σ_k a[m, k]·(q[k, n]·s[k/bs, n] + zs[k/bs, n]) + bias[n]`.
///
/// `a` is f32 `[..., K]` with K a whole number of blocks (padded by the caller), `codes`
/// u8 `[nb, bs·bits/8, N]`, `scales` and `zs` f32 `[nb, N]`, `bias` f32 `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    em: &mut Emitter,
    a: &Val,
    codes: &Val,
    scales: &Val,
    zs: &Val,
    bias: &Val,
    n: u64,
    bits: u64,
    block_size: u64,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let k = a.dims()[a.rank() - 1]
        .known()
        .ok_or_else(|| em.err("K must be static"))?;
    let a2 = kernel_call::rows(em, a)?;
    let (m_ty, suffix) = kernel_call::m_text(&a2);
    let nb = k / block_size;
    let name = format!("compc_cpu_nbits{bits}_n{n}_k{k}_bs{block_size}_{suffix}");
    em.add_helper(name.clone(), || {
        helper(&name, &m_ty, n, k, nb, bits, block_size)
    });
    kernel_call::call(em, &name, &a2, &[codes, scales, zs, bias], n, out)
}

/// The helper function: loops over 16-feature column tiles, [`ROWS`]-row tiles, blocks
/// and byte positions; the result written into `%om`.
fn helper(name: &str, m_ty: &str, n: u64, k: u64, nb: u64, bits: u64, bs: u64) -> String {
    let per_block = bs * bits / 8;
    let a_t = format!("memref<{m_ty}x{k}xf32>");
    let c_t = format!("memref<{nb}x{per_block}x{n}xi8>");
    let s_t = format!("memref<{nb}x{n}xf32>");
    let o_t = format!("memref<{m_ty}x{n}xf32>");
    let vf = format!("vector<{LANES}xf32>");
    let vi = format!("vector<{LANES}xi8>");
    // One step of the byte loop reads two codes per feature: for 4 bits the low and high
    // nibble of one byte (k and k+1), for 8 bits two consecutive bytes.
    let (step, unpack) = if bits == 4 {
        (
            1,
            format!(
                r#"          %c = vector.load %cm[%blk, %j, %n0] : {c_t}, {vi}
          %q0 = arith.andi %c, %mask : {vi}
          %q1 = arith.shrui %c, %four : {vi}
          %k0 = arith.addi %kb, %j2 : index
"#
            ),
        )
    } else {
        (
            2,
            format!(
                r#"          %q0 = vector.load %cm[%blk, %j, %n0] : {c_t}, {vi}
          %j1 = arith.addi %j, %one : index
          %q1 = vector.load %cm[%blk, %j1, %n0] : {c_t}, {vi}
          %k0 = arith.addi %kb, %j : index
"#
            ),
        )
    };
    let rows: Vec<u64> = (0..ROWS).collect();
    let mut row_idx = String::new();
    for r in &rows {
        row_idx += &format!(
            r#"      %m{r} = arith.addi %mt, %r{r} : index
      %row{r} = arith.minui %m{r}, %mlast : index
"#
        );
    }
    let mut fmas = String::new();
    for r in &rows {
        fmas += &format!(
            r#"          %a0_{r} = memref.load %am[%row{r}, %k0] : {a_t}
          %a1_{r} = memref.load %am[%row{r}, %k1] : {a_t}
          %b0_{r} = vector.broadcast %a0_{r} : f32 to {vf}
          %b1_{r} = vector.broadcast %a1_{r} : f32 to {vf}
          %y0_{r} = vector.fma %b0_{r}, %w0, %x0_{r} : {vf}
          %y1_{r} = vector.fma %b1_{r}, %w1, %x1_{r} : {vf}
"#
        );
    }
    let accs = |p: &str| -> Vec<String> {
        rows.iter()
            .flat_map(|r| [format!("%{p}0_{r}"), format!("%{p}1_{r}")])
            .collect()
    };
    let types = vec![vf.as_str(); 2 * ROWS as usize].join(", ");
    let iter = |inner: &str, outer: &[String]| -> String {
        inner
            .split(", ")
            .zip(outer)
            .map(|(i, o)| format!("{i} = {o}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let init: Vec<String> = rows
        .iter()
        .flat_map(|_| ["%bias".to_string(), "%zero".to_string()])
        .collect();
    let blk_args = accs("u").join(", ");
    let j_args = accs("x").join(", ");
    let mut stores = String::new();
    for r in &rows {
        stores += &format!(
            r#"      %sum{r} = arith.addf %acc#{a}, %acc#{b} : {vf}
      %in{r} = arith.cmpi ult, %m{r}, %m : index
      scf.if %in{r} {{
        vector.store %sum{r}, %om[%m{r}, %n0] : {o_t}, {vf}
      }}
"#,
            a = 2 * r,
            b = 2 * r + 1
        );
    }
    format!(
        r#"func.func private @{name}(%am: {a_t}, %cm: {c_t}, %sm: {s_t}, %zm: {s_t}, %biasm: memref<{n}xf32>, %om: {o_t}) {{
  %c0 = arith.constant 0 : index
  %one = arith.constant 1 : index
  %rows = arith.constant {ROWS} : index
  %lanes = arith.constant {LANES} : index
  %cn = arith.constant {n} : index
  %cnb = arith.constant {nb} : index
  %cpb = arith.constant {per_block} : index
  %cbs = arith.constant {bs} : index
  %step = arith.constant {step} : index
{row_consts}  %mask = arith.constant dense<15> : {vi}
  %four = arith.constant dense<4> : {vi}
  %zero = arith.constant dense<0.0> : {vf}
  %m = memref.dim %am, %c0 : {a_t}
  %mlast = arith.subi %m, %one : index
  scf.for %n0 = %c0 to %cn step %lanes {{
    %bias = vector.load %biasm[%n0] : memref<{n}xf32>, {vf}
    scf.for %mt = %c0 to %m step %rows {{
{row_idx}      %acc:{nacc} = scf.for %blk = %c0 to %cnb step %one iter_args({blk_iter}) -> ({types}) {{
        %s = vector.load %sm[%blk, %n0] : {s_t}, {vf}
        %zs = vector.load %zm[%blk, %n0] : {s_t}, {vf}
        %kb = arith.muli %blk, %cbs : index
        %part:{nacc} = scf.for %j = %c0 to %cpb step %step iter_args({j_iter}) -> ({types}) {{
          %j2 = arith.addi %j, %j : index
{unpack}          %k1 = arith.addi %k0, %one : index
          %f0 = arith.uitofp %q0 : {vi} to {vf}
          %f1 = arith.uitofp %q1 : {vi} to {vf}
          %w0 = vector.fma %f0, %s, %zs : {vf}
          %w1 = vector.fma %f1, %s, %zs : {vf}
{fmas}          scf.yield {ys} : {types}
        }}
        scf.yield {ins} : {types}
      }}
{stores}    }}
  }}
  return
}}
"#,
        nacc = 2 * ROWS,
        row_consts = rows
            .iter()
            .map(|r| format!("  %r{r} = arith.constant {r} : index\n"))
            .collect::<String>(),
        blk_iter = iter(&blk_args, &init),
        j_iter = iter(&j_args, &accs("u")),
        ys = accs("y").join(", "),
        ins = (0..2 * ROWS)
            .map(|i| format!("%part#{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

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
//! - a register tile is [`ROWS`] rows of A × 16 or 32 output features (two vectors where
//!   N allows): each byte of codes is unpacked once for the tile and used by [`ROWS`]
//!   FMAs per code, the activations are broadcast from memory; 16 independent FMA chains
//!   (two per row for one vector: k and k+1; one per row and vector for two);
//! - rows past the end of A are clamped to the last row (their results are not stored),
//!   so any number of rows runs through the one tile shape without masks;
//! - with more than [`SCRATCH_ROWS`] rows of A (a prompt rather than one decode step),
//!   each column tile is dequantized once into a scratch buffer and the row tiles read
//!   that as f32, so the unpacking is not repeated for every 8 rows.

use super::builder::{Emitter, Val};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Rows of A per register tile (two accumulators a row: 16 of the 32 AVX-512 registers).
const ROWS: u64 = 8;
/// Output features per register tile (one AVX-512 vector of f32).
const LANES: u64 = 16;
/// Above this many rows of A (prefill rather than decoding), a column tile's weights are
/// dequantized once into a scratch buffer `[K, columns]` that every row tile then reads
/// as f32, instead of each row tile unpacking the codes again: with M rows the codes
/// would be unpacked ⌈M / ROWS⌉ times. At or below it the unpacking stays fused into the
/// FMA loop, where the weights are read once as codes.
const SCRATCH_ROWS: u64 = 2 * ROWS;

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

/// Column vectors per register tile: two (32 features) where N allows, one otherwise.
/// With two, each unpacked code vector feeds twice the FMAs per broadcast activation.
fn vectors_per_tile(n: u64) -> u64 {
    if n.is_multiple_of(2 * LANES) {
        2
    } else {
        1
    }
}

/// The helper function: loops over column tiles of [`vectors_per_tile`] × 16 features,
/// [`ROWS`]-row tiles, blocks and byte positions; the result written into `%om`.
fn helper(name: &str, m_ty: &str, n: u64, k: u64, nb: u64, bits: u64, bs: u64) -> String {
    let per_block = bs * bits / 8;
    let a_t = format!("memref<{m_ty}x{k}xf32>");
    let c_t = format!("memref<{nb}x{per_block}x{n}xi8>");
    let s_t = format!("memref<{nb}x{n}xf32>");
    let o_t = format!("memref<{m_ty}x{n}xf32>");
    let vf = format!("vector<{LANES}xf32>");
    let vi = format!("vector<{LANES}xi8>");
    let vecs = vectors_per_tile(n);
    // Independent FMA chains per accumulator: with one vector per tile the codes of k and
    // k+1 go to two accumulators a row (8 rows × 2 = 16 chains); with two vectors each
    // vector's accumulator takes both (8 × 2 = 16 chains again, within 32 registers).
    let chains: u64 = if vecs == 1 { 2 } else { 1 };
    // One step of the byte loop reads two codes per feature: for 4 bits the low and high
    // nibble of one byte (k and k+1), for 8 bits two consecutive bytes.
    let step = if bits == 4 { 1 } else { 2 };
    let mut unpack = String::new();
    for v in 0..vecs {
        unpack += &format!("          %nv{v} = arith.addi %n0, %voff{v} : index\n");
        if bits == 4 {
            unpack += &format!(
                r#"          %c_{v} = vector.load %cm[%blk, %j, %nv{v}] : {c_t}, {vi}
          %q0_{v} = arith.andi %c_{v}, %mask : {vi}
          %q1_{v} = arith.shrui %c_{v}, %four : {vi}
"#
            );
        } else {
            unpack += &format!(
                r#"          %q0_{v} = vector.load %cm[%blk, %j, %nv{v}] : {c_t}, {vi}
          %q1_{v} = vector.load %cm[%blk, %j1, %nv{v}] : {c_t}, {vi}
"#
            );
        }
        unpack += &format!(
            r#"          %f0_{v} = arith.uitofp %q0_{v} : {vi} to {vf}
          %f1_{v} = arith.uitofp %q1_{v} : {vi} to {vf}
          %w0_{v} = vector.fma %f0_{v}, %s_{v}, %zs_{v} : {vf}
          %w1_{v} = vector.fma %f1_{v}, %s_{v}, %zs_{v} : {vf}
"#
        );
    }
    let k_index = if bits == 4 {
        "          %k0 = arith.addi %kb, %j2 : index\n"
    } else {
        "          %j1 = arith.addi %j, %one : index\n          %k0 = arith.addi %kb, %j : index\n"
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
    // Accumulator (row r, vector v, chain c), named `%{prefix}{c}_{r}_{v}`.
    let acc_names = |p: &str| -> Vec<String> {
        let mut names = Vec::new();
        for r in &rows {
            for v in 0..vecs {
                for c in 0..chains {
                    names.push(format!("%{p}{c}_{r}_{v}"));
                }
            }
        }
        names
    };
    let mut fmas = String::new();
    for r in &rows {
        fmas += &format!(
            r#"          %a0_{r} = memref.load %am[%row{r}, %k0] : {a_t}
          %a1_{r} = memref.load %am[%row{r}, %k1] : {a_t}
          %b0_{r} = vector.broadcast %a0_{r} : f32 to {vf}
          %b1_{r} = vector.broadcast %a1_{r} : f32 to {vf}
"#
        );
        for v in 0..vecs {
            fmas += &if chains == 2 {
                format!(
                    r#"          %y0_{r}_{v} = vector.fma %b0_{r}, %w0_{v}, %x0_{r}_{v} : {vf}
          %y1_{r}_{v} = vector.fma %b1_{r}, %w1_{v}, %x1_{r}_{v} : {vf}
"#
                )
            } else {
                format!(
                    r#"          %t_{r}_{v} = vector.fma %b0_{r}, %w0_{v}, %x0_{r}_{v} : {vf}
          %y0_{r}_{v} = vector.fma %b1_{r}, %w1_{v}, %t_{r}_{v} : {vf}
"#
                )
            };
        }
    }
    let nacc = (ROWS * vecs * chains) as usize;
    let types = vec![vf.as_str(); nacc].join(", ");
    let iter = |inner: &[String], outer: &[String]| -> String {
        inner
            .iter()
            .zip(outer)
            .map(|(i, o)| format!("{i} = {o}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut init = Vec::new();
    for _ in &rows {
        for v in 0..vecs {
            for c in 0..chains {
                init.push(if c == 0 {
                    format!("%bias{v}")
                } else {
                    "%zero".to_string()
                });
            }
        }
    }
    let mut stores = String::new();
    let mut a = 0;
    for r in &rows {
        stores += &format!("      %in{r} = arith.cmpi ult, %m{r}, %m : index\n");
        for v in 0..vecs {
            let mut sum = format!("%acc#{a}");
            for c in 1..chains {
                stores += &format!(
                    "      %sum{r}_{v}_{c} = arith.addf {sum}, %acc#{b} : {vf}\n",
                    b = a + c as usize
                );
                sum = format!("%sum{r}_{v}_{c}");
            }
            a += chains as usize;
            stores += &format!(
                r#"      scf.if %in{r} {{
        %ns{r}_{v} = arith.addi %n0, %voff{v} : index
        vector.store {sum}, %om[%m{r}, %ns{r}_{v}] : {o_t}, {vf}
      }}
"#
            );
        }
    }
    let per_vector = |f: &dyn Fn(u64) -> String| (0..vecs).map(f).collect::<String>();
    // The column tile's weights dequantized once, `[K, columns]`, for A with many rows.
    let scr_t = format!("memref<{k}x{}xf32>", vecs * LANES);
    format!(
        r#"func.func private @{name}(%am: {a_t}, %cm: {c_t}, %sm: {s_t}, %zm: {s_t}, %biasm: memref<{n}xf32>, %om: {o_t}) {{
  %c0 = arith.constant 0 : index
  %one = arith.constant 1 : index
  %rows = arith.constant {ROWS} : index
  %cols = arith.constant {cols} : index
  %cn = arith.constant {n} : index
  %cnb = arith.constant {nb} : index
  %cpb = arith.constant {per_block} : index
  %cbs = arith.constant {bs} : index
  %step = arith.constant {step} : index
{row_consts}{vec_consts}  %mask = arith.constant dense<15> : {vi}
  %four = arith.constant dense<4> : {vi}
  %zero = arith.constant dense<0.0> : {vf}
  %m = memref.dim %am, %c0 : {a_t}
  %mlast = arith.subi %m, %one : index
  %ck = arith.constant {k} : index
  %two = arith.constant 2 : index
  %manyrows = arith.constant {scratch_rows} : index
  %big = arith.cmpi ugt, %m, %manyrows : index
  scf.if %big {{
  // Only the prompt path allocates the scratch; decoding never touches it.
  %scr = memref.alloc() : {scr_t}
  scf.for %n0 = %c0 to %cn step %cols {{
{bias_loads}      scf.for %blk = %c0 to %cnb step %one {{
{scale_loads}        %kb = arith.muli %blk, %cbs : index
        scf.for %j = %c0 to %cpb step %step {{
          %j2 = arith.addi %j, %j : index
{k_index}          %k1 = arith.addi %k0, %one : index
{unpack}{scratch_stores}        }}
      }}
      scf.for %mt = %c0 to %m step %rows {{
{row_idx}      %acc:{nacc} = scf.for %k0 = %c0 to %ck step %two iter_args({k_iter}) -> ({types}) {{
          %k1 = arith.addi %k0, %one : index
{scratch_loads}{fmas}          scf.yield {ys} : {types}
      }}
{stores}      }}
  }}
  }} else {{
  scf.for %n0 = %c0 to %cn step %cols {{
{bias_loads}    scf.for %mt = %c0 to %m step %rows {{
{row_idx}      %acc:{nacc} = scf.for %blk = %c0 to %cnb step %one iter_args({blk_iter}) -> ({types}) {{
{scale_loads}        %kb = arith.muli %blk, %cbs : index
        %part:{nacc} = scf.for %j = %c0 to %cpb step %step iter_args({j_iter}) -> ({types}) {{
          %j2 = arith.addi %j, %j : index
{k_index}          %k1 = arith.addi %k0, %one : index
{unpack}{fmas}          scf.yield {ys} : {types}
        }}
        scf.yield {ins} : {types}
      }}
{stores}    }}
  }}
  }}
  return
}}
"#,
        scr_t = scr_t,
        scratch_rows = SCRATCH_ROWS,
        k_iter = iter(&acc_names("x"), &init),
        scratch_stores = per_vector(&|v| {
            format!(
            "          vector.store %w0_{v}, %scr[%k0, %voff{v}] : {scr_t}, {vf}\n          vector.store %w1_{v}, %scr[%k1, %voff{v}] : {scr_t}, {vf}\n"
        )
        }),
        scratch_loads = per_vector(&|v| {
            format!(
            "          %w0_{v} = vector.load %scr[%k0, %voff{v}] : {scr_t}, {vf}\n          %w1_{v} = vector.load %scr[%k1, %voff{v}] : {scr_t}, {vf}\n"
        )
        }),
        cols = vecs * LANES,
        row_consts = rows
            .iter()
            .map(|r| format!("  %r{r} = arith.constant {r} : index\n"))
            .collect::<String>(),
        vec_consts =
            per_vector(&|v| format!("  %voff{v} = arith.constant {} : index\n", v * LANES)),
        bias_loads = per_vector(&|v| {
            format!(
            "    %nb{v} = arith.addi %n0, %voff{v} : index\n    %bias{v} = vector.load %biasm[%nb{v}] : memref<{n}xf32>, {vf}\n"
        )
        }),
        scale_loads = per_vector(&|v| {
            format!(
            "        %ns_{v} = arith.addi %n0, %voff{v} : index\n        %s_{v} = vector.load %sm[%blk, %ns_{v}] : {s_t}, {vf}\n        %zs_{v} = vector.load %zm[%blk, %ns_{v}] : {s_t}, {vf}\n"
        )
        }),
        blk_iter = iter(&acc_names("u"), &init),
        j_iter = iter(&acc_names("x"), &acc_names("u")),
        ys = acc_names("y").join(", "),
        ins = (0..nacc)
            .map(|i| format!("%part#{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

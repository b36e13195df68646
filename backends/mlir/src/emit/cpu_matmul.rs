//! MatMul by a constant f32 weight on the CPU: the weight is re-laid out at compile time
//! into column panels `[N / C, K, C]` (C = 32 or 16 output features), and a hand-written
//! loop keeps a register tile of [`ROWS`] rows × C features while k runs, reading each
//! panel front to back.
//!
//! The generic schedule (`schedule.rs`) tiles `linalg.matmul` the same way, but reads B in
//! its own `[K, N]` order: every k step of a tile touches a new row of B, N·4 bytes
//! further on, so a tile's weights are scattered over K cache lines and pages. In a panel
//! they are contiguous, which the hardware prefetcher follows. On the trained LM
//! (`cargo bench --features mlir --bench native_cpu`, one thread) the compiled f32 model
//! went from 1.31× to 1.01× of onnxruntime's time on 32 tokens, and from 1.20× to 1.07× on
//! 8 × 32.
//!
//! The tile sizes assume AVX-512 (32 vector registers of 16 f32), like the MatMulNBits
//! kernel in `cpu_nbits`: 8 rows × 32 features are 16 accumulators.

use super::builder::{Emitter, Val};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Rows of A per register tile.
const ROWS: u64 = 8;
/// f32 lanes of one vector register.
const LANES: u64 = 16;

/// Output features per panel: two vectors where N allows, else one.
pub fn panel_width(n: u64) -> u64 {
    if n.is_multiple_of(2 * LANES) {
        2 * LANES
    } else {
        LANES
    }
}

/// Whether the kernel takes a `[K, N]` weight: N a whole number of vectors.
pub fn supported(k: u64, n: u64) -> bool {
    k > 0 && n > 0 && n.is_multiple_of(LANES)
}

/// `[K, N]` row-major → `[N / C, K, C]` panels, C = [`panel_width`].
pub fn panels(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    let c = panel_width(n as u64) as usize;
    let mut out = vec![0f32; k * n];
    for p in 0..n / c {
        for kk in 0..k {
            let dst = (p * k + kk) * c;
            let src = kk * n + p * c;
            out[dst..dst + c].copy_from_slice(&w[src..src + c]);
        }
    }
    out
}

/// Emits `out[m, n] = Σ_k a[m, k]·w[k, n]` with `w` given as [`panels`].
pub fn emit(
    em: &mut Emitter,
    a: &Val,
    w_panels: &Val,
    k: u64,
    n: u64,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let a2 = kernel_call::rows(em, a)?;
    let (m_ty, suffix) = kernel_call::m_text(&a2);
    let name = format!("compc_cpu_matmul_n{n}_k{k}_{suffix}");
    em.add_helper(name.clone(), || helper(&name, &m_ty, n, k));
    kernel_call::call(em, &name, &a2, &[w_panels], n, out)
}

/// The helper function: panels, then [`ROWS`]-row tiles, then k; rows past the end of A
/// are clamped to its last row (computed, not stored), so any M runs through the one
/// tile shape.
fn helper(name: &str, m_ty: &str, n: u64, k: u64) -> String {
    let c = panel_width(n);
    let vecs = c / LANES;
    let a_t = format!("memref<{m_ty}x{k}xf32>");
    let w_t = format!("memref<{}x{k}x{c}xf32>", n / c);
    let o_t = format!("memref<{m_ty}x{n}xf32>");
    let vf = format!("vector<{LANES}xf32>");
    let rows: Vec<u64> = (0..ROWS).collect();
    let accs = |p: &str| -> Vec<String> {
        rows.iter()
            .flat_map(|r| (0..vecs).map(move |v| format!("%{p}{r}_{v}")))
            .collect()
    };
    let nacc = accs("x").len();
    let types = vec![vf.as_str(); nacc].join(", ");
    let mut text = String::new();
    let mut line = |s: String| {
        text += &s;
        text.push('\n');
    };
    line(format!(
        "func.func private @{name}(%am: {a_t}, %wm: {w_t}, %om: {o_t}) {{"
    ));
    line("  %c0 = arith.constant 0 : index".into());
    line("  %one = arith.constant 1 : index".into());
    line(format!("  %rows = arith.constant {ROWS} : index"));
    line(format!("  %cpanels = arith.constant {} : index", n / c));
    line(format!("  %cpw = arith.constant {c} : index"));
    line(format!("  %ck = arith.constant {k} : index"));
    for r in &rows {
        line(format!("  %r{r} = arith.constant {r} : index"));
    }
    for v in 0..vecs {
        line(format!("  %voff{v} = arith.constant {} : index", v * LANES));
    }
    line(format!("  %zero = arith.constant dense<0.0> : {vf}"));
    line(format!("  %m = memref.dim %am, %c0 : {a_t}"));
    line("  %mlast = arith.subi %m, %one : index".into());
    line("  scf.for %p = %c0 to %cpanels step %one {".into());
    line("    %n0 = arith.muli %p, %cpw : index".into());
    line("    scf.for %mt = %c0 to %m step %rows {".into());
    for r in &rows {
        line(format!("      %m{r} = arith.addi %mt, %r{r} : index"));
        line(format!("      %row{r} = arith.minui %m{r}, %mlast : index"));
    }
    let inits: Vec<String> = accs("x").iter().map(|x| format!("{x} = %zero")).collect();
    line(format!(
        "      %acc:{nacc} = scf.for %kk = %c0 to %ck step %one iter_args({}) -> ({types}) {{",
        inits.join(", ")
    ));
    for v in 0..vecs {
        line(format!(
            "        %w{v} = vector.load %wm[%p, %kk, %voff{v}] : {w_t}, {vf}"
        ));
    }
    for r in &rows {
        line(format!(
            "        %a{r} = memref.load %am[%row{r}, %kk] : {a_t}"
        ));
        line(format!(
            "        %b{r} = vector.broadcast %a{r} : f32 to {vf}"
        ));
        for v in 0..vecs {
            line(format!(
                "        %y{r}_{v} = vector.fma %b{r}, %w{v}, %x{r}_{v} : {vf}"
            ));
        }
    }
    line(format!(
        "        scf.yield {} : {types}",
        accs("y").join(", ")
    ));
    line("      }".into());
    for (i, r) in rows.iter().enumerate() {
        line(format!("      %in{r} = arith.cmpi ult, %m{r}, %m : index"));
        line(format!("      scf.if %in{r} {{"));
        for v in 0..vecs {
            let a = i * vecs as usize + v as usize;
            line(format!(
                "        %nc{r}_{v} = arith.addi %n0, %voff{v} : index"
            ));
            line(format!(
                "        vector.store %acc#{a}, %om[%m{r}, %nc{r}_{v}] : {o_t}, {vf}"
            ));
        }
        line("      }".into());
    }
    line("    }".into());
    line("  }".into());
    line("  return".into());
    line("}".into());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_each_column_block_front_to_back() {
        for n in [16usize, 32, 48, 64] {
            let k = 5;
            let w: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            let p = panels(&w, k, n);
            let c = panel_width(n as u64) as usize;
            assert_eq!(c, if n % 32 == 0 { 32 } else { 16 });
            for kk in 0..k {
                for j in 0..n {
                    assert_eq!(p[((j / c) * k + kk) * c + j % c], w[kk * n + j]);
                }
            }
        }
    }
}

//! Hessian machinery shared by GPTQ (`quant`) and SparseGPT (`prune`): the damped
//! inverse Hessian's upper Cholesky factor, and the handling of dead inputs. Both
//! methods walk the columns of W in a fixed order and use row `j` of `U` (`H⁻¹ = UᵀU`)
//! as the OBS elimination step of column `j` (techniques.md §2.1).

use super::linalg::{cholesky_lower, inverse_from_lower, matmul};
use faer::Mat;
use rayon::prelude::*;

/// Marks inputs that were always zero (`H_jj = 0`): sets `H_jj = 1` and zeroes column
/// `j` of the W-form `w` (`rows × n`), as the references do. Returns how many.
pub fn zero_dead_inputs(h: &mut [f64], w: &mut [f32], rows: usize, n: usize) -> usize {
    let mut dead = 0;
    for j in 0..n {
        if h[j * n + j] == 0.0 {
            h[j * n + j] = 1.0;
            dead += 1;
            for r in 0..rows {
                w[r * n + j] = 0.0;
            }
        }
    }
    dead
}

/// The upper Cholesky factor `U` of `(H + λI)⁻¹` (`H⁻¹ = UᵀU`), row-major f32, and the
/// damping fraction used.
pub fn inverse_cholesky(h: &[f64], n: usize, damp: f64) -> Result<(Vec<f32>, f64), String> {
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mut frac = damp;
    for attempt in 0..6 {
        if attempt > 0 {
            frac = if frac > 0.0 { frac * 10.0 } else { 1e-6 };
        }
        let lambda = frac * mean_diag;
        let hm = Mat::<f64>::from_fn(n, n, |i, j| {
            h[i * n + j] + if i == j { lambda } else { 0.0 }
        });
        let Some(l1) = cholesky_lower(&hm) else {
            continue;
        };
        // The inverse comes back as its lower triangle, which is all the second
        // factorization reads.
        let hinv = inverse_from_lower(&l1);
        let Some(l) = cholesky_lower(&hinv) else {
            continue;
        };
        let mut u = vec![0f32; n * n];
        let mut finite = true;
        for i in 0..n {
            for j in i..n {
                let v = l[(j, i)];
                finite &= v.is_finite();
                u[i * n + j] = v as f32;
            }
        }
        if finite && (0..n).all(|i| u[i * n + i] > 0.0) {
            return Ok((u, frac));
        }
    }
    Err(format!(
        "the Hessian is not positive definite even with damping {frac} (mean diagonal {mean_diag:e})"
    ))
}

/// One column of GPTQ's and SparseGPT's OBS solve inside a block: weight `j` of the row
/// `wr` becomes `q` (its code's value, or 0 when pruned), and the scaled error
/// `e = (w_j − q) / U[j, j]` is spread over the block's later columns `j + 1..end`,
/// `w_j' −= e · U[j, j']`, with `U` the upper Cholesky factor of H⁻¹ (`n × n`). Returns
/// `e` (for the block's lazy update of the columns after it) and the column's loss
/// `e² / 2`. `wr[j]` itself is left as it was.
#[inline]
pub fn obs_column_step(
    wr: &mut [f32],
    u: &[f32],
    n: usize,
    j: usize,
    end: usize,
    q: f32,
) -> (f32, f64) {
    let x = wr[j];
    let d = u[j * n + j];
    let e = (x - q) / d;
    let loss = ((x - q) as f64 / d as f64).powi(2) / 2.0;
    if e != 0.0 {
        let urow = &u[j * n..j * n + n];
        for j2 in j + 1..end {
            wr[j2] -= e * urow[j2];
        }
    }
    (e, loss)
}

/// GPTQ/SparseGPT's lazy batch update after a finished column block `i1..i2`: the
/// block's scaled errors `err` (`rows × (i2 − i1)`) are propagated to every later column,
/// `W[:, i2:] −= E · U[i1:i2, i2:]`, with `U` the upper Cholesky factor of H⁻¹ (`n × n`)
/// and `w` row-major `rows × n`.
pub fn propagate_block_error(
    w: &mut [f32],
    err: &[f32],
    u: &[f32],
    n: usize,
    i1: usize,
    i2: usize,
) -> Result<(), String> {
    if i2 >= n {
        return Ok(());
    }
    let (rest, cnt) = (n - i2, i2 - i1);
    let rows = w.len() / n.max(1);
    let ub: Vec<f32> = (i1..i2)
        .flat_map(|r| u[r * n + i2..r * n + n].iter().copied())
        .collect();
    let p = matmul(err, &ub, rows, cnt, rest).map_err(|e| e.to_string())?;
    w.par_chunks_mut(n)
        .zip(p.par_chunks(rest))
        .for_each(|(wr, pr)| {
            for (a, b) in wr[i2..].iter_mut().zip(pr) {
                *a -= b;
            }
        });
    Ok(())
}

/// The report's note on a Hessian-based solve (GPTQ, SparseGPT): its loss, the damping
/// when it had to be raised above `requested`, and the inputs that were never active.
pub fn solve_note(loss: f64, damp: f64, requested: f64, dead: usize) -> String {
    let mut note = format!("loss {loss:.3e}");
    if damp != requested {
        note += &format!(", damping raised to {damp}");
    }
    if dead > 0 {
        note += &format!(", {dead} dead inputs");
    }
    note
}

/// The shapes and values a Hessian-based solve (GPTQ, SparseGPT) needs: a `rows × n`
/// weight, an `n × n` finite Hessian.
pub fn check_solve_inputs(
    method: &str,
    w: &[f32],
    rows: usize,
    n: usize,
    h: &[f64],
) -> Result<(), String> {
    if w.len() != rows * n || h.len() != n * n {
        return Err(format!(
            "{method} needs a {rows}×{n} weight and a {n}×{n} Hessian, got {} and {} values",
            w.len(),
            h.len()
        ));
    }
    if h.iter().any(|v| !v.is_finite()) {
        return Err("the Hessian has NaN or infinite entries".into());
    }
    Ok(())
}

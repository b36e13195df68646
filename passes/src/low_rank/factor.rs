//! Low-rank factorizations of one weight in W-form (`m` outputs × `n` inputs), in f64:
//! `W ≈ W₂ W₁` with `W₁` (r × n) and `W₂` (m × r), singular values split evenly
//! between the factors (`W₂ = U_r Σ_r^{1/2}`, `W₁ = Σ_r^{1/2} V_rᵀ T⁻¹`, techniques.md §8).
//!
//! Every method is an SVD of `W T` for an invertible input transform `T`, undone on the
//! first factor: plain SVD (`T = I`), ASVD (`T = diag(s)`) and SVD-LLM (`T = L`, the
//! lower Cholesky factor of the calibration Gram matrix, so that the dropped singular
//! values are exactly the output error on the calibration inputs).
//!
//! faer runs sequentially (`Par::Seq`, see [`crate::calib::linalg`]); the products here
//! are plain loops.

use crate::calib::linalg::{cholesky_lower, matmul, thin_svd};
use faer::Mat;

/// The input-space transform `T` applied before the SVD.
pub enum Transform<'a> {
    Identity,
    /// `diag(s)`, every `s_j > 0`.
    Scale(&'a [f64]),
    /// Lower triangular `L` with a positive diagonal.
    Lower(&'a Mat<f64>),
}

#[derive(Clone, Debug)]
pub struct Factors {
    pub rank: usize,
    /// `W₁`, r × n row-major (applied first).
    pub w1: Vec<f32>,
    /// `W₂`, m × r row-major.
    pub w2: Vec<f32>,
    /// Every singular value of `W T`, non-increasing.
    pub sigma: Vec<f64>,
}

impl Factors {
    /// `(Σ_{i>r} σ_i²)^{1/2} / (Σ σ_i²)^{1/2}`: the relative error of the truncation in
    /// the transformed space (for SVD-LLM: the relative output error on the calibration
    /// inputs; for plain SVD: the relative weight error).
    pub fn truncation_rel_err(&self) -> f64 {
        let total: f64 = self.sigma.iter().map(|s| s * s).sum();
        let dropped: f64 = self.sigma[self.rank.min(self.sigma.len())..]
            .iter()
            .map(|s| s * s)
            .sum();
        if total > 0.0 {
            (dropped / total).sqrt()
        } else {
            0.0
        }
    }

    /// `W₂ W₁` (m × n row-major, f32, through the runtime's gemm).
    pub fn product(&self, m: usize, n: usize) -> Vec<f32> {
        matmul(&self.w2, &self.w1, m, self.rank, n).unwrap_or_else(|_| vec![f32::NAN; m * n])
    }
}

/// The lower Cholesky factor of `gram + λI` (n × n row-major, symmetric), with
/// `λ = frac · mean diagonal`; `frac` starts at `damp` and is raised tenfold while the
/// factorization fails. Returns the factor and the fraction used.
pub fn whitening(gram: &[f64], n: usize, damp: f64) -> Result<(Mat<f64>, f64), String> {
    let mean_diag = (0..n).map(|i| gram[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let scale = if mean_diag > 0.0 { mean_diag } else { 1.0 };
    let mut frac = damp;
    for attempt in 0..8 {
        if attempt > 0 {
            frac = if frac > 0.0 { frac * 10.0 } else { 1e-8 };
        }
        let lambda = frac * scale;
        let g = Mat::<f64>::from_fn(n, n, |i, j| {
            gram[i * n + j] + if i == j { lambda } else { 0.0 }
        });
        if let Some(l) = cholesky_lower(&g) {
            if (0..n).all(|i| l[(i, i)] > 0.0 && l[(i, i)].is_finite()) {
                return Ok((l, frac));
            }
        }
    }
    Err(format!(
        "the calibration Gram matrix is not positive definite even with damping {frac} (mean diagonal {mean_diag:e})"
    ))
}

/// Factors `w` (m × n, W-form) at rank `r` (1 ≤ r ≤ min(m, n)) after the transform `t`.
pub fn factor(w: &[f32], m: usize, n: usize, r: usize, t: &Transform) -> Result<Factors, String> {
    if w.len() != m * n {
        return Err(format!("weight of {} values is not {m}×{n}", w.len()));
    }
    if r == 0 || r > m.min(n) {
        return Err(format!("rank {r} is not in 1..={}", m.min(n)));
    }
    let (u, sigma, v) = thin_svd(&transformed(w, m, n, t))?;
    let sq: Vec<f64> = sigma[..r].iter().map(|s| s.sqrt()).collect();
    let mut w2 = vec![0f32; m * r];
    for i in 0..m {
        for k in 0..r {
            w2[i * r + k] = (u[(i, k)] * sq[k]) as f32;
        }
    }
    // Row k of W₁ is √σ_k · v_kᵀ T⁻¹.
    let mut w1 = vec![0f32; r * n];
    let mut z = vec![0f64; n];
    let lt = match t {
        Transform::Lower(l) => lower_columns(l),
        _ => vec![],
    };
    for k in 0..r {
        match t {
            Transform::Identity => (0..n).for_each(|j| z[j] = v[(j, k)]),
            Transform::Scale(s) => (0..n).for_each(|j| z[j] = v[(j, k)] / s[j]),
            Transform::Lower(_) => {
                // z L = v_kᵀ  ⇔  Lᵀ zᵀ = v_k: back substitution.
                for j in (0..n).rev() {
                    let col = &lt[j * n..(j + 1) * n];
                    z[j] = (v[(j, k)] - dot(&col[j + 1..], &z[j + 1..])) / col[j];
                }
            }
        }
        for j in 0..n {
            w1[k * n + j] = (z[j] * sq[k]) as f32;
        }
    }
    Ok(Factors {
        rank: r,
        w1,
        w2,
        sigma,
    })
}

/// `W T` (m × n) in f64.
fn transformed(w: &[f32], m: usize, n: usize, t: &Transform) -> Mat<f64> {
    match t {
        Transform::Identity => Mat::<f64>::from_fn(m, n, |i, j| w[i * n + j] as f64),
        Transform::Scale(s) => Mat::<f64>::from_fn(m, n, |i, j| w[i * n + j] as f64 * s[j]),
        Transform::Lower(l) => {
            let lt = lower_columns(l);
            let mut out = Mat::<f64>::zeros(m, n);
            let mut row = vec![0f64; n];
            for i in 0..m {
                for (d, &x) in row.iter_mut().zip(&w[i * n..(i + 1) * n]) {
                    *d = x as f64;
                }
                for j in 0..n {
                    out[(i, j)] = dot(&row[j..], &lt[j * n + j..(j + 1) * n]);
                }
            }
            out
        }
    }
}

/// The singular values of `W T`, non-increasing: what rank allocation weighs.
pub fn spectrum(w: &[f32], m: usize, n: usize, t: &Transform) -> Result<Vec<f64>, String> {
    if w.len() != m * n {
        return Err(format!("weight of {} values is not {m}×{n}", w.len()));
    }
    Ok(thin_svd(&transformed(w, m, n, t))?.1)
}

/// The columns of `l` (n × n), each contiguous: `out[j·n + i] = l[(i, j)]`.
fn lower_columns(l: &Mat<f64>) -> Vec<f64> {
    let n = l.nrows();
    let mut out = vec![0f64; n * n];
    for j in 0..n {
        for i in j..n {
            out[j * n + i] = l[(i, j)];
        }
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖W − W₂W₁‖_F / ‖W‖_F`.
pub fn weight_rel_err(w: &[f32], f: &Factors, m: usize, n: usize) -> f64 {
    let p = f.product(m, n);
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in w.iter().zip(&p) {
        num += (a as f64 - b as f64).powi(2);
        den += (a as f64).powi(2);
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    }
}

/// `(tr(Δ G Δᵀ) / tr(W G Wᵀ))^{1/2}` with `Δ = W − W₂W₁`: the relative output error on
/// inputs whose Gram matrix is `gram` (n × n).
pub fn output_rel_err(w: &[f32], f: &Factors, m: usize, n: usize, gram: &[f64]) -> f64 {
    let p = f.product(m, n);
    match crate::quant::pass::output_rel_err(w, &p, n, gram) {
        Ok(e) => e.max(0.0).sqrt(),
        Err(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }

    fn random(m: usize, n: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        (0..m * n).map(|_| r()).collect()
    }

    #[test]
    fn faer_thin_svd_reconstructs_and_is_orthonormal() {
        for (m, n) in [(7, 5), (5, 7), (40, 40), (33, 70)] {
            let w = random(m, n, 1);
            let a = Mat::<f64>::from_fn(m, n, |i, j| w[i * n + j] as f64);
            let (u, s, v) = thin_svd(&a).unwrap();
            let k = m.min(n);
            assert!(s.windows(2).all(|p| p[0] >= p[1]), "sorted {s:?}");
            for i in 0..m {
                for j in 0..n {
                    let x: f64 = (0..k).map(|t| u[(i, t)] * s[t] * v[(j, t)]).sum();
                    assert!((x - a[(i, j)]).abs() < 1e-10, "{m}×{n} at ({i},{j})");
                }
            }
            for p in 0..k {
                for q in 0..k {
                    let uu: f64 = (0..m).map(|i| u[(i, p)] * u[(i, q)]).sum();
                    let vv: f64 = (0..n).map(|j| v[(j, p)] * v[(j, q)]).sum();
                    let e = if p == q { 1.0 } else { 0.0 };
                    assert!((uu - e).abs() < 1e-10 && (vv - e).abs() < 1e-10);
                }
            }
        }
    }

    #[test]
    fn full_rank_is_exact_for_every_transform() {
        let (m, n) = (24, 16);
        let w = random(m, n, 2);
        let x = random(64, n, 3);
        let mut gram = vec![0f64; n * n];
        for row in x.chunks(n) {
            for a in 0..n {
                for b in 0..n {
                    gram[a * n + b] += row[a] as f64 * row[b] as f64;
                }
            }
        }
        let (l, _) = whitening(&gram, n, 0.0).unwrap();
        let s: Vec<f64> = (0..n).map(|j| 0.5 + j as f64 * 0.1).collect();
        for t in [
            Transform::Identity,
            Transform::Scale(&s),
            Transform::Lower(&l),
        ] {
            let f = factor(&w, m, n, n, &t).unwrap();
            assert!(weight_rel_err(&w, &f, m, n) < 1e-6);
            assert!(f.truncation_rel_err() < 1e-12);
        }
    }

    #[test]
    fn svd_error_is_the_dropped_singular_values_and_svdllm_wins_on_outputs() {
        let (m, n, r) = (20, 16, 5);
        let w = random(m, n, 4);
        // Inputs with very uneven channel scales.
        let mut rr = rng(5);
        let x: Vec<f32> = (0..200 * n)
            .map(|i| rr() * if i % n < 3 { 10.0 } else { 0.2 })
            .collect();
        let mut gram = vec![0f64; n * n];
        for row in x.chunks(n) {
            for a in 0..n {
                for b in 0..n {
                    gram[a * n + b] += row[a] as f64 * row[b] as f64;
                }
            }
        }
        let plain = factor(&w, m, n, r, &Transform::Identity).unwrap();
        let werr = weight_rel_err(&w, &plain, m, n);
        assert!((werr - plain.truncation_rel_err()).abs() < 1e-6, "{werr}");
        let (l, _) = whitening(&gram, n, 0.0).unwrap();
        let wh = factor(&w, m, n, r, &Transform::Lower(&l)).unwrap();
        let out_plain = output_rel_err(&w, &plain, m, n, &gram);
        let out_wh = output_rel_err(&w, &wh, m, n, &gram);
        // SVD-LLM's output error is exactly its dropped singular values.
        assert!((out_wh - wh.truncation_rel_err()).abs() < 1e-5, "{out_wh}");
        assert!(out_wh < 0.8 * out_plain, "{out_wh} vs {out_plain}");
        // And plain SVD keeps the smaller weight error.
        assert!(werr <= weight_rel_err(&w, &wh, m, n) + 1e-9);
    }

    #[test]
    fn bad_ranks_are_errors() {
        let w = random(4, 3, 6);
        assert!(factor(&w, 4, 3, 0, &Transform::Identity).is_err());
        assert!(factor(&w, 4, 3, 4, &Transform::Identity).is_err());
        assert!(factor(&w, 4, 4, 1, &Transform::Identity).is_err());
    }
}

//! Low-rank factorizations of one weight in W-form (`m` outputs × `n` inputs), in f64:
//! `W ≈ W₂ W₁` with `W₁` (r × n) and `W₂` (m × r), singular values split evenly
//! between the factors (`W₂ = U_r Σ_r^{1/2}`, `W₁ = Σ_r^{1/2} V_rᵀ T⁻¹`, techniques.md §8).
//!
//! Every method is an SVD of `W T` for an invertible input transform `T`, undone on the
//! first factor: plain SVD (`T = I`), ASVD (`T = diag(s)`) and SVD-LLM (`T = L`, the
//! lower Cholesky factor of the calibration Gram matrix, so that the dropped singular
//! values are exactly the output error on the calibration inputs).
//!
//! Output-feature PCA ([`Transform::OutputPca`], techniques.md §8.4) is the one method
//! that is not an SVD of `W T`: it projects the layer's outputs onto the top-r
//! eigenvectors `U_r` of their covariance, `W₁ = U_rᵀ W`, `W₂ = U_r`, and moves the part
//! of the output mean the projection drops into the bias ([`Factors::bias_shift`]).
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
    /// Not a transform of `W` but output-feature PCA: `cov` is the covariance of the
    /// layer's inputs (n × n), `mean` their mean. The outputs `Wx + b` then have the
    /// covariance `W cov Wᵀ` and the mean `W·mean + b`. With `cov` the uncentred Gram
    /// matrix and a zero mean this is uncentred PCA (which equals SVD-LLM, §8.5).
    OutputPca {
        cov: &'a Mat<f64>,
        mean: &'a [f64],
    },
}

#[derive(Clone, Debug)]
pub struct Factors {
    pub rank: usize,
    /// `W₁`, r × n row-major (applied first).
    pub w1: Vec<f32>,
    /// `W₂`, m × r row-major.
    pub w2: Vec<f32>,
    /// Every singular value of `W T`, non-increasing (for output PCA: the square roots
    /// of the output covariance's eigenvalues, so that `σ²` is again the energy).
    pub sigma: Vec<f64>,
    /// What the bias must gain (m values; empty when nothing): output PCA replaces
    /// `y = Wx + b` by `U_rU_rᵀ(y − μ) + μ`, i.e. `W' = U_rU_rᵀW` and
    /// `b' = U_rU_rᵀb + (I − U_rU_rᵀ)μ = b + (I − U_rU_rᵀ)W x̄` with `μ = W x̄ + b`.
    pub bias_shift: Vec<f64>,
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
    if let Transform::OutputPca { cov, mean } = t {
        return output_pca(w, m, n, r, cov, mean);
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
            Transform::Identity | Transform::OutputPca { .. } => {
                (0..n).for_each(|j| z[j] = v[(j, k)])
            }
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
        bias_shift: vec![],
    })
}

/// `W` (m × n row-major) as an f64 matrix.
fn w_f64(w: &[f32], m: usize, n: usize) -> Mat<f64> {
    Mat::<f64>::from_fn(m, n, |i, j| w[i * n + j] as f64)
}

/// `a · b` in f64 (faer, sequential; column-major operands, see the module header).
fn mul(a: faer::MatRef<f64>, b: faer::MatRef<f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        a,
        b,
        1.0,
        faer::Par::Seq,
    );
    out
}

/// Eigenvectors (columns, all m) and eigenvalues (non-increasing, clamped at 0) of the
/// output covariance `W cov Wᵀ` (m × m). Only the output width enters the
/// decomposition: m × m, however wide the input.
pub fn output_eigen(
    w: &[f32],
    m: usize,
    n: usize,
    cov: &Mat<f64>,
) -> Result<(Mat<f64>, Vec<f64>), String> {
    if w.len() != m * n || cov.nrows() != n || cov.ncols() != n {
        return Err(format!(
            "weight of {} values is not {m}×{n} or the input covariance is not {n}×{n}",
            w.len()
        ));
    }
    let wm = w_f64(w, m, n);
    let c = mul(mul(wm.as_ref(), cov.as_ref()).as_ref(), wm.transpose());
    // Exactly symmetric, so that the SVD of this positive semidefinite matrix is its
    // eigendecomposition (U = V up to the signs of round-off-negative eigenvalues,
    // which are ≈ 0 and never kept ahead of positive ones).
    let c = Mat::<f64>::from_fn(m, m, |i, j| 0.5 * (c[(i, j)] + c[(j, i)]));
    let (u, s, _) = thin_svd(&c)?;
    Ok((u, s))
}

/// Output-feature PCA at rank r (see [`Transform::OutputPca`]).
fn output_pca(
    w: &[f32],
    m: usize,
    n: usize,
    r: usize,
    cov: &Mat<f64>,
    mean: &[f64],
) -> Result<Factors, String> {
    if mean.len() != n {
        return Err(format!("input mean of {} values is not {n}", mean.len()));
    }
    let (u, lambda) = output_eigen(w, m, n, cov)?;
    let ur = u.subcols(0, r);
    let wm = w_f64(w, m, n);
    let w1m = mul(ur.transpose(), wm.as_ref());
    let w1: Vec<f32> = (0..r * n).map(|k| w1m[(k / n, k % n)] as f32).collect();
    let w2: Vec<f32> = (0..m * r).map(|k| ur[(k / r, k % r)] as f32).collect();
    // (I − U_rU_rᵀ) W x̄: the mean output the projection would otherwise lose.
    let bias_shift = if mean.iter().any(|&v| v != 0.0) {
        let wx: Vec<f64> = (0..m)
            .map(|i| (0..n).map(|j| wm[(i, j)] * mean[j]).sum())
            .collect();
        let coef: Vec<f64> = (0..r)
            .map(|k| (0..m).map(|i| ur[(i, k)] * wx[i]).sum())
            .collect();
        (0..m)
            .map(|i| wx[i] - (0..r).map(|k| ur[(i, k)] * coef[k]).sum::<f64>())
            .collect()
    } else {
        vec![]
    };
    Ok(Factors {
        rank: r,
        w1,
        w2,
        sigma: lambda.iter().map(|&l| l.max(0.0).sqrt()).collect(),
        bias_shift,
    })
}

/// `W T` (m × n) in f64.
fn transformed(w: &[f32], m: usize, n: usize, t: &Transform) -> Mat<f64> {
    match t {
        Transform::Identity | Transform::OutputPca { .. } => w_f64(w, m, n),
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
    if let Transform::OutputPca { cov, .. } = t {
        let (_, lambda) = output_eigen(w, m, n, cov)?;
        return Ok(lambda.iter().map(|&l| l.max(0.0).sqrt()).collect());
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

/// [`output_rel_err`] counting the bias change too, for factors with a
/// [`Factors::bias_shift`] `s`: the error `Δx − s` has the mean square
/// `tr(Δ G Δᵀ) − 2 sᵀΔx̄ + ‖s‖²` over inputs with Gram matrix `gram` (`XᵀX/N`) and
/// mean `mean`; the denominator stays `tr(W G Wᵀ)` so that every method is measured
/// against the same reference.
pub fn output_rel_err_with_bias(
    w: &[f32],
    f: &Factors,
    m: usize,
    n: usize,
    gram: &[f64],
    mean: &[f64],
) -> f64 {
    if f.bias_shift.is_empty() {
        return output_rel_err(w, f, m, n, gram);
    }
    if gram.len() != n * n || mean.len() != n || f.bias_shift.len() != m {
        return f64::NAN;
    }
    let p = f.product(m, n);
    let d = Mat::<f64>::from_fn(m, n, |i, j| w[i * n + j] as f64 - p[i * n + j] as f64);
    let wm = w_f64(w, m, n);
    let gm = Mat::<f64>::from_fn(n, n, |i, j| gram[i * n + j]);
    let quad = |a: &Mat<f64>| -> f64 {
        let ag = mul(a.as_ref(), gm.as_ref());
        (0..m)
            .map(|i| (0..n).map(|j| ag[(i, j)] * a[(i, j)]).sum::<f64>())
            .sum()
    };
    let s = &f.bias_shift;
    let cross: f64 = (0..m)
        .map(|i| s[i] * (0..n).map(|j| d[(i, j)] * mean[j]).sum::<f64>())
        .sum();
    let num = quad(&d) - 2.0 * cross + s.iter().map(|v| v * v).sum::<f64>();
    let den = quad(&wm);
    let e = if den > 0.0 { num / den } else { num };
    e.max(0.0).sqrt()
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

    /// `Σ x xᵀ / N` (n × n) and the mean of row-major rows of `n`.
    fn moments(x: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
        let rows = (x.len() / n) as f64;
        let mut gram = vec![0f64; n * n];
        let mut mean = vec![0f64; n];
        for row in x.chunks(n) {
            for a in 0..n {
                mean[a] += row[a] as f64 / rows;
                for b in 0..n {
                    gram[a * n + b] += row[a] as f64 * row[b] as f64 / rows;
                }
            }
        }
        (gram, mean)
    }

    fn mat(v: &[f64], n: usize) -> Mat<f64> {
        Mat::<f64>::from_fn(n, n, |i, j| v[i * n + j])
    }

    #[test]
    fn uncentred_output_pca_equals_svdllm_in_f64() {
        // techniques.md §8.5: with G full rank, U_rU_rᵀW (U_r the top eigenvectors of
        // W G Wᵀ) and U_rΣ_rV_rᵀL⁻¹ (SVD of W L, G = LLᵀ) are the same matrix.
        for (m, n, r) in [(20, 16, 5), (12, 30, 7)] {
            let w = random(m, n, 11);
            let mut rr = rng(12);
            let x: Vec<f32> = (0..300 * n)
                .map(|i| rr() * if i % n < 3 { 5.0 } else { 1.0 })
                .collect();
            let (gram, _) = moments(&x, n);
            let g = mat(&gram, n);
            let wm = w_f64(&w, m, n);
            let (u, _) = output_eigen(&w, m, n, &g).unwrap();
            let ur = u.subcols(0, r);
            let pca = mul(mul(ur, ur.transpose()).as_ref(), wm.as_ref());
            let (l, frac) = whitening(&gram, n, 0.0).unwrap();
            assert_eq!(frac, 0.0);
            let (us, sigma, v) = thin_svd(&transformed(&w, m, n, &Transform::Lower(&l))).unwrap();
            // L⁻¹ by forward substitution, column by column (L Z = I).
            let mut linv = Mat::<f64>::zeros(n, n);
            for c in 0..n {
                for i in c..n {
                    let acc: f64 = (c..i).map(|k| l[(i, k)] * linv[(k, c)]).sum();
                    linv[(i, c)] = (if i == c { 1.0 } else { 0.0 } - acc) / l[(i, i)];
                }
            }
            let us_s = Mat::<f64>::from_fn(m, r, |i, k| us[(i, k)] * sigma[k]);
            let svdllm = mul(
                mul(us_s.as_ref(), v.subcols(0, r).transpose()).as_ref(),
                linv.as_ref(),
            );
            let scale = (0..m)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| pca[(i, j)].abs())
                .fold(0.0, f64::max);
            for i in 0..m {
                for j in 0..n {
                    let d = (pca[(i, j)] - svdllm[(i, j)]).abs();
                    assert!(d < 1e-10 * scale.max(1.0), "{m}×{n} r {r} ({i},{j}): {d:e}");
                }
            }
            // And the uncentred PCA's spectrum is SVD-LLM's: λ_i(WGWᵀ) = σ_i(WL)².
            let f = factor(
                &w,
                m,
                n,
                r,
                &Transform::OutputPca {
                    cov: &g,
                    mean: &vec![0.0; n],
                },
            )
            .unwrap();
            assert!(f.bias_shift.is_empty());
            for (a, b) in f.sigma.iter().zip(&sigma) {
                assert!((a - b).abs() < 1e-8 * sigma[0], "{a} vs {b}");
            }
        }
    }

    /// Inputs whose channels have a large common offset: a layer's outputs then have a
    /// large mean, which uncentred PCA spends rank on and centred PCA folds into the bias.
    fn offset_inputs(n: usize, seed: u64) -> Vec<f32> {
        let mut rr = rng(seed);
        (0..400 * n)
            .map(|i| rr() + if i % n < n / 2 { 3.0 } else { -2.0 })
            .collect()
    }

    #[test]
    fn centred_output_pca_is_exact_at_full_rank_and_beats_uncentred_and_svdllm() {
        let (m, n) = (24, 16);
        let w = random(m, n, 13);
        let x = offset_inputs(n, 14);
        let (gram, mean) = moments(&x, n);
        let cov: Vec<f64> = (0..n * n)
            .map(|k| gram[k] - mean[k / n] * mean[k % n])
            .collect();
        let (g, c) = (mat(&gram, n), mat(&cov, n));
        let centred = Transform::OutputPca {
            cov: &c,
            mean: &mean,
        };
        // Full rank: W₂W₁ = W and the bias is unchanged (m > n: the covariance's range is
        // W's, so the projection keeps all of W x̄).
        let f = factor(&w, m, n, n, &centred).unwrap();
        assert!(weight_rel_err(&w, &f, m, n) < 1e-6);
        assert!(
            f.bias_shift.iter().all(|s| s.abs() < 1e-9),
            "{:?}",
            f.bias_shift
        );
        assert!(output_rel_err_with_bias(&w, &f, m, n, &gram, &mean) < 1e-6);
        let (l, _) = whitening(&gram, n, 0.0).unwrap();
        let zeros = vec![0.0; n];
        for r in [2, 5, 9] {
            let fc = factor(&w, m, n, r, &centred).unwrap();
            let fu = factor(
                &w,
                m,
                n,
                r,
                &Transform::OutputPca {
                    cov: &g,
                    mean: &zeros,
                },
            )
            .unwrap();
            let fs = factor(&w, m, n, r, &Transform::Lower(&l)).unwrap();
            let ec = output_rel_err_with_bias(&w, &fc, m, n, &gram, &mean);
            let eu = output_rel_err_with_bias(&w, &fu, m, n, &gram, &mean);
            let es = output_rel_err(&w, &fs, m, n, &gram);
            // The output error computed from the moments is the one on the samples.
            let p = fc.product(m, n);
            let (mut num, mut den) = (0f64, 0f64);
            for row in x.chunks(n) {
                for i in 0..m {
                    let y: f64 = (0..n).map(|j| w[i * n + j] as f64 * row[j] as f64).sum();
                    let yp: f64 = (0..n)
                        .map(|j| p[i * n + j] as f64 * row[j] as f64)
                        .sum::<f64>()
                        + fc.bias_shift[i];
                    num += (y - yp).powi(2);
                    den += y * y;
                }
            }
            let direct = (num / den).sqrt();
            assert!(
                (ec - direct).abs() < 1e-5 * direct.max(1e-3),
                "r {r}: {ec} vs {direct}"
            );
            // Centred PCA drops exactly the covariance's tail eigenvalues.
            let total: f64 = {
                let wm = w_f64(&w, m, n);
                let wg = mul(wm.as_ref(), g.as_ref());
                (0..m)
                    .map(|i| (0..n).map(|j| wg[(i, j)] * wm[(i, j)]).sum::<f64>())
                    .sum()
            };
            let tail: f64 = fc.sigma[r..].iter().map(|s| s * s).sum();
            assert!((ec - (tail / total).sqrt()).abs() < 1e-5, "r {r}");
            // W G Wᵀ = C + (W x̄)(W x̄)ᵀ ⪰ C, so its tail (uncentred PCA's = SVD-LLM's
            // error) is never smaller: uncentred PCA spends about one rank on the mean.
            // Measured here: 8.93e-2 vs 9.34e-2 (r 2), 6.54e-2 vs 6.84e-2 (r 5), 3.81e-2 vs
            // 3.90e-2 (r 9).
            assert!(ec < 0.99 * eu, "r {r}: centred {ec} vs uncentred {eu}");
            assert!(
                (eu - es).abs() < 1e-5,
                "r {r}: uncentred PCA {eu} vs SVD-LLM {es}"
            );
        }
    }

    #[test]
    fn bad_ranks_are_errors() {
        let w = random(4, 3, 6);
        assert!(factor(&w, 4, 3, 0, &Transform::Identity).is_err());
        assert!(factor(&w, 4, 3, 4, &Transform::Identity).is_err());
        assert!(factor(&w, 4, 4, 1, &Transform::Identity).is_err());
    }
}

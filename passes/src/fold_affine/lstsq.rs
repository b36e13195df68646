//! QwT's block-wise linear compensation in closed form (techniques.md §3.1): the least
//! squares `Θ = argmin ‖R − X̃Θ‖²` with `X̃ = [X, 1]`, where `X` is a block's input (as
//! the compensated quantized model computes it) and `R = Y_fp − Y_q` the float block's
//! output minus the quantized block's on that same input. `W_c = Θ[..d_in]`,
//! `b_c = Θ[d_in]`; the block's output becomes `Y_q + X·W_c + b_c`.
//!
//! Everything is streamed into f64 sums (`X̃ᵀX̃`, `X̃ᵀR`, `Σ‖R‖²`, `ΣR`), so no
//! activation is kept; the fit, its residual and `r²` all come from the sums.

use crate::calib::linalg::{cholesky_lower, inverse_from_lower};
use faer::Mat;
use rayon::prelude::*;

/// Streamed normal equations of `R ≈ [X, 1]·Θ`.
#[derive(Clone, Debug)]
pub struct BlockRegression {
    pub d_in: usize,
    pub d_out: usize,
    pub tokens: u64,
    /// `X̃ᵀX̃`, `(d_in+1)²`, row-major (both triangles).
    gram: Vec<f64>,
    /// `X̃ᵀR`, `(d_in+1) × d_out`, row-major.
    xr: Vec<f64>,
    /// `Σ_t R[t,c]` and `Σ_t R[t,c]²` per output channel.
    r_sum: Vec<f64>,
    r_sq: Vec<f64>,
    /// `Σ‖Y_fp‖²`, to make errors relative.
    f_sq: f64,
}

/// The fitted compensation and what it does on the calibration data.
#[derive(Clone, Debug)]
pub struct LinearFit {
    /// `W_c`, `d_in × d_out`, row-major (the MatMul's B).
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    /// `1 − SSE/SST` of the fit (SST about the per-channel mean of R).
    pub r2: f64,
    /// `E‖R‖²` per token before (no compensation) and after.
    pub mse_before: f64,
    pub mse_after: f64,
    /// `E‖Y_fp‖²` per token.
    pub power: f64,
    /// The ridge `λ` the system was solved with.
    pub ridge: f64,
}

impl BlockRegression {
    pub fn new(d_in: usize, d_out: usize) -> BlockRegression {
        let m = d_in + 1;
        BlockRegression {
            d_in,
            d_out,
            tokens: 0,
            gram: vec![0.0; m * m],
            xr: vec![0.0; m * d_out],
            r_sum: vec![0.0; d_out],
            r_sq: vec![0.0; d_out],
            f_sq: 0.0,
        }
    }

    /// Adds tokens: `x` rows of `d_in`, and the float and quantized block outputs `yf`,
    /// `yq` as rows of `d_out`, one row per token in each.
    pub fn add(&mut self, x: &[f32], yf: &[f32], yq: &[f32]) -> Result<(), String> {
        let (d, e) = (self.d_in, self.d_out);
        if d == 0 || e == 0 || !x.len().is_multiple_of(d) {
            return Err(format!("{} input values are not rows of {d}", x.len()));
        }
        let t = x.len() / d;
        if yf.len() != t * e || yq.len() != t * e {
            return Err(format!(
                "{t} input rows but {} float and {} quantized output values (rows of {e})",
                yf.len(),
                yq.len()
            ));
        }
        if x.iter().chain(yf).chain(yq).any(|v| !v.is_finite()) {
            return Err("the block's inputs or outputs have NaN or infinite values".into());
        }
        // Columns of X̃ and R in f64 (column-major), so every sum is a dot product.
        let m = d + 1;
        let mut xc = vec![0f64; m * t];
        for (i, row) in x.chunks_exact(d).enumerate() {
            for (j, v) in row.iter().enumerate() {
                xc[j * t + i] = *v as f64;
            }
            xc[d * t + i] = 1.0;
        }
        let mut rc = vec![0f64; e * t];
        for (i, (f, q)) in yf.chunks_exact(e).zip(yq.chunks_exact(e)).enumerate() {
            for c in 0..e {
                let r = f[c] as f64 - q[c] as f64;
                rc[c * t + i] = r;
                self.r_sum[c] += r;
                self.r_sq[c] += r * r;
            }
        }
        self.f_sq += yf.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let xc = &xc;
        self.gram
            .par_chunks_mut(m)
            .zip(self.xr.par_chunks_mut(e))
            .enumerate()
            .for_each(|(a, (grow, xrow))| {
                let ca = &xc[a * t..(a + 1) * t];
                for (b, g) in grow.iter_mut().enumerate().skip(a) {
                    *g += dot(ca, &xc[b * t..(b + 1) * t]);
                }
                for (c, v) in xrow.iter_mut().enumerate() {
                    *v += dot(ca, &rc[c * t..(c + 1) * t]);
                }
            });
        self.tokens += t as u64;
        Ok(())
    }

    /// The least-squares fit, by Cholesky with a ridge `λ·I` on the W part (the bias is
    /// not penalised): 1e-9 of the mean diagonal, negligible for the fit but keeping
    /// dead or collinear input features from being solved on round-off; raised a
    /// hundredfold at a time while the system is still not positive definite. `None`
    /// without tokens or when even 1e-1 fails.
    pub fn solve(&self) -> Option<LinearFit> {
        let (d, e, m) = (self.d_in, self.d_out, self.d_in + 1);
        if self.tokens == 0 {
            return None;
        }
        let n = self.tokens as f64;
        let g = |i: usize, j: usize| self.gram[i.min(j) * m + i.max(j)];
        let mean_diag = (0..d).map(|i| g(i, i)).sum::<f64>() / d.max(1) as f64;
        let mut rel = 1e-9;
        let mut ridge = rel * mean_diag.max(f64::MIN_POSITIVE);
        let inv = loop {
            let a = Mat::from_fn(m, m, |i, j| {
                g(i, j) + if i == j && i < d { ridge } else { 0.0 }
            });
            if let Some(l) = cholesky_lower(&a) {
                break inverse_from_lower(&l);
            }
            rel *= 100.0;
            if rel > 1e-1 {
                return None;
            }
            ridge = rel * mean_diag.max(f64::MIN_POSITIVE);
        };
        // Θ = (X̃ᵀX̃ + λ)⁻¹ X̃ᵀR; only the inverse's lower triangle is filled.
        let mut theta = vec![0f64; m * e];
        theta.par_chunks_mut(e).enumerate().for_each(|(i, row)| {
            for j in 0..m {
                let v = inv[(i.max(j), i.min(j))];
                let xr = &self.xr[j * e..(j + 1) * e];
                row.iter_mut().zip(xr).for_each(|(t, x)| *t += v * x);
            }
        });
        // SSE = ‖R‖² − 2⟨Θ, X̃ᵀR⟩ + ⟨Θ, X̃ᵀX̃ Θ⟩ (exact for any Θ, ridge or not).
        let r_sq: f64 = self.r_sq.iter().sum();
        let cross: f64 = theta.iter().zip(&self.xr).map(|(a, b)| a * b).sum();
        let quad: f64 = (0..m)
            .into_par_iter()
            .map(|i| {
                let ti = &theta[i * e..(i + 1) * e];
                (0..m)
                    .map(|j| {
                        let gij = g(i, j);
                        if gij == 0.0 {
                            return 0.0;
                        }
                        let tj = &theta[j * e..(j + 1) * e];
                        gij * ti.iter().zip(tj).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .sum::<f64>()
            })
            .sum();
        let sse = (r_sq - 2.0 * cross + quad).max(0.0);
        let sst: f64 = (0..e)
            .map(|c| self.r_sq[c] - self.r_sum[c] * self.r_sum[c] / n)
            .sum::<f64>()
            .max(0.0);
        let r2 = if sst > 0.0 {
            1.0 - sse / sst
        } else if sse < r_sq {
            1.0
        } else {
            0.0
        };
        Some(LinearFit {
            w: theta[..d * e].to_vec(),
            b: theta[d * e..].to_vec(),
            r2,
            mse_before: r_sq / n,
            mse_after: sse / n,
            power: self.f_sq / n,
            ridge,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect()
    }

    fn affine(x: &[f32], a: &[f32], c: &[f32], d: usize, e: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for row in x.chunks(d) {
            for j in 0..e {
                out.push((0..d).map(|i| row[i] * a[i * e + j]).sum::<f32>() + c[j]);
            }
        }
        out
    }

    #[test]
    fn no_quantization_error_gives_zero_compensation() {
        let (d, t) = (6, 300);
        let x = noise(1, t * d);
        let y = noise(2, t * d);
        let mut r = BlockRegression::new(d, d);
        r.add(&x, &y, &y).unwrap();
        let fit = r.solve().unwrap();
        assert!(fit.w.iter().chain(&fit.b).all(|&v| v == 0.0));
        assert_eq!(fit.mse_before, 0.0);
        assert_eq!(fit.mse_after, 0.0);
        assert_eq!(fit.r2, 0.0);
    }

    #[test]
    fn recovers_a_linear_error_of_the_input() {
        // f_q(x) = f_fp(x) − (x·A + c) ⇒ W_c = A, b_c = c.
        let (d, e, t) = (5, 3, 400);
        let x = noise(3, t * d);
        let yf = noise(4, t * e);
        let a = noise(5, d * e);
        let c = [0.3, -0.1, 0.05];
        let err = affine(&x, &a, &c, d, e);
        let yq: Vec<f32> = yf.iter().zip(&err).map(|(f, r)| f - r).collect();
        let mut r = BlockRegression::new(d, e);
        // In two batches: the sums must not care.
        r.add(&x[..100 * d], &yf[..100 * e], &yq[..100 * e])
            .unwrap();
        r.add(&x[100 * d..], &yf[100 * e..], &yq[100 * e..])
            .unwrap();
        let fit = r.solve().unwrap();
        for (w, a) in fit.w.iter().zip(&a) {
            assert!((w - *a as f64).abs() < 1e-5, "{w} vs {a}");
        }
        for (b, c) in fit.b.iter().zip(c) {
            assert!((b - c as f64).abs() < 1e-5, "{b} vs {c}");
        }
        assert!(fit.r2 > 1.0 - 1e-9, "r² {}", fit.r2);
        assert!(fit.mse_after < 1e-10 * fit.mse_before);
    }

    #[test]
    fn the_fit_minimises_the_calibration_error_and_r2_matches_a_direct_computation() {
        let (d, e, t) = (4, 2, 500);
        let x = noise(6, t * d);
        let yf = noise(7, t * e);
        let err = affine(&x, &noise(8, d * e), &[0.1, 0.2], d, e);
        let n = noise(9, t * e);
        let yq: Vec<f32> = (0..t * e).map(|i| yf[i] - err[i] - 0.3 * n[i]).collect();
        let mut r = BlockRegression::new(d, e);
        r.add(&x, &yf, &yq).unwrap();
        let fit = r.solve().unwrap();
        let resid = |w: &[f64], b: &[f64]| -> f64 {
            let mut s = 0.0;
            for i in 0..t {
                for j in 0..e {
                    let p: f64 = (0..d).map(|k| x[i * d + k] as f64 * w[k * e + j]).sum();
                    let rr = yf[i * e + j] as f64 - yq[i * e + j] as f64;
                    s += (rr - p - b[j]).powi(2);
                }
            }
            s / t as f64
        };
        let direct = resid(&fit.w, &fit.b);
        assert!((direct - fit.mse_after).abs() < 1e-9 * direct.max(1e-12));
        assert!(fit.mse_after < fit.mse_before);
        for k in 0..fit.w.len() {
            for dv in [1e-3, -1e-3] {
                let mut w = fit.w.clone();
                w[k] += dv;
                assert!(resid(&w, &fit.b) > direct);
            }
        }
        assert!(fit.r2 > 0.0 && fit.r2 < 1.0);
    }

    #[test]
    fn collinear_inputs_are_solved_with_a_ridge() {
        let (d, t) = (3, 50);
        let base = noise(10, t);
        // Two identical input features: X̃ᵀX̃ is singular.
        let x: Vec<f32> = (0..t)
            .flat_map(|i| [base[i], base[i], 1.0 - base[i] * 0.5])
            .collect();
        let yf = noise(11, t);
        let yq: Vec<f32> = yf.iter().zip(&base).map(|(f, b)| f - 2.0 * b).collect();
        let mut r = BlockRegression::new(d, 1);
        r.add(&x, &yf, &yq).unwrap();
        let fit = r.solve().unwrap();
        assert!(fit.ridge > 0.0 && fit.w.iter().all(|w| w.is_finite() && w.abs() < 1e3));
        assert!(fit.mse_after < 1e-3 * fit.mse_before, "{fit:?}");
    }

    #[test]
    fn malformed_rows_are_errors() {
        let mut r = BlockRegression::new(3, 2);
        assert!(r.add(&[0.0; 4], &[0.0; 2], &[0.0; 2]).is_err());
        assert!(r.add(&[0.0; 3], &[0.0; 3], &[0.0; 2]).is_err());
        assert!(r.add(&[f32::NAN, 0.0, 0.0], &[0.0; 2], &[0.0; 2]).is_err());
        assert!(BlockRegression::new(3, 2).solve().is_none());
    }
}

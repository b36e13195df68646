//! Router initialisation without training (techniques.md §7.3) and layer choice by
//! γ-MoD's ARank, both from calibration activations of the unmodified model.

use crate::calib::linalg::thin_svd;
use crate::pass::PassError;
use compc_runtime::Tensor;
use faer::Mat;

/// What the router is fitted to predict per token (techniques.md §7.3 step 2), from the
/// block input `x` and the block's contribution `f = block(x) − x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `‖f‖`.
    Norm,
    /// `‖f‖ / ‖x‖`.
    Relative,
    /// `1 − cos(x, x + f)`.
    Cosine,
    /// Attention the token receives as a key in this block, `Σ_h Σ_i A_h[i, t]` (RSQ's
    /// AttnCon): a skipped token is also missing as a key/value for the routed ones.
    Attention,
}

impl Target {
    fn value(self, x: &[f32], y: &[f32]) -> f64 {
        let (mut ff, mut xx, mut yy, mut xy) = (0f64, 0f64, 0f64, 0f64);
        for (a, b) in x.iter().zip(y) {
            let (a, b) = (*a as f64, *b as f64);
            ff += (b - a) * (b - a);
            xx += a * a;
            yy += b * b;
            xy += a * b;
        }
        match self {
            Target::Norm => ff.sqrt(),
            Target::Relative => (ff / xx.max(1e-30)).sqrt(),
            Target::Cosine => 1.0 - xy / (xx * yy).sqrt().max(1e-30),
            Target::Attention => 0.0,
        }
    }
}

/// Running sums of a ridge regression `t ≈ wᵀx̂ + c` over tokens, with the features kept
/// so the fitted scores can be ranked per sequence afterwards.
pub struct RidgeFit {
    d: usize,
    eps: f32,
    target: Target,
    gram: Vec<f64>,
    xty: Vec<f64>,
    /// Per sequence: normalised features `[T·d]` and targets `[T]`.
    seqs: Vec<(Vec<f32>, Vec<f32>)>,
}

/// A fitted router and how well it predicts the target.
#[derive(Clone, Debug)]
pub struct Router {
    pub w: Vec<f32>,
    pub bias: f32,
    /// Coefficient of determination on the calibration tokens.
    pub r2: f64,
    /// Mean over sequences of |fitted top-k ∩ true top-k| / k at the given capacity.
    pub recall: f64,
    /// Mean σ(s) over the routed calibration tokens (for the sigmoid gate's rescaling).
    /// `w` and `bias` give the standardised score (zero mean, unit variance on calibration
    /// tokens); R² and recall are of the unstandardised fit.
    pub mean_sigmoid: f64,
}

impl RidgeFit {
    pub fn new(d: usize, eps: f32, target: Target) -> RidgeFit {
        RidgeFit {
            d,
            eps,
            target,
            gram: vec![0.0; (d + 1) * (d + 1)],
            xty: vec![0.0; d + 1],
            seqs: Vec::new(),
        }
    }

    /// Adds the tokens of block input `x` and output `y`, both `[N, T, d]`, with the
    /// block's attention probabilities `[N, H, T, T]` for the attention target.
    pub fn add(&mut self, x: &Tensor, y: &Tensor, probs: Option<&Tensor>) -> Result<(), PassError> {
        let d = self.d;
        let sh = x.shape().to_vec();
        if sh.len() != 3 || sh[2] != d || y.shape() != x.shape() {
            return Err(PassError::Invalid(format!(
                "mod-routers: calibration block input {:?} / output {:?} are not [N, T, {d}]",
                x.shape(),
                y.shape()
            )));
        }
        let (xv, yv) = (x.to_f32_vec(), y.to_f32_vec());
        let (n, t) = (sh[0], sh[1]);
        let received = match (self.target, probs) {
            (Target::Attention, Some(p)) => {
                let ps = p.shape().to_vec();
                if ps.len() != 4 || ps[0] != n || ps[2] != t || ps[3] != t {
                    return Err(PassError::Invalid(format!(
                        "mod-routers: attention probabilities {ps:?} do not match the block input {sh:?}"
                    )));
                }
                let pv = p.to_f32_vec();
                let mut r = vec![0f64; n * t];
                for (chunk, row) in pv.chunks(t).enumerate() {
                    let s = chunk / (ps[1] * t);
                    for (j, v) in row.iter().enumerate() {
                        r[s * t + j] += *v as f64;
                    }
                }
                Some(r)
            }
            (Target::Attention, None) => {
                return Err(PassError::Invalid(
                    "mod-routers: target=attention needs the block's attention probabilities"
                        .into(),
                ))
            }
            _ => None,
        };
        for s in 0..n {
            let mut feats = Vec::with_capacity(t * d);
            let mut targets = Vec::with_capacity(t);
            for i in 0..t {
                let o = (s * t + i) * d;
                let xr = &xv[o..o + d];
                let yr = &yv[o..o + d];
                let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let inv = 1.0 / (ms + self.eps).sqrt();
                let f: Vec<f64> = xr.iter().map(|v| (v * inv) as f64).chain([1.0]).collect();
                let target = match &received {
                    Some(r) => r[s * t + i],
                    None => self.target.value(xr, yr),
                };
                for a in 0..=d {
                    self.xty[a] += f[a] * target;
                    let row = &mut self.gram[a * (d + 1)..(a + 1) * (d + 1)];
                    for (b, fb) in f.iter().enumerate().skip(a) {
                        row[b] += f[a] * fb;
                    }
                }
                feats.extend(f[..d].iter().map(|v| *v as f32));
                targets.push(target as f32);
            }
            self.seqs.push((feats, targets));
        }
        Ok(())
    }

    /// Solves the ridge system (λ = `ridge` · mean diagonal) and scores the fit.
    pub fn solve(&self, ridge: f64, capacity: f32) -> Result<Router, PassError> {
        let m = self.d + 1;
        if self.seqs.is_empty() {
            return Err(PassError::Invalid(
                "mod-routers: no calibration tokens".into(),
            ));
        }
        let mean_diag = (0..self.d).map(|i| self.gram[i * m + i]).sum::<f64>() / self.d as f64;
        let lambda = ridge * mean_diag.max(1e-12);
        let a = Mat::from_fn(m, m, |i, j| {
            let v = if i <= j {
                self.gram[i * m + j]
            } else {
                self.gram[j * m + i]
            };
            // The bias column is not penalised.
            v + if i == j && i < self.d { lambda } else { 0.0 }
        });
        let l = crate::calib::linalg::cholesky_lower(&a).ok_or_else(|| {
            PassError::Invalid("mod-routers: the ridge system is not positive definite".into())
        })?;
        // Only the lower triangle of the inverse is filled.
        let inv = crate::calib::linalg::inverse_from_lower(&l);
        let coef: Vec<f64> = (0..m)
            .map(|i| {
                (0..m)
                    .map(|j| inv[(i.max(j), i.min(j))] * self.xty[j])
                    .sum()
            })
            .collect();
        let w: Vec<f32> = coef[..self.d].iter().map(|v| *v as f32).collect();
        let bias = coef[self.d] as f32;
        // Fit quality on the calibration tokens.
        let scores: Vec<Vec<f32>> = self
            .seqs
            .iter()
            .map(|(feats, targets)| {
                (0..targets.len())
                    .map(|i| {
                        feats[i * self.d..(i + 1) * self.d]
                            .iter()
                            .zip(&w)
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            + bias
                    })
                    .collect()
            })
            .collect();
        let all = scores.iter().flatten().map(|v| *v as f64);
        let n = all.clone().count().max(1) as f64;
        let mu = all.clone().sum::<f64>() / n;
        let sd = (all.map(|v| (v - mu).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-12);
        let (mut ss_res, mut sum, mut sum2, mut count) = (0f64, 0f64, 0f64, 0f64);
        let (mut recall, mut sig) = (0f64, (0f64, 0f64));
        for (sc, (_, targets)) in scores.iter().zip(&self.seqs) {
            let t = targets.len();
            for (s, y) in sc.iter().zip(targets) {
                ss_res += ((s - y) as f64).powi(2);
                sum += *y as f64;
                sum2 += (*y as f64).powi(2);
                count += 1.0;
            }
            let k = compc_runtime::ops::index::router_k(capacity, t);
            if k == 0 {
                continue;
            }
            let top = |v: &[f32]| {
                let mut o: Vec<usize> = (0..v.len()).collect();
                o.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
                o.truncate(k);
                o
            };
            let (pred, truth) = (top(sc), top(targets));
            recall += pred.iter().filter(|i| truth.contains(i)).count() as f64 / k as f64;
            for &i in &pred {
                sig.0 += 1.0 / (1.0 + (-(sc[i] as f64 - mu) / sd).exp());
                sig.1 += 1.0;
            }
        }
        let ss_tot = sum2 - sum * sum / count.max(1.0);
        // The emitted score is standardised (same order, so the same top-k) so that
        // σ(score) is a usable gate rather than saturated at 1.
        Ok(Router {
            w: w.iter().map(|v| (*v as f64 / sd) as f32).collect(),
            bias: ((bias as f64 - mu) / sd) as f32,
            r2: 1.0 - ss_res / ss_tot.max(1e-300),
            recall: recall / self.seqs.len() as f64,
            mean_sigmoid: sig.0 / sig.1.max(1.0),
        })
    }
}

/// γ-MoD's ARank of one attention map tensor `[N, H, T, T]` (softmax probabilities):
/// per sample and head, the numerical rank of the map with its diagonal zeroed
/// (tolerance σ_max · T · ε_f32, as `matrix_rank` uses for f32), averaged.
pub fn arank(probs: &Tensor, max_samples: usize) -> Result<f64, PassError> {
    let sh = probs.shape().to_vec();
    if sh.len() != 4 || sh[2] != sh[3] {
        return Err(PassError::Invalid(format!(
            "mod-routers: attention probabilities {sh:?} are not [N, H, T, T]"
        )));
    }
    let (n, h, t) = (sh[0].min(max_samples), sh[1], sh[2]);
    let v = probs.to_f32_vec();
    let (mut total, mut count) = (0f64, 0f64);
    for s in 0..n {
        for hd in 0..h {
            let o = (s * sh[1] + hd) * t * t;
            let a = Mat::from_fn(
                t,
                t,
                |i, j| if i == j { 0.0 } else { v[o + i * t + j] as f64 },
            );
            let (_, sv, _) = thin_svd(&a).map_err(|e| {
                PassError::Invalid(format!(
                    "mod-routers: ARank of the attention map of sample {s}, head {hd}: {e}"
                ))
            })?;
            let max = sv.iter().cloned().fold(0.0, f64::max);
            let tol = max * t as f64 * f32::EPSILON as f64;
            total += sv.iter().filter(|x| **x > tol).count() as f64;
            count += 1.0;
        }
    }
    Ok(total / count.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `‖block(x) − x‖ = 3 + x̂₁` exactly: the fit recovers w = e₁, c = 3 (before
    /// standardisation) with R² ≈ 1 and perfect top-k recall.
    #[test]
    fn ridge_recovers_a_linear_target() {
        let (n, t, d) = (4, 32, 4);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..n * t * d).map(|_| rnd()).collect();
        let mut y = x.clone();
        for tok in 0..n * t {
            let r = &x[tok * d..(tok + 1) * d];
            let rms = (r.iter().map(|v| v * v).sum::<f32>() / d as f32 + 1e-6).sqrt();
            y[tok * d] += 3.0 + r[1] / rms;
        }
        let xt = Tensor::from_f32(vec![n, t, d], x);
        let yt = Tensor::from_f32(vec![n, t, d], y);
        let mut f = RidgeFit::new(d, 1e-6, Target::Norm);
        f.add(&xt, &yt, None).unwrap();
        let r = f.solve(1e-9, 0.5).unwrap();
        assert!(r.r2 > 0.999, "{r:?}");
        assert!(r.recall > 0.99, "{r:?}");
        // Standardised: only w₁ is non-zero.
        assert!(
            r.w[1] > 0.1
                && r.w
                    .iter()
                    .enumerate()
                    .all(|(i, w)| i == 1 || w.abs() < 1e-3),
            "{r:?}"
        );
        let e = RidgeFit::new(d, 1e-6, Target::Attention).add(&xt, &yt, None);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("needs the block's attention probabilities"));
    }

    #[test]
    fn arank_of_a_uniform_causal_map() {
        // Uniform causal attention: row i spreads 1/(i+1) over keys 0..=i. With the
        // diagonal zeroed, row 0 is empty and rows 1.. are independent: rank T − 1.
        let t = 8;
        let mut v = vec![0f32; t * t];
        for i in 0..t {
            for j in 0..=i {
                v[i * t + j] = 1.0 / (i + 1) as f32;
            }
        }
        let p = Tensor::from_f32(vec![1, 1, t, t], v);
        assert_eq!(arank(&p, 4).unwrap(), (t - 1) as f64);
    }
}

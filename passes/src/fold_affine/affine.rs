//! Channel-wise affine compensation (CWAC, QwT-v2; techniques.md §3.2) in closed form:
//! per output channel c, the least-squares fit `y_fp ≈ a_c·y_q + b_c` of the float
//! layer's output on the quantized layer's output, both computed from the same input.
//!
//! Only five running sums per channel are needed (Σq, Σf, Σq², Σq·f, Σf²), accumulated
//! in f64 while calibration batches stream by, so no activation is ever stored.

/// Streamed per-channel sums of the quantized (`q`) and float (`f`) outputs of a layer.
#[derive(Clone, Debug)]
pub struct ChannelSums {
    pub channels: usize,
    pub tokens: u64,
    q: Vec<f64>,
    f: Vec<f64>,
    qq: Vec<f64>,
    qf: Vec<f64>,
    ff: Vec<f64>,
}

/// The fitted map `a ⊙ y_q + b` and what it achieved on the calibration data.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    /// Channels whose quantized output did not vary (or varied against the float one):
    /// they get `a = 1` and only the mean shift `b`.
    pub degenerate: usize,
    /// Mean squared error `E[(y_fp − y_q)²]` over tokens and channels, before.
    pub mse_before: f64,
    /// The same after compensation.
    pub mse_after: f64,
    /// `E[y_fp²]`, to make the errors relative.
    pub power: f64,
}

/// Below this fraction of `E[q²]`, a channel's variance counts as zero (a constant
/// channel: its slope is meaningless and dividing by the variance amplifies round-off).
const DEGENERATE_VAR: f64 = 1e-12;

impl ChannelSums {
    pub fn new(channels: usize) -> ChannelSums {
        let z = vec![0.0; channels];
        ChannelSums {
            channels,
            tokens: 0,
            q: z.clone(),
            f: z.clone(),
            qq: z.clone(),
            qf: z.clone(),
            ff: z,
        }
    }

    /// Adds row-major rows of `channels` values: the quantized and the float outputs of
    /// the same tokens.
    pub fn add(&mut self, q: &[f32], f: &[f32]) -> Result<(), String> {
        self.add_strided(q, f, 1)
    }

    /// Adds outputs laid out `[outer, channels, inner]` (a Conv output `[batch, C, H, W]`
    /// has `inner = H·W`; rows of channels have `inner = 1`): every (outer, inner)
    /// position is one sample of each channel.
    pub fn add_strided(&mut self, q: &[f32], f: &[f32], inner: usize) -> Result<(), String> {
        let m = self.channels;
        let row = m * inner;
        if row == 0 || q.len() != f.len() || !q.len().is_multiple_of(row) {
            return Err(format!(
                "{} quantized and {} float values are not rows of {m} channels × {inner}",
                q.len(),
                f.len()
            ));
        }
        if q.iter().chain(f).any(|v| !v.is_finite()) {
            return Err("the outputs have NaN or infinite values".into());
        }
        for (rq, rf) in q.chunks_exact(row).zip(f.chunks_exact(row)) {
            for i in 0..inner {
                for c in 0..m {
                    let (x, y) = (rq[c * inner + i] as f64, rf[c * inner + i] as f64);
                    self.q[c] += x;
                    self.f[c] += y;
                    self.qq[c] += x * x;
                    self.qf[c] += x * y;
                    self.ff[c] += y * y;
                }
            }
        }
        self.tokens += (q.len() / m) as u64;
        Ok(())
    }

    /// The closed form. With `intercept`, `a_c = Cov(q, f)/Var(q)`, `b_c = f̄ − a_c q̄`;
    /// without (a layer whose bias cannot be written), the fit through the origin
    /// `a_c = Σqf/Σq²`, `b_c = 0`. A channel with no variance, or whose fitted slope is
    /// not positive (the quantized channel does not track the float one: a negative gain
    /// would only fit noise), keeps `a_c = 1` with the mean shift.
    pub fn solve(&self, intercept: bool) -> Affine {
        let n = self.tokens.max(1) as f64;
        let m = self.channels;
        let (mut a, mut b) = (vec![1.0; m], vec![0.0; m]);
        let mut degenerate = 0;
        for c in 0..m {
            let (mq, mf) = (self.q[c] / n, self.f[c] / n);
            let eqq = self.qq[c] / n;
            let (slope, shift) = if intercept {
                let var = eqq - mq * mq;
                let cov = self.qf[c] / n - mq * mf;
                let s = cov / var;
                if var > DEGENERATE_VAR * eqq && s.is_finite() && s > 0.0 {
                    (s, mf - s * mq)
                } else {
                    degenerate += 1;
                    (1.0, mf - mq)
                }
            } else {
                let s = self.qf[c] / self.qq[c];
                if eqq > 0.0 && s.is_finite() && s > 0.0 {
                    (s, 0.0)
                } else {
                    degenerate += 1;
                    (1.0, 0.0)
                }
            };
            a[c] = slope;
            b[c] = shift;
        }
        let ident = (vec![1.0; m], vec![0.0; m]);
        Affine {
            mse_before: self.mse(&ident.0, &ident.1),
            mse_after: self.mse(&a, &b),
            power: self.ff.iter().sum::<f64>() / (n * m.max(1) as f64),
            a,
            b,
            degenerate,
        }
    }

    /// `E[(f − a q − b)²]` over tokens and channels, from the sums.
    pub fn mse(&self, a: &[f64], b: &[f64]) -> f64 {
        let n = self.tokens.max(1) as f64;
        let mut total = 0.0;
        for c in 0..self.channels {
            let (a, b) = (a[c], b[c]);
            let e = self.ff[c] - 2.0 * a * self.qf[c] - 2.0 * b * self.f[c]
                + a * a * self.qq[c]
                + 2.0 * a * b * self.q[c]
                + b * b * n;
            total += e.max(0.0);
        }
        total / (n * self.channels.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (the tests need reproducible noise, not quality).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect()
    }

    #[test]
    fn no_quantization_error_is_the_identity() {
        let y = noise(1, 64 * 5);
        let mut s = ChannelSums::new(5);
        s.add(&y, &y).unwrap();
        let fit = s.solve(true);
        assert_eq!(fit.a, vec![1.0; 5]);
        assert_eq!(fit.b, vec![0.0; 5]);
        assert_eq!(fit.degenerate, 0);
        assert_eq!(s.solve(false).a, vec![1.0; 5]);
    }

    #[test]
    fn recovers_an_exact_affine_distortion() {
        // y_q = (y_fp − c)/k per channel ⇒ a = k, b = c.
        let (m, t) = (4, 200);
        let f = noise(2, m * t);
        let k = [0.5, 1.25, 2.0, 0.9];
        let c = [0.1, -0.3, 0.0, 2.0];
        let q: Vec<f32> = f
            .iter()
            .enumerate()
            .map(|(i, &y)| ((y as f64 - c[i % m]) / k[i % m]) as f32)
            .collect();
        let mut s = ChannelSums::new(m);
        s.add(&q, &f).unwrap();
        let fit = s.solve(true);
        for j in 0..m {
            assert!((fit.a[j] - k[j]).abs() < 1e-5, "a[{j}] = {}", fit.a[j]);
            assert!((fit.b[j] - c[j]).abs() < 1e-5, "b[{j}] = {}", fit.b[j]);
        }
        assert!(fit.mse_after < 1e-12 * fit.power.max(1.0));
    }

    #[test]
    fn the_closed_form_minimises_the_calibration_error() {
        let (m, t) = (3, 500);
        let f = noise(3, m * t);
        let e = noise(4, m * t);
        // Quantized = a distorted, noisy copy.
        let q: Vec<f32> = f
            .iter()
            .zip(&e)
            .enumerate()
            .map(|(i, (&y, &n))| 0.8 * y + 0.05 * n + 0.02 * (i % m) as f32)
            .collect();
        let mut s = ChannelSums::new(m);
        s.add(&q, &f).unwrap();
        let fit = s.solve(true);
        assert!(fit.mse_after < fit.mse_before);
        // Any perturbation of the optimum is worse.
        for j in 0..m {
            for (da, db) in [(1e-3, 0.0), (-1e-3, 0.0), (0.0, 1e-3), (0.0, -1e-3)] {
                let (mut a, mut b) = (fit.a.clone(), fit.b.clone());
                a[j] += da;
                b[j] += db;
                assert!(s.mse(&a, &b) > fit.mse_after, "channel {j} ({da}, {db})");
            }
        }
        // The sums give the same error as computing it directly.
        let direct: f64 = q
            .iter()
            .zip(&f)
            .enumerate()
            .map(|(i, (&x, &y))| (y as f64 - fit.a[i % m] * x as f64 - fit.b[i % m]).powi(2))
            .sum::<f64>()
            / (m * t) as f64;
        assert!((direct - fit.mse_after).abs() < 1e-9 * direct.max(1e-12));
        // Through the origin: optimal among scales with b = 0, never worse than identity.
        let fit0 = s.solve(false);
        assert!(fit0.b.iter().all(|&b| b == 0.0));
        assert!(fit0.mse_after <= fit.mse_before);
        assert!(fit0.mse_after >= fit.mse_after);
    }

    #[test]
    fn constant_and_anticorrelated_channels_get_a_mean_shift() {
        let t = 50;
        let f = noise(5, 2 * t);
        let mut q = vec![0f32; 2 * t];
        for i in 0..t {
            q[2 * i] = 0.25; // constant
            q[2 * i + 1] = -f[2 * i + 1]; // anti-correlated
        }
        let mut s = ChannelSums::new(2);
        s.add(&q, &f).unwrap();
        let fit = s.solve(true);
        assert_eq!(fit.degenerate, 2);
        assert_eq!(fit.a, vec![1.0, 1.0]);
        let mean = |c: usize, v: &[f32]| -> f64 {
            (0..t).map(|i| v[2 * i + c] as f64).sum::<f64>() / t as f64
        };
        for c in 0..2 {
            assert!((fit.b[c] - (mean(c, &f) - mean(c, &q))).abs() < 1e-12);
        }
    }

    #[test]
    fn strided_layout_is_the_transposed_rows() {
        // [outer=3, C=4, inner=5] against the same values as rows of 4 channels.
        let (o, m, inner) = (3, 4, 5);
        let q = noise(6, o * m * inner);
        let f = noise(7, o * m * inner);
        let rows = |v: &[f32]| -> Vec<f32> {
            let mut out = Vec::new();
            for b in 0..o {
                for i in 0..inner {
                    out.extend((0..m).map(|c| v[(b * m + c) * inner + i]));
                }
            }
            out
        };
        let (mut s1, mut s2) = (ChannelSums::new(m), ChannelSums::new(m));
        s1.add_strided(&q, &f, inner).unwrap();
        s2.add(&rows(&q), &rows(&f)).unwrap();
        assert_eq!(s1.tokens, (o * inner) as u64);
        let (a, b) = (s1.solve(true), s2.solve(true));
        for c in 0..m {
            assert!((a.a[c] - b.a[c]).abs() < 1e-12 && (a.b[c] - b.b[c]).abs() < 1e-12);
        }
        assert!(s1.add_strided(&q[1..], &f[1..], inner).is_err());
    }

    #[test]
    fn bad_rows_are_errors() {
        let mut s = ChannelSums::new(3);
        assert!(s.add(&[1.0; 4], &[1.0; 4]).is_err());
        assert!(s.add(&[1.0; 3], &[f32::NAN, 0.0, 0.0]).is_err());
    }
}

//! Per-layer input statistics, accumulated batch by batch so no layer's activations are
//! ever held whole: `XᵀX` (f64, for GPTQ/SparseGPT Hessians and AWQ's clip loss), the
//! mean and the max of |x| per input channel (AWQ's and SmoothQuant's scales), and the
//! sum of x² per channel (Wanda's activation norms).

use super::linalg::{matmul, transpose};
use crate::pass::PassError;
use compc_runtime::Tensor;
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct InputStats {
    /// Input features (the last axis of the layer's input).
    pub n: usize,
    /// Rows (tokens) seen.
    pub tokens: u64,
    /// `Σ x xᵀ`, n × n row-major, when requested.
    xtx: Option<Vec<f64>>,
    abs_sum: Vec<f64>,
    sum: Vec<f64>,
    sq_sum: Vec<f64>,
    abs_max: Vec<f32>,
}

impl InputStats {
    /// Statistics of an `n`-feature input; `hessian` turns on the `XᵀX` accumulation.
    pub fn new(n: usize, hessian: bool) -> InputStats {
        InputStats {
            n,
            tokens: 0,
            xtx: hessian.then(|| vec![0.0; n * n]),
            abs_sum: vec![0.0; n],
            sum: vec![0.0; n],
            sq_sum: vec![0.0; n],
            abs_max: vec![0.0; n],
        }
    }

    /// Adds a batch: any tensor whose last axis is `n` (leading axes are tokens).
    pub fn add(&mut self, t: &Tensor, what: &str) -> Result<(), PassError> {
        if t.shape().last() != Some(&self.n) {
            return Err(PassError::Invalid(format!(
                "{what}: calibration activation of shape {:?} does not end in {} features",
                t.shape(),
                self.n
            )));
        }
        let x = t.f32_cow();
        self.add_rows(&x)
            .map_err(|e| PassError::Invalid(format!("{what}: {e}")))
    }

    /// Adds a batch whose features lie along `axis` (a conv input's channels, axis 1):
    /// every other axis counts as tokens.
    pub fn add_along(&mut self, t: &Tensor, axis: usize, what: &str) -> Result<(), PassError> {
        let shape = t.shape();
        if shape.get(axis) != Some(&self.n) {
            return Err(PassError::Invalid(format!(
                "{what}: calibration activation of shape {shape:?} does not have {} features \
                 on axis {axis}",
                self.n
            )));
        }
        let inner: usize = shape[axis + 1..].iter().product();
        let x = t.f32_cow();
        // Each outer index holds an n × inner block; its transpose is inner rows of n
        // (with one position per channel the data already are rows).
        let rows: Vec<f32> = if inner == 1 {
            x.into_owned()
        } else {
            x.chunks(self.n * inner)
                .flat_map(|block| transpose(block, self.n, inner))
                .collect()
        };
        self.add_rows(&rows)
            .map_err(|e| PassError::Invalid(format!("{what}: {e}")))
    }

    /// Adds row-major rows of `n` values.
    pub fn add_rows(&mut self, x: &[f32]) -> Result<(), String> {
        let n = self.n;
        if n == 0 || !x.len().is_multiple_of(n) {
            return Err(format!("{} values are not rows of {n}", x.len()));
        }
        let rows = x.len() / n;
        if rows == 0 {
            return Ok(());
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err("the activation has NaN or infinite values".into());
        }
        self.tokens += rows as u64;
        // Per-channel |x| sum, x² sum and max, split over column ranges.
        let chunk = n.div_ceil(rayon::current_num_threads().max(1)).max(64);
        self.abs_sum
            .par_chunks_mut(chunk)
            .zip(self.sum.par_chunks_mut(chunk))
            .zip(self.sq_sum.par_chunks_mut(chunk))
            .zip(self.abs_max.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(ci, (((sum, sgn), sq), max))| {
                let c0 = ci * chunk;
                for row in x.chunks_exact(n) {
                    let r = &row[c0..c0 + sum.len()];
                    for ((((s, sg), q), m), &v) in sum
                        .iter_mut()
                        .zip(sgn.iter_mut())
                        .zip(sq.iter_mut())
                        .zip(max.iter_mut())
                        .zip(r)
                    {
                        *s += v.abs() as f64;
                        *sg += v as f64;
                        *q += (v as f64) * (v as f64);
                        *m = m.max(v.abs());
                    }
                }
            });
        if let Some(acc) = self.xtx.as_mut() {
            // XᵀX of the batch in f32 (GPTQ's reference accumulates in f32 too), added
            // into the f64 running sum so many batches do not lose precision.
            let xt = transpose(x, rows, n);
            let part = matmul(&xt, x, n, rows, n).map_err(|e| e.to_string())?;
            acc.par_iter_mut()
                .zip(part.par_iter())
                .for_each(|(a, &p)| *a += p as f64);
        }
        Ok(())
    }

    /// The Hessian `H = 2XᵀX / N` (n × n, row-major), if accumulated.
    pub fn hessian(&self) -> Option<Vec<f64>> {
        let acc = self.xtx.as_ref()?;
        let f = 2.0 / self.tokens.max(1) as f64;
        Some(acc.iter().map(|v| v * f).collect())
    }

    /// `XᵀX / N`: the Gram matrix of the inputs (the Hessian without the factor 2).
    pub fn gram(&self) -> Option<Vec<f64>> {
        let acc = self.xtx.as_ref()?;
        let f = 1.0 / self.tokens.max(1) as f64;
        Some(acc.iter().map(|v| v * f).collect())
    }

    /// Mean |x| per channel.
    pub fn mean_abs(&self) -> Vec<f32> {
        let f = 1.0 / self.tokens.max(1) as f64;
        self.abs_sum.iter().map(|v| (v * f) as f32).collect()
    }

    /// Mean x per channel (what structured pruning's compensation folds into a bias).
    pub fn mean(&self) -> Vec<f64> {
        let f = 1.0 / self.tokens.max(1) as f64;
        self.sum.iter().map(|v| v * f).collect()
    }

    /// `Σ x²` per channel over every token seen.
    pub fn sq_sum(&self) -> &[f64] {
        &self.sq_sum
    }

    /// `‖X_{:,j}‖₂` per channel over every token seen (Wanda's activation norm).
    pub fn l2_norm(&self) -> Vec<f64> {
        self.sq_sum.iter().map(|v| v.sqrt()).collect()
    }

    /// Max |x| per channel.
    pub fn max_abs(&self) -> &[f32] {
        &self.abs_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_on_axis_one_give_the_statistics_of_their_rows() {
        // [2 samples, 3 channels, 2 positions]: channel c of sample s at position p is
        // 10s + 3c + p, so the rows (s, p) of 3 channels are its transpose per sample.
        let x: Vec<f32> = (0..12)
            .map(|i| {
                let (s, c, p) = (i / 6, (i / 2) % 3, i % 2);
                (10 * s + 3 * c + p) as f32
            })
            .collect();
        let mut along = InputStats::new(3, false);
        along
            .add_along(&Tensor::from_f32(vec![2, 3, 2], x.clone()), 1, "test")
            .unwrap();
        let rows: Vec<f32> = (0..12)
            .map(|i| {
                let (s, p, c) = (i / 6, (i / 3) % 2, i % 3);
                (10 * s + 3 * c + p) as f32
            })
            .collect();
        let mut direct = InputStats::new(3, false);
        direct.add_rows(&rows).unwrap();
        assert_eq!(along.tokens, 4);
        assert_eq!(along.mean(), direct.mean());
        assert_eq!(along.sq_sum(), direct.sq_sum());
        assert_eq!(along.mean(), vec![5.5, 8.5, 11.5]);
        let err = along
            .add_along(&Tensor::from_f32(vec![2, 2, 3], x), 1, "test")
            .unwrap_err();
        assert!(err.to_string().contains("axis 1"), "{err}");
    }
}

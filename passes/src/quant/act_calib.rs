//! Static activation ranges (techniques.md §1.5, ORT's `calibrate.py`): per tensor,
//! uint8 asymmetric. Statistics stream over the calibration batches: a first pass finds
//! min and max; the histogram methods take a second pass binning values over that range.
//!
//! - `minmax`: the observed range;
//! - `percentile`: the central 99.999 % of the mass (the same tail cut on both sides);
//! - `mse`: the clip `c·[min, max]`, `c ∈ {k/100}`, minimizing the expected squared
//!   quantization error over the histogram;
//! - `entropy`: TensorRT's KL-divergence threshold on the histogram of |x| (128
//!   quantized bins), as ORT implements it, intersected with the observed range.

use super::grid::{fake, Grid};
use super::options::CalibMethod;

pub const HIST_BINS: usize = 2048;
pub const PERCENTILE: f64 = 99.999;

/// Running statistics of one activation.
#[derive(Clone, Debug)]
pub struct ActStats {
    pub min: f32,
    pub max: f32,
    /// Histogram over `[min, max]` (second pass), or of |x| over `[0, max|x|]` for entropy.
    pub hist: Vec<u64>,
    pub abs: bool,
}

impl Default for ActStats {
    fn default() -> Self {
        ActStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: vec![],
            abs: false,
        }
    }
}

impl ActStats {
    pub fn add_range(&mut self, x: &[f32]) {
        let (lo, hi) = super::grid::min_max(x);
        if !x.is_empty() {
            self.min = self.min.min(lo);
            self.max = self.max.max(hi);
        }
    }

    /// Prepares the histogram pass.
    pub fn start_histogram(&mut self, method: CalibMethod) {
        self.abs = method == CalibMethod::Entropy;
        self.hist = vec![0; HIST_BINS];
    }

    fn span(&self) -> (f32, f32) {
        if self.abs {
            (0.0, self.min.abs().max(self.max.abs()))
        } else {
            (self.min, self.max)
        }
    }

    pub fn add_histogram(&mut self, x: &[f32]) {
        let (lo, hi) = self.span();
        let width = (hi - lo) / HIST_BINS as f32;
        if width.is_nan() || width <= 0.0 {
            self.hist[0] += x.len() as u64;
            return;
        }
        for &v in x {
            let v = if self.abs { v.abs() } else { v };
            let b = ((v - lo) / width) as usize;
            self.hist[b.min(HIST_BINS - 1)] += 1;
        }
    }

    fn bin_center(&self, b: usize) -> f32 {
        let (lo, hi) = self.span();
        lo + (b as f32 + 0.5) * (hi - lo) / HIST_BINS as f32
    }

    /// The calibrated range.
    pub fn range(&self, method: CalibMethod) -> (f32, f32) {
        if self.min.is_nan() || self.max.is_nan() || self.min > self.max {
            return (0.0, 0.0);
        }
        if self.hist.is_empty() {
            return (self.min, self.max);
        }
        match method {
            CalibMethod::MinMax => (self.min, self.max),
            CalibMethod::Percentile => self.percentile_range(),
            CalibMethod::Mse => self.mse_range(),
            CalibMethod::Entropy => {
                let t = self.entropy_threshold();
                (self.min.max(-t), self.max.min(t))
            }
        }
    }

    fn percentile_range(&self) -> (f32, f32) {
        let total: u64 = self.hist.iter().sum();
        let tail = ((100.0 - PERCENTILE) / 200.0 * total as f64) as u64;
        let (lo, hi) = self.span();
        let width = (hi - lo) / HIST_BINS as f32;
        let mut acc = 0;
        let mut l = lo;
        for (b, &c) in self.hist.iter().enumerate() {
            acc += c;
            if acc > tail {
                l = lo + b as f32 * width;
                break;
            }
        }
        acc = 0;
        let mut h = hi;
        for (b, &c) in self.hist.iter().enumerate().rev() {
            acc += c;
            if acc > tail {
                h = lo + (b + 1) as f32 * width;
                break;
            }
        }
        (l, h)
    }

    fn mse_range(&self) -> (f32, f32) {
        let grid = Grid::new(8, false);
        let qmax = grid.qmax();
        let mut best = (f64::INFINITY, self.min, self.max);
        for k in 1..=100 {
            let c = k as f32 / 100.0;
            let (l, h) = (self.min * c, self.max * c);
            let (s, z) = grid.params(l, h);
            let err: f64 = self
                .hist
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(b, &n)| {
                    let x = self.bin_center(b);
                    n as f64 * ((fake(x, s, z, qmax) - x) as f64).powi(2)
                })
                .sum();
            if err < best.0 {
                best = (err, l, h);
            }
        }
        (best.1, best.2)
    }

    /// TensorRT's KL threshold (ORT `HistogramCollector.get_entropy_threshold`) on the
    /// histogram of |x|.
    fn entropy_threshold(&self) -> f32 {
        const QBINS: usize = 128;
        let hist: Vec<f64> = self.hist.iter().map(|&c| c as f64).collect();
        let (_, top) = self.span();
        let width = top / HIST_BINS as f32;
        let mut best = (f64::INFINITY, top);
        for i in QBINS..=HIST_BINS {
            // P: the first i bins with the outside mass added to the last one.
            let mut p: Vec<f64> = hist[..i].to_vec();
            let outside: f64 = hist[i..].iter().sum();
            p[i - 1] += outside;
            // Q: the first i bins merged into QBINS buckets, each bucket's mass spread
            // evenly over its non-empty bins.
            let mut q = vec![0f64; i];
            let per = i as f64 / QBINS as f64;
            for k in 0..QBINS {
                let a = (k as f64 * per) as usize;
                let b = if k == QBINS - 1 {
                    i
                } else {
                    ((k + 1) as f64 * per) as usize
                };
                let mass: f64 = hist[a..b].iter().sum();
                let nz = hist[a..b].iter().filter(|&&c| c > 0.0).count();
                if nz > 0 {
                    for j in a..b {
                        if hist[j] > 0.0 {
                            q[j] = mass / nz as f64;
                        }
                    }
                }
            }
            let kl = kl_divergence(&p, &q);
            if kl < best.0 {
                best = (kl, i as f32 * width);
            }
        }
        best.1
    }
}

/// KL(P‖Q) after replacing zeros by a small ε and renormalizing both.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    const EPS: f64 = 1e-10;
    let norm = |v: &[f64]| {
        let s: f64 = v.iter().map(|&x| x.max(EPS)).sum();
        v.iter().map(|&x| x.max(EPS) / s).collect::<Vec<f64>>()
    };
    let (p, q) = (norm(p), norm(q));
    p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum()
}

/// uint8 asymmetric scale and zero point of a range (0 always inside).
pub fn uint8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (s, z) = Grid::new(8, false).params(lo, hi);
    (s, z as u8)
}

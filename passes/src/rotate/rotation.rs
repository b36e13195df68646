//! Orthogonal rotations applied to weights in float64: `Q = diag(signs) · (F ⊗ H_s)`, with
//! H_s the normalized Sylvester matrix (applied by a fast Walsh–Hadamard transform) and F
//! an orthonormal `K × K` factor: a normalized Hadamard matrix of order K (see
//! [`super::hadamard`]) or the identity when none exists (a block-diagonal rotation,
//! still exact, only spreading outliers less). Every transform here is "row vector
//! times Q", the single primitive all the weight updates are written in.

use super::hadamard::{self, Hadamard};
use crate::calib::linalg::transpose;

#[derive(Clone, Debug)]
pub struct Rotation {
    pub n: usize,
    /// The power-of-two part.
    pub s: usize,
    /// The Kronecker factor F (orthonormal, row-major `k × k`), `None` for K = 1.
    pub factor: Option<(usize, Vec<f64>)>,
    /// Random ±1 applied before F ⊗ H (all +1 for a plain Hadamard).
    pub signs: Vec<f64>,
    /// How the matrix was built, for the report ("Sylvester 256", "Paley 344 ⊗ Sylvester 2").
    pub how: String,
}

/// A tiny deterministic generator (splitmix64) for the random signs.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn normalized(h: &Hadamard) -> Vec<f64> {
    let f = 1.0 / (h.n as f64).sqrt();
    h.data.iter().map(|&v| v as f64 * f).collect()
}

impl Rotation {
    /// The (non-random) Hadamard rotation of order n: `H_K ⊗ H_{2^m}` when a construction
    /// exists, else `I_K ⊗ H_{2^m}` with 2^m the largest power of two dividing n.
    pub fn hadamard(n: usize) -> Option<Rotation> {
        let (hk, s) = match hadamard::factor(n) {
            Some(f) => f,
            None => (None, hadamard::split_pow2(n)?.1),
        };
        let k = n / s;
        let (factor, how) = match hk {
            Some(h) => (
                Some((k, normalized(&h))),
                format!("Hadamard {k} (Paley) ⊗ Sylvester {s}"),
            ),
            None if k == 1 => (None, format!("Sylvester {s}")),
            None => {
                let mut id = vec![0.0; k * k];
                (0..k).for_each(|i| id[i * k + i] = 1.0);
                (
                    Some((k, id)),
                    format!(
                        "block-diagonal I_{k} ⊗ Sylvester {s} (no Hadamard of order {n} known)"
                    ),
                )
            }
        };
        Some(Rotation {
            n,
            s,
            factor,
            signs: vec![1.0; n],
            how,
        })
    }

    /// `D·H` with D a random ±1 diagonal (QuaRot's randomized Hadamard).
    pub fn random_hadamard(n: usize, seed: u64) -> Option<Rotation> {
        let mut r = Rotation::hadamard(n)?;
        let mut rng = SplitMix::new(seed);
        for v in r.signs.iter_mut() {
            *v = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        }
        r.how = format!("random ±1 · {}", r.how);
        Some(r)
    }

    /// `x ← x·Q` for one row vector of n values.
    pub fn apply_row(&self, x: &mut [f64]) {
        debug_assert_eq!(x.len(), self.n);
        for (v, s) in x.iter_mut().zip(&self.signs) {
            *v *= s;
        }
        let s = self.s;
        for blk in x.chunks_mut(s) {
            fwht(blk);
        }
        let norm = 1.0 / (s as f64).sqrt();
        match &self.factor {
            None => x.iter_mut().for_each(|v| *v *= norm),
            Some((k, f)) => {
                let k = *k;
                let mut out = vec![0.0; self.n];
                for i in 0..k {
                    let o = &mut out[i * s..(i + 1) * s];
                    for r in 0..k {
                        let c = f[r * k + i] * norm;
                        if c == 0.0 {
                            continue;
                        }
                        for (a, &v) in o.iter_mut().zip(&x[r * s..(r + 1) * s]) {
                            *a += c * v;
                        }
                    }
                }
                x.copy_from_slice(&out);
            }
        }
    }

    /// `M ← M·Q` for a row-major `rows × n` matrix.
    pub fn right_mul(&self, m: &mut [f64]) {
        use rayon::prelude::*;
        m.par_chunks_mut(self.n).for_each(|row| self.apply_row(row));
    }

    /// `M ← Qᵀ·M` for a row-major `n × cols` matrix (each column c: `cᵀ ← cᵀ Q`).
    pub fn left_mul_t(&self, m: &mut [f64], cols: usize) {
        let n = self.n;
        let mut t = transpose(m, n, cols);
        self.right_mul(&mut t);
        m.copy_from_slice(&transpose(&t, cols, n));
    }

    /// The dense matrix Q (row-major), for tests and small sizes.
    pub fn dense(&self) -> Vec<f64> {
        let n = self.n;
        let mut q = vec![0.0; n * n];
        for i in 0..n {
            q[i * n + i] = 1.0;
        }
        self.right_mul(&mut q);
        q
    }

    /// The Kronecker factor F as f32 for the online op's constant input.
    pub fn factor_f32(&self) -> Option<(usize, Vec<f32>)> {
        self.factor
            .as_ref()
            .map(|(k, f)| (*k, f.iter().map(|&v| v as f32).collect()))
    }
}

/// Unnormalized in-place Walsh–Hadamard transform (Sylvester order) of a power-of-two
/// length slice.
pub fn fwht(b: &mut [f64]) {
    let s = b.len();
    let mut h = 1;
    while h < s {
        for i in (0..s).step_by(2 * h) {
            for j in i..i + h {
                let (p, q) = (b[j], b[j + h]);
                b[j] = p + q;
                b[j + h] = p - q;
            }
        }
        h *= 2;
    }
}

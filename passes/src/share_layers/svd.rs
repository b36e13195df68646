//! Thin SVD in f64 through faer, run sequentially (`Par::Seq`; faer's parallel mode is
//! not used in this crate, see `calib::linalg`).

use crate::pass::PassError;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::{Mat, Par};

/// `(U, s, V)` of a thin SVD.
pub type Svd = (Mat<f64>, Vec<f64>, Mat<f64>);

/// `a = U diag(s) Vᵀ` for the row-major `m × n` `a`: returns `(U m×k, s, V n×k)` with
/// `k = min(m, n)`, singular values descending.
pub fn thin_svd(a: &[f64], m: usize, n: usize) -> Result<Svd, PassError> {
    let k = m.min(n);
    let am = Mat::<f64>::from_fn(m, n, |i, j| a[i * n + j]);
    let mut s = faer::diag::Diag::<f64>::zeros(k);
    let mut u = Mat::<f64>::zeros(m, k);
    let mut v = Mat::<f64>::zeros(n, k);
    let mut mem = MemBuffer::new(svd::svd_scratch::<f64>(
        m,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        Par::Seq,
        Default::default(),
    ));
    svd::svd(
        am.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| PassError::Invalid(format!("SVD did not converge: {e:?}")))?;
    let sv = (0..k).map(|i| s[i]).collect();
    Ok((u, sv, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstructs() {
        let (m, n) = (7, 5);
        let a: Vec<f64> = (0..m * n).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let (u, s, v) = thin_svd(&a, m, n).unwrap();
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
        for i in 0..m {
            for j in 0..n {
                let r: f64 = (0..n).map(|k| u[(i, k)] * s[k] * v[(j, k)]).sum();
                assert!((r - a[i * n + j]).abs() < 1e-10);
            }
        }
    }
}

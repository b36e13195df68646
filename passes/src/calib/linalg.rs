//! The dense linear algebra the calibrated passes need: Cholesky factorization and
//! inversion in f64 with faer, products and transposes in f32.
//!
//! faer runs sequentially here (`Par::Seq`). Its parallel mode schedules kernels on a
//! barrier-synchronized worker scheme inside rayon, which was seen to deadlock on
//! two-core machines (faer-rs issue #248 reports the same symptom), and its f32 product
//! on row-major strided views was seen to write out of bounds, so products go through
//! the reference runtime's `gemm` kernels instead (threaded on rayon inside `gemm`).

use crate::pass::PassError;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::{Mat, Par};
use rayon::prelude::*;

/// Row-major `a[m×k] · b[k×n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>, PassError> {
    Ok(compc_runtime::ops::matmul::matmul_f32(a, b, m, k, n)?)
}

/// The lower Cholesky factor `L` of a symmetric positive definite `a` (its lower
/// triangle is read), or `None` when a pivot is not positive.
pub fn cholesky_lower(a: &Mat<f64>) -> Option<Mat<f64>> {
    let n = a.nrows();
    let mut l = a.clone();
    let mut mem = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        Par::Seq,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    for j in 0..n {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    Some(l)
}

/// `(L Lᵀ)⁻¹` from the lower factor; only the lower triangle of the result is filled.
pub fn inverse_from_lower(l: &Mat<f64>) -> Mat<f64> {
    let n = l.nrows();
    let mut out = Mat::<f64>::zeros(n, n);
    let mut mem = MemBuffer::new(llt::inverse::inverse_scratch::<f64>(n, Par::Seq));
    llt::inverse::inverse(out.as_mut(), l.as_ref(), Par::Seq, MemStack::new(&mut mem));
    out
}

/// Transpose of a row-major `rows × cols` matrix, in tiles, bands of the result split
/// over threads.
pub fn transpose<T: Copy + Default + Send + Sync>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    const TILE: usize = 32;
    // Each task owns TILE output rows (= TILE input columns).
    out.par_chunks_mut(rows * TILE)
        .enumerate()
        .for_each(|(bi, band)| {
            let c0 = bi * TILE;
            let nc = band.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for c in 0..nc {
                    let orow = &mut band[c * rows..(c + 1) * rows];
                    for r in r0..r1 {
                        orow[r] = x[r * cols + c0 + c];
                    }
                }
            }
        });
    out
}

/// `(U, singular values, V)`.
pub type Svd = (Mat<f64>, Vec<f64>, Mat<f64>);

/// Thin SVD `A = U diag(s) Vᵀ` (`U`: rows × k, `V`: cols × k, k = min(rows, cols)),
/// singular values non-increasing.
pub fn thin_svd(a: &Mat<f64>) -> Result<Svd, String> {
    let (m, n) = (a.nrows(), a.ncols());
    // faer iterates on NaN until it gives up; say what is wrong instead.
    if (0..n).any(|j| (0..m).any(|i| !a[(i, j)].is_finite())) {
        return Err("the matrix has NaN or infinite entries".into());
    }
    let k = m.min(n);
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
        a.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| format!("the SVD did not converge ({e:?})"))?;
    let sv: Vec<f64> = (0..k).map(|i| s[i]).collect();
    if sv.iter().any(|x| !x.is_finite()) {
        return Err("the SVD returned non-finite singular values".into());
    }
    Ok((u, sv, v))
}

#[cfg(test)]
mod tests {
    use super::{thin_svd, transpose};
    use faer::Mat;

    #[test]
    fn thin_svd_reconstructs_with_descending_singular_values() {
        let (m, n) = (7, 5);
        let a: Vec<f64> = (0..m * n).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let (u, s, v) = thin_svd(&Mat::from_fn(m, n, |i, j| a[i * n + j])).unwrap();
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
        for i in 0..m {
            for j in 0..n {
                let r: f64 = (0..n).map(|k| u[(i, k)] * s[k] * v[(j, k)]).sum();
                assert!((r - a[i * n + j]).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn thin_svd_refuses_nan_and_infinities() {
        for bad in [f64::NAN, f64::INFINITY] {
            let a = Mat::from_fn(4, 3, |i, j| if (i, j) == (2, 1) { bad } else { 1.0 });
            let e = thin_svd(&a).unwrap_err();
            assert!(e.contains("NaN or infinite"), "{e}");
        }
    }

    #[test]
    fn transpose_matches_the_definition_on_every_edge_case() {
        // Sizes around the 8×8 micro-blocks and the 32-column bands.
        for (rows, cols) in [
            (0, 5),
            (1, 1),
            (7, 9),
            (8, 8),
            (33, 17),
            (40, 65),
            (129, 31),
        ] {
            let x: Vec<u32> = (0..rows * cols).map(|i| i as u32).collect();
            let t = transpose(&x, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        x[r * cols + c],
                        "{rows}×{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}

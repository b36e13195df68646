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

#[cfg(test)]
mod tests {
    use super::transpose;

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

//! Wanda (Sun et al., ICLR 2024; `locuslab/wanda:lib/prune.py`, `prune_wanda`;
//! techniques.md §2.3): the score of `W_ij` is `|W_ij| · ‖X_{:,j}‖₂`, the weight's
//! magnitude times the L2 norm of its input feature over the calibration tokens. Rows
//! are compared separately by default; no weight is updated.

use rayon::prelude::*;

/// `|W_ij| · norms[j]` for a W-form `w` with `norms.len()` columns.
pub fn scores(w: &[f32], norms: &[f64]) -> Vec<f32> {
    let cols = norms.len().max(1);
    let mut s = vec![0f32; w.len()];
    s.par_chunks_mut(cols)
        .zip(w.par_chunks(cols))
        .for_each(|(sr, wr)| {
            for ((o, x), nj) in sr.iter_mut().zip(wr).zip(norms) {
                *o = (x.abs() as f64 * nj) as f32;
            }
        });
    s
}

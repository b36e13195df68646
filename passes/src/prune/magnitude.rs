//! Magnitude pruning (techniques.md §2.2): the score of a weight is `|W_ij|`. The
//! reference (`locuslab/wanda:lib/prune.py`, `prune_magnitude`) uses one threshold per
//! weight matrix; `scope=row` compares within rows and `scope=global` across layers.

use rayon::prelude::*;

/// `|W|`, element by element.
pub fn scores(w: &[f32]) -> Vec<f32> {
    w.par_iter().map(|x| x.abs()).collect()
}

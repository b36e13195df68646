//! Turning scores into masks (`true` = pruned) under each sparsity pattern, and the
//! checks the report and the tests use. Weights are W-form, `rows × cols`, and N:M
//! groups run along the input (reduction) dimension K = cols (techniques.md §2.5).

use rayon::prelude::*;
use std::cmp::Ordering;

/// How many of `len` items a `sparsity` fraction prunes (rounded down, as the
/// references' `int(numel · sparsity)`).
pub fn count(len: usize, sparsity: f64) -> usize {
    ((len as f64 * sparsity).floor() as usize).min(len)
}

fn by_score(scores: &[f32]) -> impl Fn(&usize, &usize) -> Ordering + '_ {
    // Ties go to the lower index so masks are deterministic.
    move |&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b))
}

/// Marks the `k` lowest-scoring entries of `scores`.
pub fn mask_lowest(scores: &[f32], k: usize) -> Vec<bool> {
    let mut mask = vec![false; scores.len()];
    if k == 0 {
        return mask;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by_score(scores));
    }
    for &i in &idx[..k.min(scores.len())] {
        mask[i] = true;
    }
    mask
}

/// One threshold over the whole matrix.
pub fn mask_layer(scores: &[f32], sparsity: f64) -> Vec<bool> {
    mask_lowest(scores, count(scores.len(), sparsity))
}

/// The same fraction in every row.
pub fn mask_rows(scores: &[f32], cols: usize, sparsity: f64) -> Vec<bool> {
    let k = count(cols, sparsity);
    let mut mask = vec![false; scores.len()];
    mask.par_chunks_mut(cols)
        .zip(scores.par_chunks(cols))
        .for_each(|(m, s)| m.copy_from_slice(&mask_lowest(s, k)));
    mask
}

/// In every row and every aligned group of `m` columns, the `n` lowest scores. A short
/// last group keeps at most `m − n` entries.
pub fn mask_nm(scores: &[f32], cols: usize, n: usize, m: usize) -> Vec<bool> {
    let mut mask = vec![false; scores.len()];
    mask.par_chunks_mut(cols)
        .zip(scores.par_chunks(cols))
        .for_each(|(mr, sr)| {
            for (mg, sg) in mr.chunks_mut(m).zip(sr.chunks(m)) {
                let k = sg.len().saturating_sub(m - n);
                mg.copy_from_slice(&mask_lowest(sg, k));
            }
        });
    mask
}

/// Zeroes the masked weights.
pub fn apply(w: &mut [f32], mask: &[bool]) {
    for (x, &m) in w.iter_mut().zip(mask) {
        if m {
            *x = 0.0;
        }
    }
}

/// Fraction of exact zeros.
pub fn sparsity_of(w: &[f32]) -> f64 {
    w.iter().filter(|&&x| x == 0.0).count() as f64 / w.len().max(1) as f64
}

/// Whether every row's aligned groups of `m` columns hold at most `m − n` non-zeros.
pub fn holds_nm(w: &[f32], cols: usize, n: usize, m: usize) -> bool {
    w.chunks(cols).all(|row| {
        row.chunks(m)
            .all(|g| g.iter().filter(|&&x| x != 0.0).count() <= m - n)
    })
}

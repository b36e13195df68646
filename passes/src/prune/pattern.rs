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

/// Wanda's variant (`locuslab/wanda`, `prune_wanda` with `--use_variant`): each row
/// prunes its lowest scores until their sum reaches a fraction α of the row's total, and
/// α is bisected until the whole matrix holds the target. Rows whose scores are spread
/// evenly lose many entries, rows with a few dominant scores lose few.
///
/// The reference bisects α in [0, 0.8] from 0.4 and stops within 0.001 of the target
/// sparsity; this one bisects in [0, 1] for at most 64 steps and keeps the α whose count
/// is closest to the target, so rows of any score distribution reach it.
pub fn mask_adaptive_rows(scores: &[f32], cols: usize, sparsity: f64) -> Vec<bool> {
    let mut mask = vec![false; scores.len()];
    let target = count(scores.len(), sparsity);
    // Zero scores sit within any α, so a zero target stops here rather than pruning them.
    if target == 0 || cols == 0 {
        return mask;
    }
    // Per row: its entries in ascending score order (ties to the lower index, as
    // everywhere else) and the running sums of those scores.
    let rows: Vec<(Vec<usize>, Vec<f64>)> = scores
        .par_chunks(cols)
        .map(|s| {
            let mut idx: Vec<usize> = (0..s.len()).collect();
            idx.sort_unstable_by(by_score(s));
            let mut acc = 0f64;
            let cums = idx
                .iter()
                .map(|&i| {
                    acc += s[i] as f64;
                    acc
                })
                .collect();
            (idx, cums)
        })
        .collect();
    // Entries of a row whose running sum stays within α of the row's total.
    let counts = |alpha: f64| -> Vec<usize> {
        rows.iter()
            .map(|(_, c)| {
                let total = c.last().copied().unwrap_or(0.0);
                c.partition_point(|&v| v <= alpha * total)
            })
            .collect()
    };
    let (mut lo, mut hi) = (0f64, 1f64);
    let mut best = counts(0.0);
    let off = |c: &[usize]| c.iter().sum::<usize>().abs_diff(target);
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        let c = counts(mid);
        let total: usize = c.iter().sum();
        if off(&c) < off(&best) {
            best = c;
        }
        if total == target || hi - lo < 1e-12 {
            break;
        }
        if total > target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    for ((m, (idx, _)), k) in mask.chunks_mut(cols).zip(&rows).zip(best) {
        for &i in &idx[..k] {
            m[i] = true;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_rows_prune_an_equal_share_of_each_rows_score_mass() {
        // Row 0 has one dominant score: its seven small ones are 7/107 of its mass. Row 1
        // is spread evenly: its lowest score alone is 10/108. Half of the 16 entries
        // means α between 10/108 and 18/107, so row 0 loses all seven and row 1 one.
        let scores = [
            100.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, //
            10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0,
        ];
        let mask = mask_adaptive_rows(&scores, 8, 0.5);
        let row0: Vec<bool> = (0..8).map(|i| i > 0).collect();
        let row1: Vec<bool> = (0..8).map(|i| i == 0).collect();
        assert_eq!(mask[..8], row0[..]);
        assert_eq!(mask[8..], row1[..]);
        // The same-fraction-per-row mask prunes four of each.
        let rows = mask_rows(&scores, 8, 0.5);
        assert_eq!(rows.iter().filter(|&&m| m).count(), 8);
        assert_eq!(rows[..8].iter().filter(|&&m| m).count(), 4);
    }

    #[test]
    fn adaptive_rows_reach_the_target_and_zero_prunes_nothing() {
        let scores: Vec<f32> = (0..64 * 48)
            .map(|i| ((i * 7919 % 1009) as f32 + 1.0) * if i % 48 == 3 { 50.0 } else { 1.0 })
            .collect();
        for sparsity in [0.25, 0.5, 0.7] {
            let mask = mask_adaptive_rows(&scores, 48, sparsity);
            let pruned = mask.iter().filter(|&&m| m).count();
            let target = count(scores.len(), sparsity);
            assert!(
                pruned.abs_diff(target) <= 64,
                "{pruned} pruned against a target of {target} at {sparsity}"
            );
            // Within a row, what is pruned scores no higher than what is kept.
            for (s, m) in scores.chunks(48).zip(mask.chunks(48)) {
                let cut = s.iter().zip(m).filter(|(_, &m)| m).map(|(v, _)| *v);
                let kept = s.iter().zip(m).filter(|(_, &m)| !m).map(|(v, _)| *v);
                assert!(cut.fold(f32::MIN, f32::max) <= kept.fold(f32::MAX, f32::min));
            }
        }
        // A zero score (a weight on an input that was zero on every calibration token)
        // is not pruned at sparsity 0 either.
        let mut with_zero = scores.clone();
        with_zero[5] = 0.0;
        assert!(!mask_adaptive_rows(&with_zero, 48, 0.0).contains(&true));
    }
}

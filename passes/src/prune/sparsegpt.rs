//! SparseGPT (Frantar & Alistarh, ICML 2023; `IST-DASLab/sparsegpt:sparsegpt.py`,
//! `fasterprune`; techniques.md §2.4): GPTQ's skeleton with "quantize the column"
//! replaced by "apply the mask". Columns are visited in order; the error of zeroing the
//! masked entries of column j is spread over the columns after it through row j of the
//! upper Cholesky factor U of the damped inverse Hessian, with the lazy batch update of
//! later blocks as one matrix product. The Hessian handling (dead inputs, damping with
//! retries, the f64 factorization) is [`crate::calib::hessian`], shared with GPTQ.
//!
//! Masks: unstructured, one threshold per block of columns over all rows of
//! `W1² / diag(U_block)²` taken at the start of the block (the count per row varies);
//! N:M, at every column j with `j mod M = 0`, per row the N lowest scores among columns
//! `j..j+M`. The reference masks `k + 1` entries (`tmp <= sorted[k]`); this masks
//! exactly `k = ⌊sparsity · block⌋`, so sparsity 0 changes nothing.

// The column loop indexes the weight row, the error row and U's row with one index.
#![allow(clippy::needless_range_loop)]

use super::options::Pattern;
use super::pattern::{count, mask_lowest};
use crate::calib::hessian::{
    check_solve_inputs, inverse_cholesky, obs_column_step, propagate_block_error, zero_dead_inputs,
};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct SparseGptConfig {
    pub sparsity: f64,
    pub pattern: Pattern,
    /// Columns per lazy-update block (128 in the reference).
    pub block: usize,
    pub damp: f64,
}

#[derive(Clone, Debug)]
pub struct SparseGptResult {
    /// The pruned and updated W-form weight.
    pub w: Vec<f32>,
    /// `½ Σ (w − q)² / d²`, as GPTQ reports its loss.
    pub loss: f64,
    /// The damping fraction that gave a positive definite matrix.
    pub damp: f64,
    /// Input features that were always zero.
    pub dead: usize,
}

/// SparseGPT of a W-form matrix `w` (`rows × cols`) with Hessian `h` (`cols × cols`).
pub fn sparsegpt(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    cfg: &SparseGptConfig,
) -> Result<SparseGptResult, String> {
    let n = cols;
    check_solve_inputs("SparseGPT", w, rows, n, h)?;
    let mut w = w.to_vec();
    let mut h = h.to_vec();
    let dead = zero_dead_inputs(&mut h, &mut w, rows, n);
    let (u, damp_used) = inverse_cholesky(&h, n, cfg.damp)?;
    drop(h);
    let block = match cfg.pattern {
        // Groups of M never straddle blocks.
        Pattern::NM { m, .. } => cfg.block.max(1).div_ceil(m) * m,
        Pattern::Unstructured => cfg.block.max(1),
    };
    let mut loss = 0f64;
    for i1 in (0..n).step_by(block) {
        let i2 = (i1 + block).min(n);
        let cnt = i2 - i1;
        let dinv2: Vec<f32> = (i1..i2)
            .map(|j| {
                let d = u[j * n + j];
                1.0 / (d * d)
            })
            .collect();
        // The block's adaptive mask, from the weights as they are at its start.
        let block_mask: Vec<bool> = match cfg.pattern {
            Pattern::Unstructured => {
                let scores: Vec<f32> = w
                    .par_chunks(n)
                    .flat_map_iter(|row| row[i1..i2].iter().zip(&dinv2).map(|(x, di)| x * x * di))
                    .collect();
                mask_lowest(&scores, count(rows * cnt, cfg.sparsity))
            }
            Pattern::NM { .. } => vec![false; rows * cnt],
        };
        let mut err = vec![0f32; rows * cnt];
        let block_loss: f64 = w
            .par_chunks_mut(n)
            .zip(err.par_chunks_mut(cnt))
            .zip(block_mask.par_chunks(cnt))
            .with_min_len(4)
            .map(|((wr, er), bm)| {
                let mut mask = bm.to_vec();
                let mut l = 0f64;
                for c in 0..cnt {
                    let j = i1 + c;
                    if let Pattern::NM { n: pn, m } = cfg.pattern {
                        if c % m == 0 {
                            let end = (c + m).min(cnt);
                            let s: Vec<f32> = (c..end)
                                .map(|c2| wr[i1 + c2] * wr[i1 + c2] * dinv2[c2])
                                .collect();
                            let k = s.len().saturating_sub(m - pn);
                            for (o, mk) in mask_lowest(&s, k).into_iter().enumerate() {
                                mask[c + o] = mk;
                            }
                        }
                    }
                    let q = if mask[c] { 0.0 } else { wr[j] };
                    let (e, lc) = obs_column_step(wr, &u, n, j, i1 + cnt, q);
                    wr[j] = q;
                    l += lc;
                    er[c] = e;
                }
                l
            })
            .sum();
        loss += block_loss;
        propagate_block_error(&mut w, &err, &u, n, i1, i2)?;
    }
    Ok(SparseGptResult {
        w,
        loss,
        damp: damp_used,
        dead,
    })
}

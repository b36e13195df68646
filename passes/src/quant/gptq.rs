//! GPTQ (Frantar et al., ICLR 2023; `IST-DASLab/gptq:gptq.py`, `fasterquant`), as in
//! techniques.md §1.2: columns are quantized one at a time and each column's rounding
//! error is spread over the columns not yet quantized, weighted by the inverse Hessian's
//! Cholesky factor, so the layer's output on the calibration data moves as little as
//! possible. Every row shares one Hessian, so one factorization serves all rows and the
//! rows are processed in parallel.
//!
//! Details kept from the reference: dead inputs (`H_jj = 0`) are zeroed; damping
//! `λ = damp · mean(diag H)`; Cholesky of `H⁻¹` (upper factor U, computed in f64 with
//! faer and used in f32 like the reference); blocks of 128 columns with the lazy batch
//! update of later columns as one matrix product; act-order (`argsort(diag H)`
//! descending) with static groups, so groups stay contiguous in the original column
//! order and export to blocked QDQ/MatMulNBits without `g_idx`. Groups without
//! act-order are fitted on the current (already error-updated) columns, as the note in
//! techniques.md prefers. A factorization that fails (H not positive definite) is
//! retried with ten times the damping, up to five times.

// The column loop indexes the weight row, the error row and U's row with one index.
#![allow(clippy::needless_range_loop)]

use super::grid::{code, dequant, Grid};
use super::qmatrix::{effective_group, QMatrix};
pub use crate::calib::hessian::inverse_cholesky;
use crate::calib::hessian::{
    check_solve_inputs, obs_column_step, propagate_block_error, zero_dead_inputs,
};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct GptqConfig {
    pub grid: Grid,
    /// Columns per group; 0 = per output channel.
    pub group: usize,
    /// Columns per lazy-update block (128 in the reference).
    pub block: usize,
    pub damp: f64,
    pub act_order: bool,
}

#[derive(Clone, Debug)]
pub struct GptqResult {
    pub q: QMatrix,
    /// `½ Σ (w − q)² / d²`, the reference's reported loss.
    pub loss: f64,
    /// The damping fraction that gave a positive definite matrix.
    pub damp: f64,
    /// Input features that were always zero.
    pub dead: usize,
}

/// GPTQ of a W-form matrix `w` (`rows × cols`) with Hessian `h` (`cols × cols`, f64).
pub fn gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    cfg: &GptqConfig,
) -> Result<GptqResult, String> {
    let n = cols;
    check_solve_inputs("GPTQ", w, rows, n, h)?;
    let grid = cfg.grid;
    let qmax = grid.qmax();
    let group = effective_group(n, cfg.group);
    let per_channel = group >= n;
    let ng = n.div_ceil(group);
    let mut w = w.to_vec();
    let mut h = h.to_vec();

    // Per-channel parameters come from the weights as given (the reference fits them
    // before zeroing dead columns).
    let mut scales = vec![0f32; rows * ng];
    let mut zeros = vec![0f32; rows * ng];
    if per_channel {
        scales
            .par_iter_mut()
            .zip(zeros.par_iter_mut())
            .zip(w.par_chunks(n))
            .for_each(|((s, z), row)| {
                let p = grid.params_of(row);
                *s = p.0;
                *z = p.1;
            });
    }

    // Weights that are exactly zero (a pruning mask) stay zero: they are coded as the
    // zero point, and what moving them to zero costs is spread like any rounding error
    // (SparseGPT's joint sparse + quantized mode).
    let zero_mask: Option<Vec<bool>> = w
        .contains(&0.0)
        .then(|| w.iter().map(|&x| x == 0.0).collect());
    let dead = zero_dead_inputs(&mut h, &mut w, rows, n);

    let static_groups = cfg.act_order && !per_channel;
    if static_groups {
        scales
            .par_chunks_mut(ng)
            .zip(zeros.par_chunks_mut(ng))
            .zip(w.par_chunks(n))
            .for_each(|((s, z), row)| {
                for (gi, g) in row.chunks(group).enumerate() {
                    let p = grid.params_of(g);
                    s[gi] = p.0;
                    z[gi] = p.1;
                }
            });
    }

    // perm[j] = original column quantized j-th.
    let perm: Vec<usize> = if cfg.act_order {
        let mut p: Vec<usize> = (0..n).collect();
        p.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]));
        p
    } else {
        (0..n).collect()
    };
    let permuted = perm.iter().enumerate().any(|(i, &p)| i != p);
    if permuted {
        let wp: Vec<f32> = w
            .par_chunks(n)
            .flat_map_iter(|row| perm.iter().map(move |&p| row[p]))
            .collect();
        w = wp;
        let hp: Vec<f64> = (0..n * n)
            .into_par_iter()
            .map(|k| h[perm[k / n] * n + perm[k % n]])
            .collect();
        h = hp;
    }

    let (u, damp_used) = inverse_cholesky(&h, n, cfg.damp)?;
    drop(h);
    // In the processing order, like w.
    let zero_mask: Vec<bool> = match zero_mask {
        Some(m) if permuted => m
            .chunks(n)
            .flat_map(|row| perm.iter().map(move |&p| row[p]))
            .collect(),
        Some(m) => m,
        None => Vec::new(),
    };

    // The block is a multiple of the group so dynamic groups never straddle blocks.
    let block = if per_channel || static_groups {
        cfg.block.max(1)
    } else {
        cfg.block.max(1).div_ceil(group) * group
    };
    let mut codes_p = vec![0u8; rows * n];
    let mut loss = 0f64;
    for i1 in (0..n).step_by(block) {
        let i2 = (i1 + block).min(n);
        let cnt = i2 - i1;
        let mut err = vec![0f32; rows * cnt];
        let dynamic = !per_channel && !static_groups;
        let block_loss: f64 = w
            .par_chunks_mut(n)
            .zip(codes_p.par_chunks_mut(n))
            .zip(err.par_chunks_mut(cnt))
            .zip(scales.par_chunks_mut(ng))
            .zip(zeros.par_chunks_mut(ng))
            .enumerate()
            .with_min_len(4)
            .map(|(r, ((((wr, cr), er), sr), zr))| {
                let zm = zero_mask.get(r * n..(r + 1) * n);
                let mut l = 0f64;
                for c in 0..cnt {
                    let j = i1 + c;
                    if dynamic && j % group == 0 {
                        let end = (c + group).min(cnt);
                        let p = grid.params_of(&wr[j..i1 + end]);
                        sr[j / group] = p.0;
                        zr[j / group] = p.1;
                    }
                    let gi = if per_channel { 0 } else { perm[j] / group };
                    let (s, z) = (sr[gi], zr[gi]);
                    let x = wr[j];
                    let qc = match zm {
                        Some(m) if m[j] => z,
                        _ => code(x, s, z, qmax),
                    };
                    cr[j] = qc as u8;
                    let (e, lc) = obs_column_step(wr, &u, n, j, i1 + cnt, dequant(qc, s, z));
                    l += lc;
                    er[c] = e;
                }
                l
            })
            .sum();
        loss += block_loss;
        propagate_block_error(&mut w, &err, &u, n, i1, i2)?;
    }

    let codes = if permuted {
        let mut c = vec![0u8; rows * n];
        c.par_chunks_mut(n)
            .zip(codes_p.par_chunks(n))
            .for_each(|(o, p)| {
                for (j, &pj) in perm.iter().enumerate() {
                    o[pj] = p[j];
                }
            });
        c
    } else {
        codes_p
    };
    Ok(GptqResult {
        q: QMatrix {
            rows,
            cols: n,
            group,
            grid,
            codes,
            scales,
            zeros: zeros.iter().map(|&z| z as u8).collect(),
        },
        loss,
        damp: damp_used,
        dead,
    })
}

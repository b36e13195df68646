//! AWQ (Lin et al., MLSys 2024; `mit-han-lab/llm-awq:awq/quantize/auto_scale.py`,
//! `auto_clip.py`), techniques.md §1.3.
//!
//! Per group of layers reading one input (q/k/v, o, gate/up, down, or any other linear):
//! 1. `a_j` = mean |x_j| over the calibration tokens;
//! 2. for `α ∈ {0, 0.05, …, 0.95}`: `s = max(a^α, 1e−4)`, normalized by
//!    `sqrt(max s · min s)`; every layer gets `W' = Q(W·diag(s))·diag(s)⁻¹`; the measured
//!    module (the whole attention for q/k/v, the whole MLP for gate/up, else the layers
//!    themselves) runs on the cached inputs; loss = mean squared difference to its float
//!    output; the α with least loss wins;
//! 3. the scales are applied (`W ← W·diag(s)`, `1/s` folded before, see [`super::fold`]);
//! 4. clip search per layer except q/k (as the reference): for every row and group try
//!    `max|w|·(1 − i/20)`, `i < 10`, and keep the clip with the least output error
//!    `E_t[(x_t·(w − ŵ))²] = dᵀ G d` over the group's block `G` of the input Gram matrix
//!    `XᵀX/N` (all calibration tokens rather than the reference's 512 samples);
//! 5. RTN with the chosen ranges.

use super::fold::scale_columns;
use super::grid::{fake, Grid};
use super::qmatrix::effective_group;
use super::rtn::group_ranges;
use crate::calib::CalibRunner;
use crate::idioms::Idioms;
use crate::pass::PassError;
use compc_ir::{Graph, ValueRef};
use compc_runtime::Tensor;
use rayon::prelude::*;

pub const N_GRID: usize = 20;
pub const CLIP_GRID: usize = 20;
pub const CLIP_MAX_SHRINK: f32 = 0.5;

/// AWQ's scales for exponent `alpha` from the mean |x| per channel.
pub fn scales_for(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
    let mut s: Vec<f32> = mean_abs.iter().map(|&a| a.powf(alpha).max(1e-4)).collect();
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let norm = (hi * lo).sqrt();
    if norm.is_finite() && norm > 0.0 {
        s.iter_mut().for_each(|v| *v /= norm);
    }
    s
}

/// `Q(W·diag(s))·diag(s)⁻¹` with RTN of the given grid and group.
pub fn fake_scaled(
    w: &[f32],
    rows: usize,
    cols: usize,
    s: &[f32],
    grid: Grid,
    group: usize,
) -> Vec<f32> {
    let group = effective_group(cols, group);
    let qmax = grid.qmax();
    let mut out = w.to_vec();
    scale_columns(&mut out, cols, s);
    out.par_chunks_mut(cols.max(1)).for_each(|row| {
        for (gi, chunk) in row.chunks_mut(group).enumerate() {
            let (sc, z) = grid.params_of(chunk);
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = fake(*v, sc, z, qmax) / s[gi * group + j];
            }
        }
    });
    let _ = rows;
    out
}

/// The values whose change AWQ measures for a group of layers (idiom indices
/// `members`): the attention output for q/k/v, the MLP output for gate/up, else the
/// layers' own outputs.
pub fn measured_outputs(idioms: &Idioms, members: &[usize]) -> Vec<ValueRef> {
    let lin = &idioms.linears;
    for a in &idioms.attention {
        if members.iter().any(|&m| m == a.q || m == a.k || m == a.v) {
            if let Some(o) = a.o {
                return vec![lin[o].output];
            }
        }
    }
    for m in &idioms.mlps {
        if members.iter().any(|&x| x == m.up || Some(x) == m.gate) {
            return vec![lin[m.down].output];
        }
    }
    members.iter().map(|&m| lin[m].output).collect()
}

/// One layer of a group under search: where its weight is in the scratch graph and its
/// float W-form weight.
pub struct SearchLayer<'a> {
    pub node: compc_ir::NodeId,
    pub w: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub layout_in_out: bool,
}

/// Result of the scale search.
pub struct ScaleSearch {
    pub alpha: f32,
    pub scales: Vec<f32>,
    pub loss: f64,
    /// Loss with α = 0 (plain RTN), for the report.
    pub rtn_loss: f64,
}

fn set_weight(g: &mut Graph, l: &SearchLayer, w: &[f32]) -> Result<(), PassError> {
    let Some(v) = g.node(l.node).input(1) else {
        return Err(PassError::Invalid("layer lost its weight".into()));
    };
    let compc_ir::Op::Const(wid) = g.node(v.node).op else {
        return Err(PassError::Invalid("layer weight is not a constant".into()));
    };
    let old = g.weights.get(wid);
    let data = if l.layout_in_out {
        crate::calib::linalg::transpose(w, l.rows, l.cols)
    } else {
        w.to_vec()
    };
    let t = Tensor::from_f32_as(
        old.dtype,
        old.dims.iter().map(|&d| d as usize).collect(),
        data,
    )?;
    let nw = t.to_weight(&old.name)?;
    g.weights.replace(wid, nw);
    Ok(())
}

/// Grid search of AWQ's scale exponent for one group. `x` is the group's input, `cached`
/// its tensors for the batches `batches` of the runner; `layers` are the group's layers;
/// `measured` the outputs compared.
#[allow(clippy::too_many_arguments)]
pub fn search_scales(
    g: &Graph,
    runner: &CalibRunner,
    x: ValueRef,
    cached: &[Tensor],
    batches: &[usize],
    layers: &[SearchLayer],
    measured: &[ValueRef],
    mean_abs: &[f32],
    grid: Grid,
    group: usize,
) -> Result<ScaleSearch, PassError> {
    // A scratch graph where each layer has a constant of its own, replaced in place.
    let mut sg = g.clone();
    for l in layers {
        let Some(v) = sg.node(l.node).input(1) else {
            return Err(PassError::Invalid("layer lost its weight".into()));
        };
        let Some(w) = sg.const_weight(v).cloned() else {
            return Err(PassError::Invalid("layer weight is not a constant".into()));
        };
        let c = sg.add_const(w);
        sg.set_input(l.node, 1, Some(ValueRef::new(c, 0)));
    }
    let replace = [(x, cached)];
    let run = |sg: &Graph| -> Result<Vec<Vec<Tensor>>, PassError> {
        let mut outs = Vec::new();
        runner.run_with(sg, &replace, measured, batches, &mut |_, o| {
            outs.push(o);
            Ok(())
        })?;
        Ok(outs)
    };
    let reference = run(&sg)?;
    let mut best = ScaleSearch {
        alpha: 0.0,
        scales: vec![1.0; mean_abs.len()],
        loss: f64::INFINITY,
        rtn_loss: f64::INFINITY,
    };
    for i in 0..N_GRID {
        let alpha = i as f32 / N_GRID as f32;
        let s = scales_for(mean_abs, alpha);
        for l in layers {
            let wq = fake_scaled(l.w, l.rows, l.cols, &s, grid, group);
            set_weight(&mut sg, l, &wq)?;
        }
        let outs = run(&sg)?;
        let (mut sum, mut count) = (0f64, 0usize);
        for (a, b) in outs.iter().zip(&reference) {
            for (ta, tb) in a.iter().zip(b) {
                let (va, vb) = (ta.f32_cow(), tb.f32_cow());
                sum += va
                    .iter()
                    .zip(vb.iter())
                    .map(|(p, q)| ((p - q) as f64).powi(2))
                    .sum::<f64>();
                count += va.len();
            }
        }
        let loss = sum / count.max(1) as f64;
        if i == 0 {
            best.rtn_loss = loss;
        }
        if loss < best.loss {
            best = ScaleSearch {
                alpha,
                scales: s,
                loss,
                rtn_loss: best.rtn_loss,
            };
        }
    }
    Ok(best)
}

/// AWQ's clip search: per (row, group) range of `w` (W-form, already scaled) minimizing
/// `dᵀ G_g d`, with `gram` the n × n Gram matrix of the (scaled) inputs.
pub fn clip_ranges(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    grid: Grid,
    gram: &[f64],
) -> Vec<(f32, f32)> {
    let group = effective_group(cols, group);
    let ng = cols.div_ceil(group);
    let qmax = grid.qmax();
    let base = group_ranges(w, cols, group);
    let steps = (CLIP_MAX_SHRINK * CLIP_GRID as f32) as usize;
    let mut out = vec![(0f32, 0f32); rows * ng];
    out.par_chunks_mut(ng)
        .zip(w.par_chunks(cols.max(1)))
        .enumerate()
        .for_each(|(r, (ranges, row))| {
            let mut d = vec![0f64; group];
            for gi in 0..ng {
                let c0 = gi * group;
                let wg = &row[c0..(c0 + group).min(cols)];
                let (lo, hi) = base[r * ng + gi];
                let m = lo.abs().max(hi.abs());
                let mut best = (f64::INFINITY, (lo, hi));
                for i in 0..steps {
                    let mv = m * (1.0 - i as f32 / CLIP_GRID as f32);
                    // The weights are clamped to [−mv, mv] as in AWQ; the group's range
                    // after that clamp is its own range clamped the same way (a group
                    // of one sign, say all above mv, collapses to the point mv).
                    let (l, h) = (lo.clamp(-mv, mv), hi.clamp(-mv, mv));
                    let (s, z) = grid.params(l, h);
                    for (dj, &v) in d.iter_mut().zip(wg) {
                        *dj = (v - fake(v.clamp(l, h), s, z, qmax)) as f64;
                    }
                    let k = wg.len();
                    let mut err = 0f64;
                    for a in 0..k {
                        let ga = &gram[(c0 + a) * cols + c0..(c0 + a) * cols + c0 + k];
                        let mut acc = 0f64;
                        for b in 0..k {
                            acc += ga[b] * d[b];
                        }
                        err += d[a] * acc;
                    }
                    if err < best.0 {
                        best = (err, (l, h));
                    }
                }
                ranges[gi] = best.1;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group whose weights all lie above the shrunken clip bound (one sign, all equal)
    /// used to give clamp an empty range and panic; it now keeps its own range.
    #[test]
    fn one_signed_constant_groups_keep_their_range() {
        let (rows, cols, group) = (2, 8, 4);
        let w = vec![0.5f32; rows * cols];
        let gram: Vec<f64> = (0..cols * cols)
            .map(|i| if i % (cols + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        let ranges = clip_ranges(&w, rows, cols, group, Grid::new(4, false), &gram);
        assert_eq!(ranges.len(), rows * 2);
        for &(l, h) in &ranges {
            assert!(l <= h, "empty clip range ({l}, {h})");
            assert_eq!((l, h), (0.5, 0.5), "the unclipped range has no error");
        }
    }
}

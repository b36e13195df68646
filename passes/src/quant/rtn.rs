//! Round-to-nearest: scale and zero point from each group's min/max, every element
//! rounded (techniques.md §1.1). No calibration. Rows are independent, so the work is
//! split over rows with rayon; each group is two streaming passes over contiguous memory
//! (min/max, then quantize), which the compiler vectorizes.

use super::grid::{code, dequant, min_max, quantize_into, Grid};
use super::qmatrix::{effective_group, QMatrix};
use rayon::prelude::*;

/// RTN of a W-form matrix (`rows × cols`, row-major; `group` 0 = per output channel).
pub fn rtn(w: &[f32], rows: usize, cols: usize, group: usize, grid: Grid) -> QMatrix {
    let mut q = QMatrix::zeroed(rows, cols, group, grid);
    rtn_into(w, &mut q);
    q
}

/// RTN and the weight MSE of the result, computed while each group is still in cache
/// (the streaming path for large models: one pass over the weights).
pub fn rtn_with_mse(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    grid: Grid,
) -> (QMatrix, f64) {
    let mut q = QMatrix::zeroed(rows, cols, group, grid);
    let sq = rtn_into_measured(w, &mut q);
    (q, sq / w.len().max(1) as f64)
}

/// RTN into a pre-shaped matrix (its geometry and grid decide everything).
pub fn rtn_into(w: &[f32], q: &mut QMatrix) {
    rtn_into_measured(w, q);
}

/// `rtn_into`, returning the sum of squared quantization errors.
fn rtn_into_measured(w: &[f32], q: &mut QMatrix) -> f64 {
    let (cols, group, ng, grid) = (q.cols.max(1), q.group, q.groups(), q.grid);
    let qmax = grid.qmax();
    // Enough rows per task that small rows do not drown in scheduling.
    let rows_per_task = (1 << 14) / cols + 1;
    q.codes
        .par_chunks_mut(cols * rows_per_task)
        .zip(q.scales.par_chunks_mut(ng * rows_per_task))
        .zip(q.zeros.par_chunks_mut(ng * rows_per_task))
        .zip(w.par_chunks(cols * rows_per_task))
        .map(|(((codes, scales), zeros), w)| {
            let mut sq = 0f64;
            for (r, (wr, cr)) in w.chunks(cols).zip(codes.chunks_mut(cols)).enumerate() {
                for (gi, (wg, cg)) in wr.chunks(group).zip(cr.chunks_mut(group)).enumerate() {
                    let (s, z) = grid.params_of(wg);
                    scales[r * ng + gi] = s;
                    zeros[r * ng + gi] = z as u8;
                    quantize_into(wg, s, z, qmax, cg);
                    let e: f32 = wg
                        .iter()
                        .zip(cg.iter())
                        .map(|(&x, &c)| {
                            let d = dequant(c as f32, s, z) - x;
                            d * d
                        })
                        .sum();
                    sq += e as f64;
                }
            }
            sq
        })
        .sum()
}

/// RTN with clipping: each group's range is `[lo, hi]` from `clip(group values)`. AWQ's
/// clip search and MSE clipping feed their chosen ranges through here.
pub fn rtn_with_ranges(w: &[f32], q: &mut QMatrix, ranges: &[(f32, f32)]) {
    let (cols, group, ng, grid) = (q.cols.max(1), q.group, q.groups(), q.grid);
    let qmax = grid.qmax();
    q.codes
        .par_chunks_mut(cols)
        .zip(q.scales.par_chunks_mut(ng))
        .zip(q.zeros.par_chunks_mut(ng))
        .zip(w.par_chunks(cols))
        .zip(ranges.par_chunks(ng))
        .for_each(|((((codes, scales), zeros), w), rg)| {
            for (gi, (wg, cg)) in w.chunks(group).zip(codes.chunks_mut(group)).enumerate() {
                let (s, z) = grid.params(rg[gi].0, rg[gi].1);
                scales[gi] = s;
                zeros[gi] = z as u8;
                for (o, &v) in cg.iter_mut().zip(wg) {
                    *o = code(v, s, z, qmax) as u8;
                }
            }
        });
}

/// Row-wise RTN geometry helper: the number of groups of a row of `cols`.
pub fn groups_of(cols: usize, group: usize) -> usize {
    cols.div_ceil(effective_group(cols, group))
}

/// Per-group (min, max) of a W-form matrix, for callers that adjust ranges.
pub fn group_ranges(w: &[f32], cols: usize, group: usize) -> Vec<(f32, f32)> {
    let group = effective_group(cols, group);
    w.par_chunks(cols.max(1))
        .flat_map_iter(|row| row.chunks(group).map(min_max).collect::<Vec<_>>())
        .collect()
}

//! A quantized weight matrix in compc's canonical "W-form": `rows` output channels by
//! `cols` input features, row-major, each row split into groups of `group` consecutive
//! columns that share a scale and a zero point (techniques.md §0 and §1.1). Every method
//! produces one; the lowerings turn it into QDQ or MatMulNBits tensors.

use super::grid::{dequant, Grid};
use rayon::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Columns per group (`cols` for per-channel quantization).
    pub group: usize,
    pub grid: Grid,
    /// Unsigned codes, `rows × cols`.
    pub codes: Vec<u8>,
    /// `rows × groups()`.
    pub scales: Vec<f32>,
    /// Zero points as unsigned codes, `rows × groups()`.
    pub zeros: Vec<u8>,
}

impl QMatrix {
    /// An all-zero matrix of the given geometry (`group` 0 means per-channel).
    pub fn zeroed(rows: usize, cols: usize, group: usize, grid: Grid) -> QMatrix {
        let group = effective_group(cols, group);
        let ng = cols.div_ceil(group.max(1));
        QMatrix {
            rows,
            cols,
            group,
            grid,
            codes: vec![0; rows * cols],
            scales: vec![1.0; rows * ng],
            zeros: vec![0; rows * ng],
        }
    }

    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.group.max(1))
    }

    /// True when one scale covers a whole row.
    pub fn per_channel(&self) -> bool {
        self.group >= self.cols
    }

    /// The dequantized matrix `(q − z)·s`, W-form.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_into(&mut out);
        out
    }

    pub fn dequantize_into(&self, out: &mut [f32]) {
        let (cols, group, ng) = (self.cols, self.group.max(1), self.groups());
        out.par_chunks_mut(cols.max(1))
            .zip(self.codes.par_chunks(cols.max(1)))
            .enumerate()
            .for_each(|(r, (o, c))| {
                for (gi, (og, cg)) in o.chunks_mut(group).zip(c.chunks(group)).enumerate() {
                    let s = self.scales[r * ng + gi];
                    let z = self.zeros[r * ng + gi] as f32;
                    for (ov, &cv) in og.iter_mut().zip(cg) {
                        *ov = dequant(cv as f32, s, z);
                    }
                }
            });
    }

    /// Scales output channel `r` by `f` (an exact change of the dequantized row: codes and
    /// zero points stay, scales scale). AWQ uses it to fold into an already quantized
    /// preceding layer.
    pub fn scale_row(&mut self, r: usize, f: f32) {
        let ng = self.groups();
        for s in &mut self.scales[r * ng..(r + 1) * ng] {
            *s *= f;
        }
    }
}

/// Columns per group: `cols` for per-channel (0) or a group as wide as the row.
pub fn effective_group(cols: usize, group: usize) -> usize {
    if group == 0 || group >= cols {
        cols.max(1)
    } else {
        group
    }
}

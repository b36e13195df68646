//! Importance of the units of a group (techniques.md §2.6): a score per unit for every
//! member, reduced across members by their mean (Torch-Pruning's default).
//!
//! - `magnitude`: the L2 norm of the member's slice of the unit;
//! - `wanda`: `Σ |W_ij|·‖X_j‖₂` over the slice, with `‖X_j‖₂` the norm of the member's
//!   input feature j on the calibration data (for a consumer the feature is the unit
//!   itself);
//! - `taylor`: the second-order Taylor (OBD) estimate of the change of the consumers'
//!   outputs when the unit's input is set to zero, `Σ_c ‖W_{:,c}‖²·E[x_c²]`. Without a
//!   training loss the first-order term of the layer-wise reconstruction loss vanishes,
//!   so this is the leading term; producers do not enter it.

use super::depgraph::{Axis, Member};
use crate::prune::options::Importance;

/// A member's weight in W-form and its input's per-feature L2 norms and token count.
pub struct MemberData<'a> {
    pub w: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// `‖X_j‖₂` of the member's input features (calibrated importances).
    pub norms: Option<&'a [f64]>,
    pub tokens: u64,
}

/// Score of every unit of one member.
fn member_scores(m: &Member, d: &MemberData, units: usize, imp: Importance) -> Vec<f64> {
    let mut s = vec![0f64; units];
    let (rows, cols) = (d.rows, d.cols);
    for (u, su) in s.iter_mut().enumerate() {
        let idx: Vec<usize> = m.indices(u, units).collect();
        let mut acc = 0f64;
        match (m.axis, imp) {
            (Axis::Out, Importance::Magnitude) => {
                for &r in &idx {
                    for &x in &d.w[r * cols..(r + 1) * cols] {
                        acc += (x as f64).powi(2);
                    }
                }
                acc = acc.sqrt();
            }
            (Axis::In, Importance::Magnitude) => {
                for r in 0..rows {
                    for &c in &idx {
                        acc += (d.w[r * cols + c] as f64).powi(2);
                    }
                }
                acc = acc.sqrt();
            }
            (Axis::Out, Importance::Wanda) => {
                let n = d.norms.unwrap_or(&[]);
                for &r in &idx {
                    for (x, nj) in d.w[r * cols..(r + 1) * cols].iter().zip(n) {
                        acc += x.abs() as f64 * nj;
                    }
                }
            }
            (Axis::In, Importance::Wanda) => {
                let n = d.norms.unwrap_or(&[]);
                for r in 0..rows {
                    for &c in &idx {
                        acc += d.w[r * cols + c].abs() as f64 * n.get(c).copied().unwrap_or(0.0);
                    }
                }
            }
            (Axis::Out, Importance::Taylor) => {}
            (Axis::In, Importance::Taylor) => {
                let n = d.norms.unwrap_or(&[]);
                let t = d.tokens.max(1) as f64;
                for &c in &idx {
                    let col: f64 = (0..rows).map(|r| (d.w[r * cols + c] as f64).powi(2)).sum();
                    acc += col * n.get(c).map_or(0.0, |v| v * v / t);
                }
            }
        }
        *su = acc;
    }
    s
}

/// Mean over the members that score (taylor: the consumers) of their scores for each of
/// `units` units.
pub fn group_scores(
    members: &[Member],
    units: usize,
    data: &[MemberData],
    imp: Importance,
) -> Vec<f64> {
    let mut total = vec![0f64; units];
    let mut count = 0usize;
    for (m, d) in members.iter().zip(data) {
        if imp == Importance::Taylor && m.axis == Axis::Out {
            continue;
        }
        for (t, s) in total.iter_mut().zip(member_scores(m, d, units, imp)) {
            *t += s;
        }
        count += 1;
    }
    let c = count.max(1) as f64;
    total.iter().map(|t| t / c).collect()
}

/// The `k` lowest-scoring units, ascending by index. Ties go to the lower index.
pub fn lowest(scores: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut out: Vec<usize> = idx.into_iter().take(k).collect();
    out.sort_unstable();
    out
}

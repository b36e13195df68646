//! Token importance for GPTQ's Hessian (RSQ, techniques.md §4.9): tokens that receive
//! much attention matter more, so each calibration token's input row is weighted before
//! `H = 2XᵀX/N` is accumulated: `x_t ← √w_t · x_t`, hence `H = (2/N) Xᵀ diag(w) X`.
//!
//! "AttnCon" (attention concentration), RSQ's default: in the block a layer belongs to,
//! `r_t = Σ_heads Σ_queries A[query, t]`, the attention mass token t receives; per
//! sequence min-max normalised to `[R_MIN, R_MAX]` (the released script's 0.005 and 1)
//! and rescaled to mean 1 (`w_t = r_t·T/Σr`). Constant importance gives `w ≡ 1` exactly,
//! so the Hessian and the codes are GPTQ's own.
//!
//! `rotate{rsq=true}` asks for it by setting [`METADATA_KEY`] on the graph (not exported;
//! `compc.` keys never are); `quant{importance=...}` says it directly.

use crate::idioms::Idioms;
use compc_ir::{Graph, NodeId};
use compc_runtime::Tensor;
use std::collections::HashMap;

/// Graph metadata key through which `rotate{rsq=true}` requests weighted Hessians.
pub const METADATA_KEY: &str = "compc.gptq_token_importance";
pub const R_MIN: f64 = 0.005;
pub const R_MAX: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    None,
    AttnCon,
}

impl Importance {
    pub fn name(self) -> &'static str {
        match self {
            Importance::None => "none",
            Importance::AttnCon => "attncon",
        }
    }

    pub fn parse(s: &str) -> Option<Importance> {
        match s {
            "none" => Some(Importance::None),
            "attncon" => Some(Importance::AttnCon),
            _ => None,
        }
    }
}

/// The attention probabilities (softmax node) of the block linear `index` belongs to:
/// its own attention for q/k/v/o, otherwise the last attention before it, as long as it
/// comes before the last residual Add (an output head belongs to no block).
/// By position rather than by the MLP idiom, which an online Hadamard before the down
/// projection (after `rotate`) hides.
pub fn softmax_for(g: &Graph, idioms: &Idioms, index: usize) -> Option<NodeId> {
    if let Some(a) = idioms
        .attention
        .iter()
        .find(|a| [Some(a.q), Some(a.k), Some(a.v), a.o].contains(&Some(index)))
    {
        return Some(a.softmax);
    }
    let order = g.topo_order().ok()?;
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let at = *pos.get(&idioms.linears.get(index)?.node)?;
    // The last residual Add closes the last block (block idioms can miss an MLP that an
    // online Hadamard hides, and with it the block's last residual).
    let end = idioms
        .residuals
        .iter()
        .filter_map(|r| pos.get(&r.add))
        .max()?;
    if at > *end {
        return None;
    }
    idioms
        .attention
        .iter()
        .filter_map(|a| Some((*pos.get(&a.softmax)?, a.softmax)))
        .filter(|(p, _)| *p < at)
        .max()
        .map(|(_, s)| s)
}

/// AttnCon weights `[batch · tokens]` (mean 1 within each sequence) from attention
/// probabilities whose first axis is the batch and whose last axis is the key token,
/// e.g. `[batch, heads, queries, keys]`.
pub fn attncon(probs: &Tensor, batch: usize, tokens: usize) -> Result<Vec<f32>, String> {
    let p = probs.f32_cow();
    let per = batch * tokens;
    if per == 0 || !p.len().is_multiple_of(per) || probs.shape().last() != Some(&tokens) {
        return Err(format!(
            "attention probabilities of shape {:?} do not match {batch} sequences of {tokens} tokens",
            probs.shape()
        ));
    }
    let rows = p.len() / per; // heads × queries
    let mut out = Vec::with_capacity(per);
    for seq in p.chunks_exact(rows * tokens) {
        let mut r = vec![0f64; tokens];
        for row in seq.chunks_exact(tokens) {
            for (acc, &v) in r.iter_mut().zip(row) {
                *acc += v as f64;
            }
        }
        out.extend(normalise(&r).into_iter().map(|w| w as f32));
    }
    Ok(out)
}

/// Min-max to `[R_MIN, R_MAX]`, then mean 1. Constant `r` gives exactly 1 everywhere.
pub fn normalise(r: &[f64]) -> Vec<f64> {
    let (lo, hi) = r
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if r.is_empty() || hi <= lo || !(hi - lo).is_finite() {
        return vec![1.0; r.len()];
    }
    let scaled: Vec<f64> = r
        .iter()
        .map(|&v| R_MIN + (v - lo) / (hi - lo) * (R_MAX - R_MIN))
        .collect();
    let mean = scaled.iter().sum::<f64>() / r.len() as f64;
    scaled.iter().map(|v| v / mean).collect()
}

/// Multiplies row t of `x` (rows of `n`) by `√w_t`.
pub fn weight_rows(x: &mut [f32], n: usize, w: &[f32]) -> Result<(), String> {
    if n == 0 || x.len() != w.len() * n {
        return Err(format!(
            "{} activation values are not {} rows of {n}",
            x.len(),
            w.len()
        ));
    }
    for (row, &wt) in x.chunks_exact_mut(n).zip(w) {
        if wt != 1.0 {
            let s = wt.sqrt();
            row.iter_mut().for_each(|v| *v *= s);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_importance_is_plain_gptq() {
        // Uniform attention: every key receives the same mass ⇒ w ≡ 1 exactly.
        let (b, h, t) = (2, 3, 5);
        let probs = Tensor::from_f32(vec![b, h, t, t], vec![1.0 / t as f32; b * h * t * t]);
        let w = attncon(&probs, b, t).unwrap();
        assert_eq!(w, vec![1.0; b * t]);
        let mut x: Vec<f32> = (0..b * t * 4).map(|i| i as f32 * 0.37 - 3.0).collect();
        let before = x.clone();
        weight_rows(&mut x, 4, &w).unwrap();
        assert_eq!(x, before);
    }

    #[test]
    fn attention_mass_received_decides_the_weights() {
        // One sequence, one head, causal: token 0 is seen by every query (an attention
        // sink), token 2 only by itself.
        let t = 3;
        let a = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.6, 0.2, 0.2];
        let probs = Tensor::from_f32(vec![1, 1, t, t], a.to_vec());
        let w = attncon(&probs, 1, t).unwrap();
        // r = [2.1, 0.7, 0.2] → min-max [1, (0.5/1.9)·0.995 + 0.005, 0.005], mean 1.
        let r1 = R_MIN + 0.5 / 1.9 * (R_MAX - R_MIN);
        let mean = (1.0 + r1 + R_MIN) / 3.0;
        let want = [1.0 / mean, r1 / mean, R_MIN / mean];
        for (g, e) in w.iter().zip(want) {
            assert!((*g as f64 - e).abs() < 1e-6, "{w:?} vs {want:?}");
        }
        let mean_w: f32 = w.iter().sum::<f32>() / 3.0;
        assert!((mean_w - 1.0).abs() < 1e-6);
        let mut x = vec![1.0f32; 6];
        weight_rows(&mut x, 2, &w).unwrap();
        assert!((x[0] - w[0].sqrt()).abs() < 1e-7 && (x[5] - w[2].sqrt()).abs() < 1e-7);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let probs = Tensor::from_f32(vec![1, 1, 3, 3], vec![0.0; 9]);
        assert!(attncon(&probs, 1, 4).is_err());
        assert!(weight_rows(&mut [0.0; 5], 2, &[1.0, 1.0]).is_err());
    }
}

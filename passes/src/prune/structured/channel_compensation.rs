//! `compensate=true` for `prune{structured=channels}`: every consumer of a removed
//! channel — a dense conv or a Gemm reading it — gets the channel's mean contribution on
//! the calibration data added to its bias, `b_o += Σ_{c removed} E[x_c]·Σ_k W[o, c, k]`
//! (k over the kernel's positions). For a 1×1 conv or a linear this is exact when the
//! channel is constant on the data; for a wider kernel it is the correction of interior
//! positions (where the kernel overlaps zero padding it adds a little too much).
//!
//! A conv without a bias whose output only feeds an inference BatchNormalization (the
//! usual conv–BN pair) gets no new bias: the correction goes into the BN's running mean
//! instead, `mean_o −= Δ_o`, which is the same function with no extra parameters.
//!
//! The corrections are computed and added on the unpruned graph, before any group
//! shrinks: a consumer whose own output channels are pruned too then has its new bias (or
//! the BN its mean) sliced with its filters.

use super::apply::{const_tensor, set_const};
use super::channel_importance::InputNorms;
use super::channels::{ChannelGroup, ChannelMember};
use crate::pass::PassError;
use compc_ir::{Graph, NodeId, Op, ValueRef};
use compc_runtime::Tensor;
use std::collections::BTreeMap;

fn invalid(s: String) -> PassError {
    PassError::Invalid(s)
}

/// The consumer of a removed channel and the index of the channel on its input.
fn consumer(m: &ChannelMember) -> Option<(NodeId, usize)> {
    match *m {
        ChannelMember::ConvIn(n) | ChannelMember::LinearIn(n) => Some((n, 0)),
        ChannelMember::ConvInAt { node, offset } => Some((node, offset)),
        _ => None,
    }
}

/// What a consumer's bias gains per unit of mean on one input channel.
enum Column {
    /// One value per output.
    Gains(Vec<f64>),
    /// The consumer's bias cannot carry a correction, and why.
    Unsupported(String),
}

/// `W[o, i]` summed over the kernel, for every output o, of a conv weight `[O, I, k…]` or
/// a Gemm weight (`[O, I]` with transB, `[I, O]` without), scaled by Gemm's `alpha/beta`
/// (the bias of a Gemm is multiplied by beta).
fn input_column(g: &Graph, node: NodeId, i: usize) -> Result<Column, PassError> {
    let n = g.node(node);
    let w = n
        .input(1)
        .ok_or_else(|| invalid(format!("{} has no weight", n.describe(node))))?;
    let (_, t) = const_tensor(g, w)?;
    let shape = t.shape().to_vec();
    let inputs = match (&n.op, shape.as_slice()) {
        (Op::Gemm(a), [_, i]) if a.trans_b => Some(*i),
        (Op::Gemm(_), [i, _]) => Some(*i),
        (Op::Conv(_), [_, i, ..]) => Some(*i),
        (Op::Gemm(_) | Op::Conv(_), _) => Some(0),
        _ => None,
    };
    if inputs.is_some_and(|count| i >= count) {
        return Err(invalid(format!(
            "{}: its weight {shape:?} has no input channel {i}",
            n.describe(node)
        )));
    }
    let x = t.f32_cow();
    let column = match &n.op {
        Op::Conv(_) => {
            let (o, inp) = (shape[0], shape[1]);
            let per: usize = shape[2..].iter().product::<usize>().max(1);
            (0..o)
                .map(|r| {
                    let at = (r * inp + i) * per;
                    x[at..at + per].iter().map(|&v| v as f64).sum()
                })
                .collect()
        }
        Op::Gemm(a) => {
            if a.beta == 0.0 {
                return Ok(Column::Unsupported(
                    "its Gemm has beta = 0, so a bias cannot carry it".into(),
                ));
            }
            let scale = (a.alpha / a.beta) as f64;
            if a.trans_b {
                (0..shape[0])
                    .map(|r| scale * x[r * shape[1] + i] as f64)
                    .collect()
            } else {
                x[i * shape[1]..(i + 1) * shape[1]]
                    .iter()
                    .map(|&v| scale * v as f64)
                    .collect()
            }
        }
        other => {
            return Ok(Column::Unsupported(format!(
                "`{}` has no bias input",
                other.name()
            )))
        }
    };
    Ok(Column::Gains(column))
}

/// The inference BatchNormalization that is the only reader of `node`'s output, when
/// `node` has no bias of its own and the BN's running mean is a constant with one value
/// per output: the mean can then absorb a bias correction exactly.
fn folding_batch_norm(g: &Graph, node: NodeId, outputs: usize) -> Option<(NodeId, ValueRef)> {
    if g.node(node).input(2).is_some() {
        return None;
    }
    let out = ValueRef::new(node, 0);
    let [(bn, 0)] = g.value_users(out)[..] else {
        return None;
    };
    if g.outputs.iter().any(|o| o.value == out) {
        return None;
    }
    let inference = matches!(&g.node(bn).op, Op::BatchNorm(a) if !a.training_mode);
    let mean = g.node(bn).input(3)?;
    let values = g.const_weight(mean)?.numel();
    (inference && values == outputs as u64).then_some((bn, mean))
}

/// Adds each removed channel's mean contribution to its consumers' biases; returns a
/// note for every consumer it could not correct.
pub fn compensate(
    g: &mut Graph,
    plans: &[(ChannelGroup, Vec<usize>)],
    norms: &InputNorms,
) -> Result<Vec<String>, PassError> {
    let mut deltas: BTreeMap<NodeId, Vec<f64>> = BTreeMap::new();
    let mut notes = Vec::new();
    for (grp, removed) in plans {
        for (node, offset) in grp.members.iter().filter_map(consumer) {
            let mean = norms.mean(g, node).ok_or_else(|| {
                invalid(format!(
                    "{}: no calibration statistics of its input",
                    g.node(node).describe(node)
                ))
            })?;
            for &c in removed {
                let i = offset + c;
                let column = match input_column(g, node, i)? {
                    Column::Gains(col) => col,
                    Column::Unsupported(why) => {
                        notes.push(format!(
                            "did not compensate {}: {why}",
                            g.node(node).describe(node)
                        ));
                        break;
                    }
                };
                let m = mean.get(i).copied().ok_or_else(|| {
                    invalid(format!(
                        "{}: its input has no channel {i}",
                        g.node(node).describe(node)
                    ))
                })?;
                let d = deltas
                    .entry(node)
                    .or_insert_with(|| vec![0.0; column.len()]);
                for (dr, w) in d.iter_mut().zip(&column) {
                    *dr += m * w;
                }
            }
        }
    }
    for (node, delta) in deltas {
        let outputs = delta.len();
        if let Some((bn, mean)) = folding_batch_norm(g, node, outputs) {
            let (_, t) = const_tensor(g, mean)?;
            let mean: Vec<f32> = t
                .f32_cow()
                .iter()
                .zip(&delta)
                .map(|(m, d)| (*m as f64 - d) as f32)
                .collect();
            let name = format!("{}_compensated_mean", g.node(bn).name);
            set_const(g, bn, 3, &Tensor::from_f32(t.shape().to_vec(), mean), &name)?;
            continue;
        }
        let (bias, shape): (Vec<f32>, Vec<usize>) = match g.node(node).input(2) {
            Some(b) => {
                let (_, t) = const_tensor(g, b)?;
                if t.numel() != outputs {
                    notes.push(format!(
                        "did not compensate {}: its bias has {} values for {outputs} outputs",
                        g.node(node).describe(node),
                        t.numel()
                    ));
                    continue;
                }
                (t.f32_cow().to_vec(), t.shape().to_vec())
            }
            None => (vec![0.0; outputs], vec![outputs]),
        };
        let sum: Vec<f32> = bias
            .iter()
            .zip(&delta)
            .map(|(b, d)| (*b as f64 + d) as f32)
            .collect();
        let name = format!("{}_compensated_bias", g.node(node).name);
        let t = Tensor::from_f32(shape, sum);
        set_const(g, node, 2, &t, &name)?;
    }
    Ok(notes)
}

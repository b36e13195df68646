//! Importance of convolution output channels (techniques.md §2.6) for
//! `prune{structured=channels}`: a score per channel for every member of the group that
//! holds weights of it ([`ChannelMember::scored`]), averaged over those members.
//!
//! - `magnitude`: the L2 norm of the member's slice of the channel;
//! - `wanda`: `Σ |w|·‖x_i‖₂` over the slice, where `x_i` is the input channel of the
//!   member that weight `w` multiplies — the channel itself for a consumer (a conv's or a
//!   linear's input slice, a depthwise filter), each input channel of the filter for a
//!   producer conv — and `‖x_i‖₂` is its norm over the calibration samples and positions;
//! - `taylor`: `‖W_{:,c}‖²·E[x_c²]` of every consumer (with a depthwise filter counted as
//!   one): the second-order (OBD) estimate of the change of the consumer's output when
//!   channel c is zero. Producers do not enter it, as for MLP units
//!   ([`super::importance`]).
//!
//! The activation-aware scores need the input of every scored member on the calibration
//! data ([`InputNorms`]); a conv's channels are its axis 1, a linear's features its last.

use super::apply::const_tensor;
use super::channels::{ChannelGroup, ChannelMember};
use super::channels_rewrite::take_axis;
use crate::calib::runner::{CalibRunner, DEFAULT_BATCH};
use crate::calib::InputStats;
use crate::context::CalibData;
use crate::pass::PassError;
use crate::prune::options::Importance;
use compc_ir::{Graph, NodeId, Op, ValueRef};

fn invalid(s: String) -> PassError {
    PassError::Invalid(s)
}

/// `(node, axis, offset)` of the weight slice a scored member holds: channel c is index
/// `offset + c` along `axis` of the node's weight (input 1).
pub fn weight_slice(g: &Graph, m: &ChannelMember) -> Option<(NodeId, usize, usize)> {
    match *m {
        ChannelMember::ConvOut(n) | ChannelMember::Depthwise(n) => Some((n, 0, 0)),
        ChannelMember::ConvIn(n) => Some((n, 1, 0)),
        ChannelMember::ConvInAt { node, offset } => Some((node, 1, offset)),
        ChannelMember::LinearIn(n) => match &g.node(n).op {
            Op::Gemm(a) if a.trans_b => Some((n, 1, 0)),
            _ => Some((n, 0, 0)),
        },
        _ => None,
    }
}

/// Per-channel statistics of the inputs of scored members over the calibration data.
pub struct InputNorms {
    /// Each distinct input, the axis of its channels, and their statistics (made on the
    /// first batch, which gives the channel count).
    inputs: Vec<(ValueRef, usize, Option<InputStats>)>,
}

/// The member's node and the axis of its input that holds the features its weight reads.
fn input_axis(g: &Graph, m: &ChannelMember) -> Option<(NodeId, usize)> {
    let (node, _, _) = weight_slice(g, m)?;
    let x = g.node(node).input(0)?;
    let rank = g.value_type(x)?.shape.rank()?;
    match m {
        ChannelMember::LinearIn(_) => Some((node, rank.checked_sub(1)?)),
        _ => Some((node, 1)),
    }
}

impl InputNorms {
    /// Runs the model on `calib` once, keeping the statistics of every scored member's
    /// input in `groups`.
    pub fn collect(
        g: &Graph,
        calib: &CalibData,
        groups: &[&ChannelGroup],
    ) -> Result<InputNorms, PassError> {
        let mut inputs: Vec<(ValueRef, usize, Option<InputStats>)> = Vec::new();
        for m in groups.iter().flat_map(|grp| &grp.members) {
            let Some((node, axis)) = input_axis(g, m) else {
                continue;
            };
            let Some(x) = g.node(node).input(0) else {
                continue;
            };
            if !inputs.iter().any(|(v, _, _)| *v == x) {
                inputs.push((x, axis, None));
            }
        }
        let values: Vec<ValueRef> = inputs.iter().map(|(v, _, _)| *v).collect();
        let mut runner = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
        runner.run(g, &values, None, &mut |_, outs| {
            for ((_, axis, stats), t) in inputs.iter_mut().zip(&outs) {
                let what = "structured pruning statistics";
                let Some(&n) = t.shape().get(*axis) else {
                    return Err(invalid(format!(
                        "{what}: a calibration tensor of shape {:?} has no axis {axis}",
                        t.shape()
                    )));
                };
                stats
                    .get_or_insert_with(|| InputStats::new(n, false))
                    .add_along(t, *axis, what)?;
            }
            Ok(())
        })?;
        Ok(InputNorms { inputs })
    }

    fn stats(&self, g: &Graph, node: NodeId) -> Option<&InputStats> {
        let x = g.node(node).input(0)?;
        self.inputs
            .iter()
            .find(|(v, _, _)| *v == x)
            .and_then(|(_, _, s)| s.as_ref())
    }

    /// Sums of squares per input channel of `node`, and positions per channel.
    fn of(&self, g: &Graph, node: NodeId) -> Option<(&[f64], u64)> {
        self.stats(g, node).map(|s| (s.sq_sum(), s.tokens))
    }

    /// Mean of every input channel of `node`.
    pub fn mean(&self, g: &Graph, node: NodeId) -> Option<Vec<f64>> {
        self.stats(g, node).map(InputStats::mean)
    }
}

/// Per-channel importance of the group: the mean over the members that score it.
/// `norms` is needed for `wanda` and `taylor`.
pub fn channel_scores(
    g: &Graph,
    grp: &ChannelGroup,
    importance: Importance,
    norms: Option<&InputNorms>,
) -> Result<Vec<f64>, PassError> {
    let mut total = vec![0f64; grp.channels];
    let mut count = 0usize;
    for m in grp.members.iter().filter(|m| m.scored()) {
        let Some((node, axis, offset)) = weight_slice(g, m) else {
            continue;
        };
        let describe = || g.node(node).describe(node);
        let v = g
            .node(node)
            .input(1)
            .ok_or_else(|| invalid(format!("{} has no weight", describe())))?;
        let (_, t) = const_tensor(g, v)?;
        let shape = t.shape().to_vec();
        let w = t.f32_cow();
        let slice = |c: usize| take_axis(&w, &shape, axis, &[offset + c]);
        let (sq, seen): (&[f64], u64) = if importance == Importance::Magnitude {
            (&[], 0)
        } else {
            norms.and_then(|n| n.of(g, node)).ok_or_else(|| {
                invalid(format!(
                    "{}: no calibration statistics of its input (importance={} needs them)",
                    describe(),
                    importance.name()
                ))
            })?
        };
        let norm = |i: usize| -> Result<f64, PassError> {
            sq.get(i).map(|s| s.sqrt()).ok_or_else(|| {
                invalid(format!(
                    "{}: its input has {} channels, the weight reads channel {i}",
                    describe(),
                    sq.len()
                ))
            })
        };
        let producer = matches!(m, ChannelMember::ConvOut(_));
        match importance {
            Importance::Magnitude => {
                for (c, tc) in total.iter_mut().enumerate() {
                    *tc += slice(c)
                        .iter()
                        .map(|&v| (v as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                }
            }
            Importance::Wanda if producer => {
                // Filter c: element j multiplies input channel j / (kernel size).
                let per: usize = shape[2..].iter().product::<usize>().max(1);
                for (c, tc) in total.iter_mut().enumerate() {
                    for (j, x) in slice(c).iter().enumerate() {
                        *tc += x.abs() as f64 * norm(j / per)?;
                    }
                }
            }
            Importance::Wanda => {
                for (c, tc) in total.iter_mut().enumerate() {
                    let l1: f64 = slice(c).iter().map(|x| x.abs() as f64).sum();
                    *tc += l1 * norm(offset + c)?;
                }
            }
            Importance::Taylor if producer => continue,
            Importance::Taylor => {
                let positions = seen.max(1) as f64;
                for (c, tc) in total.iter_mut().enumerate() {
                    let l2: f64 = slice(c).iter().map(|&x| (x as f64).powi(2)).sum();
                    *tc += l2 * norm(offset + c)?.powi(2) / positions;
                }
            }
        }
        count += 1;
    }
    Ok(total.iter().map(|t| t / count.max(1) as f64).collect())
}

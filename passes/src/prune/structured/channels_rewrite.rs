//! `prune{structured=channels}`: removes the least important output channels of every
//! prunable convolution group ([`super::channels`]) and shrinks every member, so the
//! exported model really has fewer parameters and FLOPs.
//!
//! Importance ([`super::channel_importance`]) is the mean over the group's weight members
//! (producer filters, consumer input slices, depthwise filters, linear columns) of the
//! channel's magnitude, Wanda or Taylor score. BatchNorm and other per-channel constants
//! are sliced but do not score (a zero filter is an unused channel whatever BatchNorm
//! then adds: the consumers read it with zero weights).

use super::apply::{const_tensor, kept, reinfer, report_parameters, set_const};
use super::channel_compensation::compensate;
use super::channel_importance::{channel_scores, weight_slice, InputNorms};
use super::channels::{channel_groups, ChannelGroup, ChannelMember};
use super::importance::lowest;
use crate::context::PassContext;
use crate::ledger::GraphStats;
use crate::options::PassOptions;
use crate::pass::{Changed, PassError};
use crate::prune::options::StructuredConfig;
use crate::quant::options::glob_match;
use compc_ir::{Graph, NodeId, Op, ValueRef, Weight};
use compc_runtime::Tensor;
use std::collections::{BTreeMap, BTreeSet};

fn invalid(s: String) -> PassError {
    PassError::Invalid(s)
}

/// Keeps `keep` along `axis` of a row-major tensor of `shape`.
pub fn take_axis(x: &[f32], shape: &[usize], axis: usize, keep: &[usize]) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let at = (o * n + k) * inner;
            out.extend_from_slice(&x[at..at + inner]);
        }
    }
    out
}

/// Replaces the constant at input `slot` of `node` by its slice along `axis`.
fn slice_input(
    g: &mut Graph,
    node: NodeId,
    slot: usize,
    axis: usize,
    keep: &[usize],
) -> Result<(), PassError> {
    let v = g.node(node).input(slot).ok_or_else(|| {
        invalid(format!(
            "{} has no input {slot}",
            g.node(node).describe(node)
        ))
    })?;
    let (w, t) = const_tensor(g, v)?;
    let mut shape = t.shape().to_vec();
    if axis >= shape.len() {
        return Err(invalid(format!(
            "{}: input {slot} has no axis {axis}",
            g.node(node).describe(node)
        )));
    }
    let data = take_axis(&t.f32_cow(), &shape, axis, keep);
    shape[axis] = keep.len();
    let nt = Tensor::from_f32_as(w.dtype, shape, data)?;
    set_const(g, node, slot, &nt, &w.name)
}

/// Removes every channel not in `keep` from every member of the group. Convs reading a
/// channel Concat may read several groups at different offsets: their removed input
/// indices are collected in `behind_concat` and sliced once, after every group.
pub fn shrink_group(
    g: &mut Graph,
    grp: &ChannelGroup,
    keep: &[usize],
    behind_concat: &mut BTreeMap<NodeId, BTreeSet<usize>>,
) -> Result<(), PassError> {
    for m in &grp.members {
        match *m {
            ChannelMember::ConvOut(n) | ChannelMember::Depthwise(n) => {
                slice_input(g, n, 1, 0, keep)?;
                if g.node(n).input(2).is_some() {
                    slice_input(g, n, 2, 0, keep)?;
                }
                if let (ChannelMember::Depthwise(_), Op::Conv(c)) = (m, &mut g.node_mut(n).op) {
                    c.group = keep.len() as i64;
                }
            }
            ChannelMember::ConvIn(n) => slice_input(g, n, 1, 1, keep)?,
            ChannelMember::ConvInAt { node, offset } => {
                let gone = behind_concat.entry(node).or_default();
                gone.extend(
                    (0..grp.channels)
                        .filter(|c| keep.binary_search(c).is_err())
                        .map(|c| offset + c),
                );
            }
            ChannelMember::BatchNorm(n) => {
                for slot in 1..=4 {
                    slice_input(g, n, slot, 0, keep)?;
                }
            }
            ChannelMember::Const { reader, slot, axis } => {
                slice_input(g, reader, slot, axis, keep)?
            }
            ChannelMember::LinearIn(n) => {
                let (_, axis, _) = weight_slice(g, m).unwrap_or((n, 0, 0));
                slice_input(g, n, 1, axis, keep)?;
            }
            ChannelMember::ReshapeTarget(n) => {
                let name = g.node(n).name.clone();
                let s =
                    Weight::from_i64(format!("{name}_shape"), vec![2], &[-1, keep.len() as i64])
                        .map_err(|e| invalid(e.to_string()))?;
                let c = g.add_const(s);
                g.set_input(n, 1, Some(ValueRef::new(c, 0)));
            }
        }
    }
    Ok(())
}

/// A name for a conv in notes: its weight's name, else the node's.
fn conv_name(g: &Graph, id: NodeId) -> String {
    g.node(id)
        .input(1)
        .and_then(|w| g.const_weight(w))
        .map(|w| w.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| g.node(id).describe(id))
}

fn skipped(g: &Graph, grp: &ChannelGroup, skip: &[String]) -> Option<String> {
    grp.members.iter().find_map(|m| {
        let (n, _, _) = weight_slice(g, m)?;
        let name = conv_name(g, n);
        let node = &g.node(n).name;
        skip.iter()
            .any(|p| glob_match(p, &name) || glob_match(p, node))
            .then_some(name)
    })
}

pub fn run(
    g: &mut Graph,
    cx: &mut PassContext,
    skip: &[String],
    s: &StructuredConfig,
) -> Result<Changed, PassError> {
    let found = channel_groups(g).map_err(invalid)?;
    if found.is_empty() {
        return Err(invalid(
            "structured=channels: no convolution with a constant kernel and group=1".into(),
        ));
    }
    let mut chosen: Vec<(ChannelGroup, usize)> = Vec::new();
    for (conv, grp) in found {
        let name = conv_name(g, conv);
        let grp = match grp {
            Ok(grp) => grp,
            Err(why) => {
                cx.note(format!(
                    "left the output channels of `{name}` as they are: {why}"
                ));
                continue;
            }
        };
        if let Some(m) = skipped(g, &grp, skip) {
            cx.note(format!(
                "left the channel group of `{name}` as it is: skip= matches its member `{m}`"
            ));
            continue;
        }
        let k = (s.ratio * grp.channels as f64).round() as usize;
        if k == 0 {
            continue;
        }
        if k >= grp.channels {
            return Err(invalid(format!(
                "channels of `{name}`: removing {k} of {} would remove all of them",
                grp.channels
            )));
        }
        chosen.push((grp, k));
    }
    if chosen.is_empty() {
        cx.note("nothing to remove (ratio 0, or no group can be pruned)");
        return Ok(Changed::No);
    }
    let norms = if s.importance.needs_calibration() || s.compensate {
        let calib = cx.calibration(&format!(
            "importance={}{}",
            s.importance.name(),
            if s.compensate {
                " with compensate=true"
            } else {
                ""
            }
        ))?;
        let groups: Vec<&ChannelGroup> = chosen.iter().map(|(grp, _)| grp).collect();
        Some(InputNorms::collect(g, calib, &groups)?)
    } else {
        None
    };
    let mut plans: Vec<(ChannelGroup, Vec<usize>)> = Vec::new();
    for (grp, k) in chosen {
        let scores = channel_scores(g, &grp, s.importance, norms.as_ref())?;
        plans.push((grp, lowest(&scores, k)));
    }
    let before = GraphStats::of(g);
    if let (true, Some(norms)) = (s.compensate, &norms) {
        for note in compensate(g, &plans, norms)? {
            cx.note(note);
        }
    }
    let mut behind_concat: BTreeMap<NodeId, BTreeSet<usize>> = BTreeMap::new();
    for (grp, removed) in &plans {
        let keep = kept(grp.channels, 1, removed);
        shrink_group(g, grp, &keep, &mut behind_concat)?;
        let writers: Vec<String> = grp.writers.iter().map(|&w| conv_name(g, w)).collect();
        let shown: Vec<String> = removed.iter().take(16).map(|u| u.to_string()).collect();
        cx.note(format!(
            "channels of {}: removed {} of {} by {} importance (channels {}{}); {} members",
            writers
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(" + "),
            removed.len(),
            grp.channels,
            s.importance.name(),
            shown.join(", "),
            if removed.len() > 16 { ", …" } else { "" },
            grp.members.len()
        ));
    }
    for (node, gone) in &behind_concat {
        let inputs = g
            .node(*node)
            .input(1)
            .and_then(|w| g.const_weight(w))
            .and_then(|w| w.dims.get(1).copied())
            .ok_or_else(|| {
                invalid(format!(
                    "{} has no constant kernel",
                    g.node(*node).describe(*node)
                ))
            })? as usize;
        let keep: Vec<usize> = (0..inputs).filter(|i| !gone.contains(i)).collect();
        slice_input(g, *node, 1, 1, &keep)?;
    }
    reinfer(g)?;
    let removed_dead = crate::dce::remove_dead_nodes(g)?;
    let after = GraphStats::of(g);
    report_parameters(cx, &before, &after, "");
    cx.touch(plans.len() + removed_dead);
    Ok(Changed::Yes)
}

/// Checks the options structured=channels and structured=hidden (`what`) support:
/// hidden-size pruning has no bias compensation (its writers add into the stream that
/// every later block reads).
pub fn check_options(o: &PassOptions, what: &str) -> Result<(), String> {
    if o.bool("compensate") == Some(true) && what != "channels" {
        return Err("compensate=true applies to structured=mlp|heads|both|channels".into());
    }
    Ok(())
}

//! Dependency groups of convolution output channels (DepGraph, Fang et al., CVPR 2023;
//! techniques.md §2.6), for `prune{structured=channels}`.
//!
//! The slots are `(value, axis 1)` of NCHW tensors. A search starts at the output of a
//! dense convolution (`group = 1`) and follows channel c through
//! - ops that keep the channel index: BatchNorm (its four per-channel inputs join), unary
//!   activations, Clip, HardSigmoid, pooling, Resize, reductions over spatial axes;
//! - depthwise convolutions (one filter per channel: the filter and its bias join, the
//!   `group` attribute shrinks);
//! - element-wise binary ops: an operand with the channel on its aligned axis joins the
//!   group (backward: a residual Add pulls in the other writer; the squeeze-excite Mul
//!   pulls in the excitation conv), a broadcast operand (channel dim 1, e.g. a spatial
//!   gate) does not;
//! - Flatten / Reshape to `[N, C]` when the spatial size is 1 (channel c is feature c of
//!   the classifier after a global pool).
//!
//! It ends at the input axis of the dense convolutions and linears reading the channel,
//! and at a Concat along the channel axis whose result only dense convolutions read:
//! there channel c of the i-th input is channel `offset_i + c` of the result (the index
//! map of a Concat), so the group holds those convs' input slices at that offset. Anything
//! else (a Concat read by other ops, a graph output, a reshape that mixes channels with
//! space) refuses the group, naming the node: it is left dense and the pass says why.

use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Graph, NodeId, Op, ValueRef};
use std::collections::{BTreeSet, VecDeque};

/// One tensor slice that goes when a channel goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelMember {
    /// A dense conv writing the channel: weight axis 0 and its bias.
    ConvOut(NodeId),
    /// A dense conv reading the channel: weight axis 1.
    ConvIn(NodeId),
    /// A dense conv reading the channel through a channel Concat: weight axis 1 at
    /// `offset + c`.
    ConvInAt { node: NodeId, offset: usize },
    /// A depthwise conv carrying the channel: weight axis 0, bias, `group`.
    Depthwise(NodeId),
    /// BatchNormalization: scale, bias, mean and variance.
    BatchNorm(NodeId),
    /// A constant operand of an element-wise op, sliced along `axis`.
    Const {
        reader: NodeId,
        slot: usize,
        axis: usize,
    },
    /// A Gemm/MatMul reading the flattened channels (one feature per channel).
    LinearIn(NodeId),
    /// A Reshape to `[N, C]` whose constant target names the channel count.
    ReshapeTarget(NodeId),
}

impl ChannelMember {
    /// Whether the member holds weights that score the channel (magnitude importance).
    pub fn scored(&self) -> bool {
        matches!(
            self,
            ChannelMember::ConvOut(_)
                | ChannelMember::ConvIn(_)
                | ChannelMember::ConvInAt { .. }
                | ChannelMember::Depthwise(_)
                | ChannelMember::LinearIn(_)
        )
    }
}

#[derive(Clone, Debug)]
pub struct ChannelGroup {
    /// The dense convs whose output channels seed the group, in search order.
    pub writers: Vec<NodeId>,
    pub channels: usize,
    /// Sorted, without duplicates.
    pub members: Vec<ChannelMember>,
}

fn dims(g: &Graph, v: ValueRef) -> Option<Vec<Option<u64>>> {
    Some(
        g.value_type(v)?
            .shape
            .dims()?
            .iter()
            .map(|d| d.known())
            .collect(),
    )
}

fn channel_dim(g: &Graph, v: ValueRef) -> Option<u64> {
    dims(g, v)?.get(1).copied().flatten()
}

/// Whether all axes after the channel are known to be 1 (a globally pooled map).
fn spatial_is_one(g: &Graph, v: ValueRef) -> bool {
    dims(g, v).is_some_and(|d| d.len() >= 2 && d[2..].iter().all(|x| *x == Some(1)))
}

/// A dense convolution with a constant kernel.
pub fn is_dense_conv(g: &Graph, id: NodeId) -> bool {
    match &g.node(id).op {
        Op::Conv(c) => {
            c.group == 1
                && g.node(id)
                    .input(1)
                    .is_some_and(|w| g.const_weight(w).is_some())
        }
        _ => false,
    }
}

/// A depthwise convolution over `channels` (one `[1, k…]` filter per channel).
fn is_depthwise(g: &Graph, id: NodeId, channels: u64) -> bool {
    let Op::Conv(c) = &g.node(id).op else {
        return false;
    };
    let w = g.node(id).input(1).and_then(|w| g.const_weight(w));
    c.group as u64 == channels
        && w.is_some_and(|w| w.dims.first() == Some(&channels) && w.dims.get(1) == Some(&1))
}

/// Ops whose data input's channel c is the output's channel c, and which data inputs
/// (slots) carry it.
fn carrier_slots(g: &Graph, id: NodeId) -> Option<&'static [usize]> {
    match &g.node(id).op {
        Op::Unary(k) if !matches!(k, UnaryOp::Not | UnaryOp::IsNaN) => Some(&[0]),
        Op::Clip
        | Op::HardSigmoid(_)
        | Op::LeakyRelu(_)
        | Op::Elu(_)
        | Op::Gelu(_)
        | Op::Cast(_)
        | Op::Dropout(_)
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Resize(_) => Some(&[0]),
        Op::Reduce(_, r) => {
            let rank = g.node(id).input(0).and_then(|v| dims(g, v))?.len() as i64;
            // Opset 18 moved the axes from an attribute to a constant input.
            let axes = match &r.axes {
                Some(a) => a.clone(),
                None => g
                    .node(id)
                    .input(1)
                    .and_then(|a| g.const_weight(a))?
                    .to_i64_vec()
                    .ok()?,
            };
            let spatial = !axes.is_empty()
                && axes
                    .iter()
                    .all(|&a| (if a < 0 { a + rank } else { a }) >= 2);
            spatial.then_some(&[0])
        }
        _ => None,
    }
}

fn is_binary(op: &Op) -> bool {
    matches!(
        op,
        Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div)
    )
}

/// Where operand `inp` of an element-wise op with output rank `out_rank` has the
/// channel: `Some(axis)` if it carries all `channels`, `None` if it broadcasts over them.
fn operand_axis(
    g: &Graph,
    inp: ValueRef,
    out_rank: usize,
    channels: u64,
) -> Result<Option<usize>, String> {
    let d = dims(g, inp).ok_or("an operand of unknown rank")?;
    let Some(axis) = (1 + d.len()).checked_sub(out_rank) else {
        return Ok(None);
    };
    match d.get(axis).copied().flatten() {
        Some(1) => Ok(None),
        Some(c) if c == channels => Ok(Some(axis)),
        _ => Err("an operand of another channel count".into()),
    }
}

struct Search<'g> {
    g: &'g Graph,
    channels: u64,
    members: BTreeSet<ChannelMember>,
    writers: Vec<NodeId>,
    seen: BTreeSet<(ValueRef, bool)>,
    queue: VecDeque<(ValueRef, bool)>,
}

impl Search<'_> {
    fn refuse(&self, id: NodeId, why: &str) -> String {
        format!(
            "its channels reach {} ({why})",
            self.g.node(id).describe(id)
        )
    }

    /// Other operands of the element-wise op `id` (whose operand `from` is on the channel).
    fn operands(&mut self, id: NodeId, from: Option<usize>) -> Result<(), String> {
        let g = self.g;
        let out_rank = dims(g, ValueRef::new(id, 0))
            .ok_or_else(|| self.refuse(id, "a result of unknown rank"))?
            .len();
        for (slot, inp) in g.node(id).inputs().iter().enumerate() {
            let Some(inp) = *inp else { continue };
            if Some(slot) == from {
                continue;
            }
            let axis =
                operand_axis(g, inp, out_rank, self.channels).map_err(|e| self.refuse(id, &e))?;
            match (axis, g.const_weight(inp).is_some()) {
                (None, _) => {}
                (Some(axis), true) => {
                    self.members.insert(ChannelMember::Const {
                        reader: id,
                        slot,
                        axis,
                    });
                }
                (Some(1), false) => self.queue.push_back((inp, true)),
                (Some(_), false) => {
                    return Err(self.refuse(id, "a computed operand of lower rank"));
                }
            }
        }
        Ok(())
    }

    fn backward(&mut self, v: ValueRef) -> Result<(), String> {
        let g = self.g;
        let id = v.node;
        let node = g.node(id);
        if is_dense_conv(g, id) {
            self.members.insert(ChannelMember::ConvOut(id));
            if !self.writers.contains(&id) {
                self.writers.push(id);
            }
            return Ok(());
        }
        let data = node.input(0);
        if is_depthwise(g, id, self.channels) {
            self.members.insert(ChannelMember::Depthwise(id));
        } else if matches!(node.op, Op::BatchNorm(_)) {
            self.members.insert(ChannelMember::BatchNorm(id));
        } else if is_binary(&node.op) {
            return self.operands(id, None);
        } else if carrier_slots(g, id).is_none() {
            return Err(self.refuse(id, "an op that does not keep the channel index"));
        }
        let data = data.ok_or_else(|| self.refuse(id, "no data input"))?;
        self.queue.push_back((data, true));
        Ok(())
    }

    fn forward(&mut self, v: ValueRef) -> Result<(), String> {
        let g = self.g;
        if g.outputs.iter().any(|o| o.value == v) {
            return Err(self.refuse(v.node, "a graph output"));
        }
        for (user, slot) in g.value_users(v) {
            let slot = slot as usize;
            let node = g.node(user);
            let out = ValueRef::new(user, 0);
            if is_dense_conv(g, user) && slot == 0 {
                self.members.insert(ChannelMember::ConvIn(user));
                continue;
            }
            if slot == 0 && is_depthwise(g, user, self.channels) {
                self.members.insert(ChannelMember::Depthwise(user));
            } else if slot == 0 && matches!(node.op, Op::BatchNorm(_)) {
                self.members.insert(ChannelMember::BatchNorm(user));
            } else if is_binary(&node.op) {
                self.operands(user, Some(slot))?;
            } else if matches!(node.op, Op::Flatten(ref f) if f.axis == 1)
                && slot == 0
                && spatial_is_one(g, v)
            {
                // After global pooling, channel c is feature c of the flattened vector.
            } else if matches!(node.op, Op::Reshape(_)) && slot == 0 && spatial_is_one(g, v) {
                let target = node
                    .input(1)
                    .and_then(|s| g.const_weight(s))
                    .and_then(|w| w.to_i64_vec().ok());
                match target.as_deref() {
                    Some([n, c]) if (*n == -1 || *n == 0) && *c as u64 == self.channels => {
                        self.members.insert(ChannelMember::ReshapeTarget(user));
                    }
                    _ => return Err(self.refuse(user, "a reshape that is not [N, C]")),
                }
            } else if slot == 0 && self.is_linear_reader(user, v) {
                self.members.insert(ChannelMember::LinearIn(user));
                continue;
            } else if carrier_slots(g, user).is_some_and(|s| s.contains(&slot)) {
                // Keeps the channel index: follow its output.
            } else if let Op::Concat(c) = &node.op {
                self.concat(user, slot, c.axis)?;
                continue;
            } else {
                return Err(self.refuse(user, "an op that does not keep the channel index"));
            }
            self.queue.push_back((out, false));
        }
        Ok(())
    }

    /// Input `slot` of the Concat `id` is on the channel: its channels sit at an offset
    /// in the result, which only dense convs may read.
    fn concat(&mut self, id: NodeId, slot: usize, axis: i64) -> Result<(), String> {
        let g = self.g;
        let out = ValueRef::new(id, 0);
        let rank = dims(g, out).map_or(0, |d| d.len()) as i64;
        if (if axis < 0 { axis + rank } else { axis }) != 1 {
            return Err(self.refuse(id, "a Concat along another axis"));
        }
        let mut offset = 0usize;
        for inp in &g.node(id).inputs()[..slot] {
            let c = inp
                .and_then(|v| channel_dim(g, v))
                .ok_or_else(|| self.refuse(id, "a Concat input of unknown channel count"))?;
            offset += c as usize;
        }
        if g.outputs.iter().any(|o| o.value == out) {
            return Err(self.refuse(id, "a Concat that is a graph output"));
        }
        for (reader, rslot) in g.value_users(out) {
            if rslot != 0 || !is_dense_conv(g, reader) {
                return Err(self.refuse(
                    id,
                    &format!(
                        "a Concat read by {}: only convolutions reading a channel Concat \
                         are followed",
                        g.node(reader).describe(reader)
                    ),
                ));
            }
            self.members.insert(ChannelMember::ConvInAt {
                node: reader,
                offset,
            });
        }
        Ok(())
    }

    /// A Gemm (no transA) or MatMul with a constant 2-D weight reading `[N, C]` features.
    fn is_linear_reader(&self, id: NodeId, v: ValueRef) -> bool {
        let g = self.g;
        let rank2 = dims(g, v).is_some_and(|d| d.len() == 2);
        let w = g.node(id).input(1).and_then(|w| g.const_weight(w));
        let w2 = w.is_some_and(|w| w.dims.len() == 2);
        match &g.node(id).op {
            Op::Gemm(a) => rank2 && w2 && !a.trans_a,
            Op::MatMul => rank2 && w2,
            _ => false,
        }
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some((v, backward)) = self.queue.pop_front() {
            if !self.seen.insert((v, backward)) {
                continue;
            }
            if channel_dim(self.g, v) != Some(self.channels) {
                return Err(self.refuse(
                    v.node,
                    &format!("its axis 1 is not the {} channels", self.channels),
                ));
            }
            if backward {
                self.backward(v)?;
            }
            self.forward(v)?;
        }
        Ok(())
    }
}

/// The group of the output channels of the dense conv `conv`, or why it cannot be pruned.
pub fn channel_group(g: &Graph, conv: NodeId) -> Result<ChannelGroup, String> {
    let out = ValueRef::new(conv, 0);
    let channels = channel_dim(g, out).ok_or("its output channel count is not known")?;
    let mut s = Search {
        g,
        channels,
        members: BTreeSet::new(),
        writers: vec![],
        seen: BTreeSet::new(),
        queue: VecDeque::from([(out, true)]),
    };
    s.run()?;
    if !s.members.iter().any(|m| {
        matches!(
            m,
            ChannelMember::ConvIn(_) | ChannelMember::ConvInAt { .. } | ChannelMember::LinearIn(_)
        )
    }) {
        return Err("no conv or linear reads its channels".into());
    }
    Ok(ChannelGroup {
        writers: s.writers,
        channels: channels as usize,
        members: s.members.into_iter().collect(),
    })
}

/// A dense conv with its channel group, or why its channels cannot be pruned.
pub type ConvGroup = (NodeId, Result<ChannelGroup, String>);

/// Every dense conv in topological order, with its group or why it has none. A conv
/// already in an earlier group (a second writer of a residual stream) is not repeated.
pub fn channel_groups(g: &Graph) -> Result<Vec<ConvGroup>, String> {
    let order = g.topo_order().map_err(|e| e.to_string())?;
    let mut out: Vec<ConvGroup> = Vec::new();
    let mut covered: BTreeSet<NodeId> = BTreeSet::new();
    for id in order {
        if !is_dense_conv(g, id) || covered.contains(&id) {
            continue;
        }
        // A single channel (a spatial gate's logit) can never be removed.
        if channel_dim(g, ValueRef::new(id, 0)) == Some(1) {
            continue;
        }
        let grp = channel_group(g, id);
        if let Ok(grp) = &grp {
            covered.extend(grp.writers.iter().copied());
        }
        out.push((id, grp));
    }
    Ok(out)
}

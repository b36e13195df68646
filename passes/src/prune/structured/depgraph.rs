//! Dependency groups of coupled dimensions (DepGraph, Fang et al., CVPR 2023;
//! techniques.md §2.6). A group lists every tensor slice that must go when one unit
//! goes:
//!
//! - an MLP hidden unit: found by a search over `(value, last axis)` slots from the up
//!   projection's output. Element-wise ops (activations, the gate's `Mul`, casts) carry
//!   the channel through and pull in their other operands: another linear's output (the
//!   gate's rows), a constant with that many channels (sliced), or a broadcast scalar
//!   (left alone). The search ends at the input axis of the linears reading the channel
//!   (the down projection's columns). Anything else on the way (a norm, a reshape, a
//!   graph output, a residual add) couples the channel with dimensions this pass does
//!   not prune, and the group is refused with the node named.
//! - an attention head: rows `h·d … (h+1)·d − 1` of q, k and v (and biases) and the same
//!   columns of o. With GQA, KV head j is coupled with its `H/KV` query heads, so the
//!   unit is a KV group. The reshapes splitting q/k/v into heads and merging the context
//!   back are recorded so their head count can be rewritten.
//!
//! The residual stream (every writer's output axis and every reader's input axis, norms,
//! embeddings) forms one giant group: the MLP search stops there, and `structured=hidden`
//! ([`super::hidden`]) prunes it as a whole.

use crate::idioms::{Attention, Idioms};
use crate::pass::PassError;
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Graph, NodeId, Op, ValueRef};
use std::collections::{BTreeSet, HashMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Output features (rows of W, entries of the bias).
    Out,
    /// Input features (columns of W).
    In,
}

/// One linear's slice of the group: unit `u` owns `width` entries along `axis`, in
/// `parts` equal blocks; block `i` of unit `u` starts at `(u + i·units)·width/parts`. With
/// one part that is `[u·width, (u+1)·width)`; several parts describe query heads under
/// `Tile`-repeated KV heads, where KV head j serves query heads j, j + KV, j + 2·KV, ….
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub linear: usize,
    pub axis: Axis,
    pub width: usize,
    pub parts: usize,
}

impl Member {
    /// The indices of unit `u` (of `units`) along the member's axis, ascending.
    pub fn indices(&self, u: usize, units: usize) -> impl Iterator<Item = usize> {
        let part = self.width / self.parts.max(1);
        (0..self.parts.max(1)).flat_map(move |i| {
            let start = (u + i * units) * part;
            start..start + part
        })
    }
}

/// A constant operand of an element-wise op on the group's channels, sliced along its
/// last axis (`width` elements per unit).
#[derive(Clone, Debug, PartialEq)]
pub struct ConstMember {
    pub reader: NodeId,
    pub slot: usize,
    pub width: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// Hidden units of `Idioms::mlps[i]`.
    Mlp(usize),
    /// Heads (KV groups) of `Idioms::attention[i]`.
    Heads(usize),
}

#[derive(Clone, Debug)]
pub struct Group {
    pub kind: GroupKind,
    /// Units that can be removed (hidden units, or KV groups of heads).
    pub units: usize,
    pub members: Vec<Member>,
    pub consts: Vec<ConstMember>,
    /// Reshapes whose target shape names the head count: (node, axis from the end).
    pub reshapes: Vec<(NodeId, usize)>,
    /// Query heads per unit (1 for MLP groups and plain MHA).
    pub heads_per_unit: usize,
}

impl Group {
    /// Members on the producer side (whose output axis carries the unit).
    pub fn producers(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.axis == Axis::Out)
    }

    /// Members on the consumer side (whose input axis carries the unit).
    pub fn consumers(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.axis == Axis::In)
    }
}

fn last_dim(g: &Graph, v: ValueRef) -> Option<u64> {
    g.value_type(v)?.shape.dims()?.last()?.known()
}

fn numel_known(g: &Graph, v: ValueRef) -> Option<u64> {
    let d = g.value_type(v)?.shape.as_known()?;
    Some(d.iter().product())
}

/// Ops through which channel c of the input is channel c of the output.
fn carries_channel(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(k) if !matches!(k, UnaryOp::Not | UnaryOp::IsNaN)
    ) || matches!(
        op,
        Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow)
            | Op::Gelu(_)
            | Op::Cast(_)
            | Op::Dropout(_)
    )
}

/// The MLP's hidden-unit group, by a search over channel slots from its up projection.
pub fn mlp_group(g: &Graph, idioms: &Idioms, mi: usize) -> Result<Group, PassError> {
    let mlp = &idioms.mlps[mi];
    let up = &idioms.linears[mlp.up];
    let channels = up.out_features.ok_or_else(|| {
        PassError::Invalid(format!(
            "mlp[{mi}]: the up projection's output size is not known"
        ))
    })?;
    let by_output: HashMap<ValueRef, usize> = idioms
        .linears
        .iter()
        .enumerate()
        .map(|(i, l)| (l.output, i))
        .collect();
    let by_node: HashMap<NodeId, usize> = idioms
        .linears
        .iter()
        .enumerate()
        .map(|(i, l)| (l.node, i))
        .collect();
    // A 1×1-convolution MLP (a squeeze-excitation block, say) keeps its hidden units on
    // the channel axis, which `structured=channels` prunes.
    let hint = if matches!(g.node(up.node).op, Op::Conv(_)) {
        "; its up projection is a convolution: structured=channels prunes convolution channels"
    } else {
        ""
    };
    let refuse = |id: NodeId, why: &str| {
        PassError::Invalid(format!(
            "mlp[{mi}]: its hidden units reach {} ({why}); cannot prune them{hint}",
            g.node(id).describe(id)
        ))
    };
    let mut members: Vec<Member> = Vec::new();
    let mut consts: Vec<ConstMember> = Vec::new();
    let mut seen: BTreeSet<ValueRef> = BTreeSet::new();
    // Values on the channel axis still to expand forward (their users) and backward
    // (their producer).
    let mut queue: VecDeque<(ValueRef, bool)> = VecDeque::new();
    queue.push_back((up.output, true));
    let add_member = |members: &mut Vec<Member>, m: Member| {
        if !members.contains(&m) {
            members.push(m);
        }
    };
    while let Some((v, backward)) = queue.pop_front() {
        if !seen.insert(v) {
            continue;
        }
        if last_dim(g, v) != Some(channels) {
            return Err(refuse(
                v.node,
                &format!("its last axis is not the {channels} hidden units"),
            ));
        }
        if g.outputs.iter().any(|o| o.value == v) {
            return Err(refuse(v.node, "a graph output"));
        }
        if backward {
            if let Some(&li) = by_output.get(&v) {
                if idioms.linears[li].out_features != Some(channels) {
                    return Err(refuse(v.node, "a linear of another width"));
                }
                add_member(
                    &mut members,
                    Member {
                        linear: li,
                        axis: Axis::Out,
                        width: 1,
                        parts: 1,
                    },
                );
            } else {
                let node = g.node(v.node);
                if !carries_channel(&node.op) {
                    return Err(refuse(v.node, "not an element-wise op"));
                }
                for (slot, inp) in node.inputs().iter().enumerate() {
                    let Some(inp) = *inp else { continue };
                    if slot > 0 && matches!(node.op, Op::Cast(_) | Op::Dropout(_)) {
                        continue;
                    }
                    if g.const_weight(inp).is_some() {
                        match numel_known(g, inp) {
                            Some(1) => {}
                            _ if last_dim(g, inp) == Some(channels) => consts.push(ConstMember {
                                reader: v.node,
                                slot,
                                width: 1,
                            }),
                            _ => return Err(refuse(v.node, "a constant operand of another shape")),
                        }
                    } else {
                        queue.push_back((inp, true));
                    }
                }
            }
        }
        for (user, slot) in g.value_users(v) {
            let slot = slot as usize;
            if let Some(&li) = by_node.get(&user) {
                if slot == 0 && idioms.linears[li].input == v {
                    add_member(
                        &mut members,
                        Member {
                            linear: li,
                            axis: Axis::In,
                            width: 1,
                            parts: 1,
                        },
                    );
                    continue;
                }
            }
            // The bias add inside a linear (its output is after the add) is the linear.
            if by_output.contains_key(&ValueRef::new(user, 0))
                && idioms
                    .linears
                    .iter()
                    .any(|l| l.bias.is_some_and(|b| b.0 == user))
            {
                continue;
            }
            let node = g.node(user);
            if !carries_channel(&node.op) {
                return Err(refuse(user, "not an element-wise op"));
            }
            let out = ValueRef::new(user, 0);
            // Other operands join the group (backward), the result carries it on.
            for (s2, inp) in node.inputs().iter().enumerate() {
                let Some(inp) = *inp else { continue };
                if s2 == slot || seen.contains(&inp) {
                    continue;
                }
                if g.const_weight(inp).is_some() {
                    match numel_known(g, inp) {
                        Some(1) => {}
                        _ if last_dim(g, inp) == Some(channels) => consts.push(ConstMember {
                            reader: user,
                            slot: s2,
                            width: 1,
                        }),
                        _ => return Err(refuse(user, "a constant operand of another shape")),
                    }
                } else {
                    queue.push_back((inp, true));
                }
            }
            queue.push_back((out, false));
        }
    }
    consts.sort_by_key(|c| (c.reader, c.slot));
    consts.dedup();
    if !members.iter().any(|m| m.axis == Axis::In) {
        return Err(PassError::Invalid(format!(
            "mlp[{mi}]: no linear reads its hidden units"
        )));
    }
    Ok(Group {
        kind: GroupKind::Mlp(mi),
        units: channels as usize,
        members,
        consts,
        reshapes: vec![],
        heads_per_unit: 1,
    })
}

/// The Reshape a linear's output goes through to be split into heads.
pub fn split_reshape(g: &Graph, v: ValueRef, what: &str, ai: usize) -> Result<NodeId, PassError> {
    let mut cur = v;
    for _ in 0..4 {
        // Shape readers (batch and sequence length for the reshape) are not coupled.
        let users: Vec<(NodeId, u32)> = g
            .value_users(cur)
            .into_iter()
            .filter(|(u, _)| !matches!(g.node(*u).op, Op::Shape(_)))
            .collect();
        let [(u, 0)] = users.as_slice() else {
            return Err(PassError::Invalid(format!(
                "attention[{ai}]: the {what} projection's output has {} readers; expected one Reshape into heads",
                users.len()
            )));
        };
        match g.node(*u).op {
            Op::Reshape(_) => return Ok(*u),
            Op::Cast(_) | Op::Unary(UnaryOp::Identity) => cur = ValueRef::new(*u, 0),
            _ => {
                return Err(PassError::Invalid(format!(
                    "attention[{ai}]: the {what} projection feeds {}, not a Reshape into heads",
                    g.node(*u).describe(*u)
                )))
            }
        }
    }
    Err(PassError::Invalid(format!(
        "attention[{ai}]: no Reshape into heads after the {what} projection"
    )))
}

/// The Reshape merging the heads back before the output projection.
pub fn merge_reshape(g: &Graph, v: ValueRef, ai: usize) -> Result<NodeId, PassError> {
    let mut cur = v;
    for _ in 0..4 {
        let node = g.node(cur.node);
        match node.op {
            Op::Reshape(_) => return Ok(cur.node),
            Op::Cast(_) | Op::Unary(UnaryOp::Identity) => {
                cur = node.input(0).ok_or_else(|| {
                    PassError::Invalid(format!("attention[{ai}]: a cast without input"))
                })?
            }
            _ => break,
        }
    }
    Err(PassError::Invalid(format!(
        "attention[{ai}]: the output projection does not read a Reshape merging the heads"
    )))
}

/// Whether K reaches the attention scores through `Tile` along the head axis (repeats
/// `[1, r, 1, 1]`, as compc's `gqa` writes it), so that query head p reads KV head
/// `p mod KV`, rather than through an interleaving repeat (torch's `repeat_kv`:
/// Unsqueeze, Expand, Reshape), where it reads KV head `p / r`.
fn tiled_kv(g: &Graph, a: &Attention) -> bool {
    let mut cur = g.node(a.scores_matmul).input(1);
    for _ in 0..8 {
        let Some(v) = cur else { return false };
        let node = g.node(v.node);
        match node.op {
            Op::Tile => {
                let rank4 = node.input(0).and_then(|x| g.value_type(x)?.shape.rank()) == Some(4);
                let reps = node
                    .input(1)
                    .and_then(|r| g.const_weight(r)?.to_i64_vec().ok());
                return rank4 && matches!(reps.as_deref(), Some([1, r, 1, 1]) if *r > 1);
            }
            Op::Transpose(_)
            | Op::Cast(_)
            | Op::Unary(UnaryOp::Identity)
            | Op::Reshape(_)
            | Op::Expand
            | Op::Unsqueeze(_) => cur = node.input(0),
            _ => return false,
        }
    }
    false
}

/// The head group of an attention: q/k/v rows and o columns, units = KV groups.
pub fn head_group(g: &Graph, idioms: &Idioms, ai: usize) -> Result<Group, PassError> {
    let a: &Attention = &idioms.attention[ai];
    let (Some(h), Some(kv), Some(d), Some(o)) = (a.num_heads, a.num_kv_heads, a.head_dim, a.o)
    else {
        return Err(PassError::Invalid(format!(
            "attention[{ai}]: head count, KV head count, head size or output projection not recognised"
        )));
    };
    let (h, kv, d) = (h as usize, kv as usize, d as usize);
    if kv == 0 || h % kv != 0 {
        return Err(PassError::Invalid(format!(
            "attention[{ai}]: {h} query heads do not split into {kv} KV heads"
        )));
    }
    let r = h / kv;
    // Query heads of one KV head: contiguous under an interleaving repeat, strided by the
    // KV head count under `Tile`.
    let parts = if tiled_kv(g, a) { r } else { 1 };
    let mut members = vec![Member {
        linear: a.q,
        axis: Axis::Out,
        width: r * d,
        parts,
    }];
    for li in [a.k, a.v] {
        members.push(Member {
            linear: li,
            axis: Axis::Out,
            width: d,
            parts: 1,
        });
    }
    members.push(Member {
        linear: o,
        axis: Axis::In,
        width: r * d,
        parts,
    });
    let lin = |i: usize| &idioms.linears[i];
    let mut reshapes = Vec::new();
    for (li, what) in [(a.q, "q"), (a.k, "k"), (a.v, "v")] {
        // `[.., heads, head_dim]`: the head axis is second from the end.
        reshapes.push((split_reshape(g, lin(li).output, what, ai)?, 2));
    }
    // `[.., heads·head_dim]`.
    reshapes.push((merge_reshape(g, lin(o).input, ai)?, 1));
    Ok(Group {
        kind: GroupKind::Heads(ai),
        units: kv,
        members,
        consts: vec![],
        reshapes,
        heads_per_unit: r,
    })
}

//! The extent of a transformer block in the graph: every node on a path from the block
//! input (the stream its attention residual reads) to the block output (its last
//! residual add), and the values the block reads from outside besides that input.

use crate::idioms::Idioms;
use crate::pass::PassError;
use compc_ir::{Dim, Graph, NodeId, Op, Shape, ValueRef};
use std::collections::{BTreeSet, HashSet};

#[derive(Clone, Debug)]
pub struct Region {
    pub input: ValueRef,
    pub output: ValueRef,
    /// Nodes of the block (descendants of the input and ancestors of the output).
    pub nodes: BTreeSet<NodeId>,
    /// Non-constant values from outside the block (not the input) whose shape carries the
    /// sequence axis, with those axes: position-dependent tensors (RoPE cos/sin, the
    /// causal mask) that must be gathered with the routed tokens.
    pub positional: Vec<(ValueRef, Vec<usize>)>,
    /// Reshapes of the block whose target shape comes from outside (computed from the
    /// full sequence), with the output axes that are the sequence: their entries become k.
    pub outside_shapes: Vec<(NodeId, Vec<usize>)>,
    /// The model width `d` of the stream, when known.
    pub width: Option<u64>,
}

/// The sequence dim of a `[batch, seq, d]` stream value.
pub fn seq_dim(g: &Graph, v: ValueRef) -> Result<Dim, PassError> {
    match g.value_type(v).map(|t| &t.shape) {
        Some(Shape::Ranked(d)) if d.len() == 3 && d[1] != Dim::Unknown => Ok(d[1].clone()),
        other => Err(PassError::Invalid(format!(
            "mod-routers: the block input {} must be [batch, seq, d] with a named or known seq, got {other:?}",
            g.node(v.node).describe(v.node)
        ))),
    }
}

pub fn find(g: &Graph, idioms: &Idioms, block: usize) -> Result<Region, PassError> {
    let b = &idioms.blocks[block];
    let (Some(&first), Some(&last)) = (b.residuals.first(), b.residuals.last()) else {
        return Err(PassError::Invalid(format!(
            "mod-routers: block[{block}] has no residual add"
        )));
    };
    let input = idioms.residuals[first].stream;
    let output = ValueRef::new(idioms.residuals[last].add, 0);
    // Forward from the input's readers.
    let mut fwd: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = g.value_users(input).into_iter().map(|(n, _)| n).collect();
    while let Some(n) = stack.pop() {
        if fwd.insert(n) {
            stack.extend(g.users(n).into_iter().map(|(u, _)| u));
        }
    }
    // Backward from the output, within the forward set.
    let mut nodes = BTreeSet::new();
    let mut stack = vec![output.node];
    while let Some(n) = stack.pop() {
        if !fwd.contains(&n) || !nodes.insert(n) {
            continue;
        }
        stack.extend(g.node(n).inputs().iter().flatten().map(|v| v.node));
    }
    if !nodes.contains(&output.node) {
        return Err(PassError::Invalid(format!(
            "mod-routers: block[{block}]: its output does not depend on its input"
        )));
    }
    // Nothing outside may read the block's intermediate values.
    for &n in &nodes {
        for (u, _) in g.users(n) {
            if !nodes.contains(&u) && n != output.node {
                return Err(PassError::Invalid(format!(
                    "mod-routers: block[{block}]: {} is read outside the block by {}; the block cannot be skipped per token",
                    g.node(n).describe(n),
                    g.node(u).describe(u)
                )));
            }
        }
        if n != output.node && g.outputs.iter().any(|o| o.value.node == n) {
            return Err(PassError::Invalid(format!(
                "mod-routers: block[{block}]: {} is a graph output",
                g.node(n).describe(n)
            )));
        }
    }
    let seq = seq_dim(g, input)?;
    let mut positional: Vec<(ValueRef, Vec<usize>)> = Vec::new();
    for &n in &nodes {
        for v in g.node(n).inputs().iter().flatten() {
            if *v == input || nodes.contains(&v.node) || g.const_weight(*v).is_some() {
                continue;
            }
            if positional.iter().any(|(p, _)| p == v) {
                continue;
            }
            let axes: Vec<usize> = match g.value_type(*v).map(|t| &t.shape) {
                Some(Shape::Ranked(d)) => d
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x == seq)
                    .map(|(i, _)| i)
                    .collect(),
                _ => {
                    return Err(PassError::Invalid(format!(
                        "mod-routers: block[{block}] reads {} of unknown rank; cannot tell whether it depends on token positions",
                        g.node(v.node).describe(v.node)
                    )))
                }
            };
            if !axes.is_empty() {
                positional.push((*v, axes));
                continue;
            }
            let int_valued = g.value_type(*v).is_some_and(|t| t.dtype.is_int());
            if int_valued {
                let ok = g
                    .value_users(*v)
                    .into_iter()
                    .filter(|(u, _)| nodes.contains(u))
                    .all(|(u, slot)| matches!(g.node(u).op, Op::Reshape(_)) && slot == 1);
                if !ok {
                    return Err(PassError::Invalid(format!(
                        "mod-routers: block[{block}] reads the integer value {} computed outside it; only reshape targets are rewritten for the routed token count",
                        g.node(v.node).describe(v.node)
                    )));
                }
            }
        }
    }
    let mut outside_shapes = Vec::new();
    for &n in &nodes {
        let node = g.node(n);
        let Some(t) = node.input(1) else { continue };
        if !matches!(node.op, Op::Reshape(_))
            || nodes.contains(&t.node)
            || g.const_weight(t).is_some()
        {
            continue;
        }
        let axes: Vec<usize> = match node.outputs.first().map(|t| &t.shape) {
            Some(Shape::Ranked(d)) => d.iter().enumerate().filter(|(_, x)| **x == seq).map(|(i, _)| i).collect(),
            _ => {
                return Err(PassError::Invalid(format!(
                    "mod-routers: block[{block}]: {} takes its shape from outside the block and its result has no known rank",
                    node.describe(n)
                )))
            }
        };
        if !axes.is_empty() {
            outside_shapes.push((n, axes));
        }
    }
    let width = match g.value_type(input).map(|t| &t.shape) {
        Some(Shape::Ranked(d)) => d.get(2).and_then(|x| x.known()),
        _ => None,
    };
    Ok(Region {
        input,
        output,
        nodes,
        positional,
        outside_shapes,
        width,
    })
}

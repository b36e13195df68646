//! Small helpers for matching patterns over the graph: who produces a value, stepping
//! through shape-only ops, reading small constants.

use compc_ir::op::BinaryOp;
use compc_ir::{Graph, Node, NodeId, Op, ValueRef};

/// The node producing `v`.
pub fn producer(g: &Graph, v: ValueRef) -> (NodeId, &Node) {
    (v.node, g.node(v.node))
}

/// The producer of input `i` of `id`, if that input is present.
pub fn input_producer(g: &Graph, id: NodeId, i: usize) -> Option<(NodeId, &Node)> {
    g.node(id).input(i).map(|v| producer(g, v))
}

/// Follows ops that only move data around (reshape, transpose, cast, identity...) back
/// to the first op that computes something.
pub fn skip_layout_ops(g: &Graph, mut v: ValueRef) -> ValueRef {
    loop {
        let node = g.node(v.node);
        match node.op {
            Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_)
            | Op::Flatten(_)
            | Op::Cast(_)
            | Op::Unary(compc_ir::op::UnaryOp::Identity)
            | Op::Dropout(_) => match node.input(0) {
                Some(i) => v = i,
                None => return v,
            },
            _ => return v,
        }
    }
}

/// Users of output 0 of `id`.
pub fn users0(g: &Graph, id: NodeId) -> Vec<NodeId> {
    g.value_users(ValueRef::new(id, 0))
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Small constant as f32 values (≤ 64 elements), e.g. an epsilon or an exponent.
pub fn small_const(g: &Graph, v: ValueRef) -> Option<Vec<f32>> {
    let w = g.const_weight(v)?;
    if w.numel() > 64 || w.is_missing() {
        return None;
    }
    w.to_f32_vec().ok()
}

/// A scalar constant (any single-element constant).
pub fn scalar_const(g: &Graph, v: ValueRef) -> Option<f32> {
    match small_const(g, v)?.as_slice() {
        [x] => Some(*x),
        _ => None,
    }
}

/// For a binary node with one constant operand: (the other operand, the constant).
pub fn split_const_operand(g: &Graph, id: NodeId) -> Option<(ValueRef, ValueRef)> {
    let node = g.node(id);
    let (a, b) = (node.input(0)?, node.input(1)?);
    match (g.const_weight(a).is_some(), g.const_weight(b).is_some()) {
        (false, true) => Some((a, b)),
        (true, false) => Some((b, a)),
        _ => None,
    }
}

pub fn is_binary(node: &Node, k: BinaryOp) -> bool {
    node.op == Op::Binary(k)
}

/// The operands of a binary node of kind `k`, as a pair.
pub fn binary_operands(g: &Graph, id: NodeId, k: BinaryOp) -> Option<(ValueRef, ValueRef)> {
    let node = g.node(id);
    if !is_binary(node, k) {
        return None;
    }
    Some((node.input(0)?, node.input(1)?))
}

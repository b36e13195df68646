//! Normalizations: fused `LayerNormalization`/`RMSNormalization`, and the decompositions
//! exporters write — RMSNorm as `x * 1/sqrt(mean(x²) + eps) * w` (Pow or Mul for the
//! square, Sqrt+Reciprocal or Sqrt+Div for the inverse), LayerNorm as the same over
//! `x - mean(x)` followed by a scale and a shift.

use super::matcher::{binary_operands, scalar_const, split_const_operand, users0};
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Graph, NodeId, Op, ValueRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    Layer,
    Rms,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Norm {
    pub kind: NormKind,
    /// True when written out as elementary ops rather than one norm op.
    pub decomposed: bool,
    pub input: ValueRef,
    pub scale: Option<ValueRef>,
    pub bias: Option<ValueRef>,
    pub epsilon: Option<f32>,
    /// Every node of the pattern (for a fused norm, just the one).
    pub nodes: Vec<NodeId>,
    pub output: ValueRef,
}

fn single_user(g: &Graph, id: NodeId) -> Option<NodeId> {
    match users0(g, id).as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}

/// `v = x²` as `Pow(x, 2)` or `Mul(x, x)`: returns x.
fn square_of(g: &Graph, v: ValueRef) -> Option<ValueRef> {
    let id = v.node;
    if let Some((x, e)) = binary_operands(g, id, BinaryOp::Pow) {
        return (scalar_const(g, e) == Some(2.0)).then_some(x);
    }
    let (a, b) = binary_operands(g, id, BinaryOp::Mul)?;
    (a == b).then_some(a)
}

fn is_mean_over_last(g: &Graph, id: NodeId) -> bool {
    match &g.node(id).op {
        Op::Reduce(compc_ir::op::ReduceOp::Mean, r) => {
            let rank = g
                .node(id)
                .input(0)
                .and_then(|v| g.value_type(v))
                .and_then(|t| t.shape.rank());
            let last_axes = match (&r.axes, rank) {
                (Some(a), Some(rank)) => a.len() == 1 && (a[0] == -1 || a[0] == rank as i64 - 1),
                (Some(a), None) => a == &[-1],
                _ => false,
            };
            r.keepdims && last_axes
        }
        _ => false,
    }
}

/// From the variance-like mean `m = mean(d²)`, match `+eps → sqrt → (1/·)·d` and return
/// (normalized value, epsilon, nodes). `d` is x for RMSNorm, x - mean(x) for LayerNorm.
fn normalize_tail(
    g: &Graph,
    mean_sq: NodeId,
    d: ValueRef,
) -> Option<(ValueRef, Option<f32>, Vec<NodeId>)> {
    let mut nodes = vec![mean_sq];
    let add = single_user(g, mean_sq)?;
    let (_, eps) =
        split_const_operand(g, add).filter(|_| g.node(add).op == Op::Binary(BinaryOp::Add))?;
    nodes.push(add);
    let sqrt = single_user(g, add)?;
    if g.node(sqrt).op != Op::Unary(UnaryOp::Sqrt) {
        return None;
    }
    nodes.push(sqrt);
    let next = single_user(g, sqrt)?;
    // `1 / sqrt(..)` written as a division is the reciprocal too.
    let is_reciprocal = match g.node(next).op {
        Op::Unary(UnaryOp::Reciprocal) => true,
        Op::Binary(BinaryOp::Div) => {
            g.node(next).input(0).and_then(|n| scalar_const(g, n)) == Some(1.0)
        }
        _ => false,
    };
    let out = match g.node(next).op {
        _ if is_reciprocal => {
            nodes.push(next);
            let mul = single_user(g, next)?;
            let (a, b) = binary_operands(g, mul, BinaryOp::Mul)?;
            let r = ValueRef::new(next, 0);
            if !((a == d && b == r) || (a == r && b == d)) {
                return None;
            }
            nodes.push(mul);
            ValueRef::new(mul, 0)
        }
        Op::Binary(BinaryOp::Div) => {
            let (a, _) = binary_operands(g, next, BinaryOp::Div)?;
            if a != d {
                return None;
            }
            nodes.push(next);
            ValueRef::new(next, 0)
        }
        _ => return None,
    };
    Some((out, scalar_const(g, eps), nodes))
}

/// An elementwise op of `kind` with a constant operand, as the only reader of `v`.
fn const_affine(g: &Graph, v: ValueRef, kind: BinaryOp) -> Option<(NodeId, ValueRef)> {
    let u = single_user(g, v.node)?;
    if g.node(u).op != Op::Binary(kind) {
        return None;
    }
    let (other, c) = split_const_operand(g, u)?;
    (other == v).then_some((u, c))
}

fn decomposed(g: &Graph, mean_sq: NodeId) -> Option<Norm> {
    if !is_mean_over_last(g, mean_sq) {
        return None;
    }
    let sq_in = g.node(mean_sq).input(0)?;
    let d = square_of(g, sq_in)?;
    // LayerNorm: d = x - mean(x).
    let (kind, input, mut pre) = match binary_operands(g, d.node, BinaryOp::Sub) {
        Some((x, m)) if is_mean_over_last(g, m.node) && g.node(m.node).input(0) == Some(x) => {
            (NormKind::Layer, x, vec![m.node, d.node])
        }
        _ => (NormKind::Rms, d, vec![]),
    };
    pre.push(sq_in.node);
    let (normed, epsilon, tail) = normalize_tail(g, mean_sq, d)?;
    let mut nodes = pre;
    nodes.extend(tail);
    let mut output = normed;
    let mut scale = None;
    let mut bias = None;
    if let Some((mul, c)) = const_affine(g, output, BinaryOp::Mul) {
        nodes.push(mul);
        scale = Some(c);
        output = ValueRef::new(mul, 0);
        if kind == NormKind::Layer {
            if let Some((add, c)) = const_affine(g, output, BinaryOp::Add) {
                nodes.push(add);
                bias = Some(c);
                output = ValueRef::new(add, 0);
            }
        }
    }
    Some(Norm {
        kind,
        decomposed: true,
        input,
        scale,
        bias,
        epsilon,
        nodes,
        output,
    })
}

pub fn find_norms(g: &Graph, order: &[NodeId]) -> Vec<Norm> {
    let mut out = Vec::new();
    for &id in order {
        let node = g.node(id);
        let fused = match &node.op {
            Op::LayerNorm(a) => Some((NormKind::Layer, a.epsilon)),
            Op::RmsNorm(a) => Some((NormKind::Rms, a.epsilon)),
            _ => None,
        };
        if let (Some((kind, eps)), Some(x)) = (fused, node.input(0)) {
            out.push(Norm {
                kind,
                decomposed: false,
                input: x,
                scale: node.input(1),
                bias: node.input(2),
                epsilon: Some(eps),
                nodes: vec![id],
                output: ValueRef::new(id, 0),
            });
            continue;
        }
        // A decomposed norm is anchored at the mean of squares; the other mean (LayerNorm's
        // mean(x)) is found from there, so each norm is reported once.
        if let Some(n) = decomposed(g, id) {
            out.push(n);
        }
    }
    out
}

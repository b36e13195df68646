//! Attention: anchored at each `Softmax`. Its input is the score product `Q·Kᵀ` (through
//! scaling, mask adds and layout ops); its reader is the product with V; each of Q, K, V
//! is traced back to a linear layer (through reshapes, transposes, scalings and RoPE's
//! rotate-half arithmetic), and the output projection is the linear reading `P·V` after
//! layout ops. Heads are read off the score tensor's shape `[batch, heads, q, k]`.

use super::linear::Linear;
use super::matcher::{skip_layout_ops, users0};
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Graph, NodeId, Op, ValueRef};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub softmax: NodeId,
    pub scores_matmul: NodeId,
    pub context_matmul: NodeId,
    /// Indices into the linear table.
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub o: Option<usize>,
    pub num_heads: Option<u64>,
    pub num_kv_heads: Option<u64>,
    pub head_dim: Option<u64>,
    /// Rotary embeddings were found on the Q/K paths.
    pub rope: bool,
    /// An additive mask or a `Where` sits between the scores and the softmax.
    pub masked: bool,
}

/// Traces `v` back to the output of a linear layer through ops that do not mix tokens:
/// layout ops, scaling by constants, and RoPE (q·cos + rotate_half(q)·sin). Returns the
/// linear's index and whether RoPE-like arithmetic was crossed.
fn trace_to_linear(
    g: &Graph,
    v: ValueRef,
    linears: &HashMap<ValueRef, usize>,
    depth: usize,
) -> Option<(usize, bool)> {
    let v = skip_layout_ops(g, v);
    if let Some(&i) = linears.get(&v) {
        return Some((i, false));
    }
    if depth == 0 {
        return None;
    }
    let node = g.node(v.node);
    let rope_step = matches!(
        node.op,
        Op::Concat(_)
            | Op::Unary(UnaryOp::Neg)
            | Op::Slice
            | Op::Split(_)
            | Op::Binary(BinaryOp::Add)
    );
    match node.op {
        // Grouped-query attention repeats KV heads for the query heads.
        Op::Tile | Op::Expand => trace_to_linear(g, node.input(0)?, linears, depth - 1),
        Op::Binary(BinaryOp::Mul | BinaryOp::Div | BinaryOp::Add | BinaryOp::Sub)
        | Op::Concat(_)
        | Op::Unary(UnaryOp::Neg)
        | Op::Slice
        | Op::Split(_) => {
            for inp in node.inputs().iter().flatten() {
                if g.const_weight(*inp).is_some() {
                    continue;
                }
                if let Some((i, rope)) = trace_to_linear(g, *inp, linears, depth - 1) {
                    return Some((i, rope || rope_step));
                }
            }
            None
        }
        _ => None,
    }
}

/// Walks from the softmax input back to the score MatMul, noting a mask on the way.
fn scores_matmul(g: &Graph, softmax: NodeId) -> Option<(NodeId, bool)> {
    let mut v = g.node(softmax).input(0)?;
    let mut masked = false;
    for _ in 0..8 {
        v = skip_layout_ops(g, v);
        let node = g.node(v.node);
        match node.op {
            Op::MatMul => return Some((v.node, masked)),
            Op::Binary(BinaryOp::Add) => {
                masked = true;
                // The scores are the operand that leads to a MatMul; try the first then the second.
                let a = node.input(0)?;
                let b = node.input(1)?;
                v = if leads_to_matmul(g, a) { a } else { b };
            }
            Op::Where => {
                masked = true;
                v = node
                    .input(2)
                    .filter(|x| leads_to_matmul(g, *x))
                    .or(node.input(1))?;
            }
            Op::Binary(BinaryOp::Mul | BinaryOp::Div) => {
                let a = node.input(0)?;
                v = if g.const_weight(a).is_some() {
                    node.input(1)?
                } else {
                    a
                };
            }
            _ => return None,
        }
    }
    None
}

fn leads_to_matmul(g: &Graph, v: ValueRef) -> bool {
    let mut v = v;
    for _ in 0..4 {
        v = skip_layout_ops(g, v);
        match g.node(v.node).op {
            Op::MatMul => return true,
            Op::Binary(BinaryOp::Mul | BinaryOp::Div) => match g.node(v.node).input(0) {
                Some(a) => v = a,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// The MatMul reading the softmax's probabilities (through casts/dropout).
fn context_matmul(g: &Graph, softmax: NodeId) -> Option<NodeId> {
    let mut cur = softmax;
    for _ in 0..4 {
        let users = users0(g, cur);
        let [u] = users.as_slice() else { return None };
        match g.node(*u).op {
            Op::MatMul => return Some(*u),
            Op::Cast(_) | Op::Dropout(_) | Op::Unary(UnaryOp::Identity) => cur = *u,
            _ => return None,
        }
    }
    None
}

pub fn find_attention(g: &Graph, order: &[NodeId], linears: &[Linear]) -> Vec<Attention> {
    let by_output: HashMap<ValueRef, usize> = linears
        .iter()
        .enumerate()
        .map(|(i, l)| (l.output, i))
        .collect();
    let by_input: HashMap<ValueRef, Vec<usize>> =
        linears
            .iter()
            .enumerate()
            .fold(HashMap::new(), |mut m, (i, l)| {
                m.entry(skip_layout_ops(g, l.input)).or_default().push(i);
                m
            });
    let mut out = Vec::new();
    for &id in order {
        if !matches!(g.node(id).op, Op::Softmax(_)) {
            continue;
        }
        let Some((sm, masked)) = scores_matmul(g, id) else {
            continue;
        };
        let Some(cm) = context_matmul(g, id) else {
            continue;
        };
        let (Some(qa), Some(kb), Some(vv)) = (
            g.node(sm).input(0),
            g.node(sm).input(1),
            g.node(cm).input(1),
        ) else {
            continue;
        };
        let (Some((q, rq)), Some((k, rk)), Some((v, _))) = (
            trace_to_linear(g, qa, &by_output, 10),
            trace_to_linear(g, kb, &by_output, 10),
            trace_to_linear(g, vv, &by_output, 10),
        ) else {
            continue;
        };
        // The output projection reads P·V after transposes/reshapes back to [b, s, d].
        let ctx = ValueRef::new(cm, 0);
        let o = by_input
            .get(&ctx)
            .and_then(|v| v.first().copied())
            .or_else(|| {
                linears
                    .iter()
                    .position(|l| skip_layout_ops(g, l.input) == ctx)
            });
        let scores_ty = g.node(sm).outputs.first();
        let num_heads = scores_ty
            .and_then(|t| t.shape.dims().map(|d| d.to_vec()))
            .filter(|d| d.len() == 4)
            .and_then(|d| d[1].known());
        let head_dim = match (linears[q].out_features, num_heads) {
            (Some(f), Some(h)) if h > 0 && f % h == 0 => Some(f / h),
            _ => None,
        };
        let num_kv_heads = match (linears[k].out_features, head_dim) {
            (Some(f), Some(hd)) if hd > 0 && f % hd == 0 => Some(f / hd),
            _ => None,
        };
        out.push(Attention {
            softmax: id,
            scores_matmul: sm,
            context_matmul: cm,
            q,
            k,
            v,
            o,
            num_heads,
            num_kv_heads,
            head_dim,
            rope: rq || rk,
            masked,
        });
    }
    out
}

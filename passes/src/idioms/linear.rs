//! Linear layers: `MatMul` by a constant weight (plus an `Add` of a constant bias),
//! `Gemm` with a constant B, quantized forms (`DequantizeLinear` of a constant feeding
//! `MatMul`, `MatMulNBits`), and `Conv` with a constant kernel.

use super::matcher::{split_const_operand, users0};
use compc_ir::op::BinaryOp;
use compc_ir::{Graph, NodeId, Op, ValueRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearKind {
    /// `MatMul(x, B)` with `B = Wᵀ` of shape [in, out].
    MatMul,
    /// `Gemm(x, B)`; `trans_b` says whether B is stored [out, in].
    Gemm { trans_b: bool },
    /// `MatMul(x, DequantizeLinear(Bq, ...))`: a quantized weight in QDQ form.
    QdqMatMul,
    /// `com.microsoft.MatMulNBits`.
    MatMulNBits,
    /// `Conv` with a constant kernel [out, in/group, k...].
    Conv,
}

impl LinearKind {
    /// QDQ or MatMulNBits: what `quant` leaves behind.
    pub fn is_quantized(&self) -> bool {
        matches!(self, LinearKind::QdqMatMul | LinearKind::MatMulNBits)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// The node computing the product.
    pub node: NodeId,
    pub kind: LinearKind,
    /// The value feeding the layer.
    pub input: ValueRef,
    /// The constant weight value (for QDQ: the quantized integer constant).
    pub weight: ValueRef,
    /// Bias: `(add node, bias constant)` for MatMul + Add, or the Gemm/Conv/NBits bias input.
    pub bias: Option<(NodeId, ValueRef)>,
    pub in_features: Option<u64>,
    pub out_features: Option<u64>,
    /// The value the layer's result is read from (after the bias add, if any).
    pub output: ValueRef,
}

impl Linear {
    /// Why a pass that needs a float weight refused this layer, when the reason is the
    /// pipeline's order: `" (it is already quantized: run PASS before quant)"`, or `""`.
    pub fn order_hint(&self, pass: &str) -> String {
        if self.kind.is_quantized() {
            format!(" (it is already quantized: run {pass} before quant)")
        } else {
            String::new()
        }
    }
}

/// A Conv or Gemm node reading its weight through a DequantizeLinear of a constant (what
/// `quant` writes for them; `find_linears` knows only the QDQ MatMul form): the codes'
/// constant, if so.
pub fn qdq_conv_gemm_codes(g: &Graph, n: NodeId) -> Option<ValueRef> {
    let node = g.node(n);
    if !matches!(node.op, Op::Conv(_) | Op::Gemm(_)) {
        return None;
    }
    let dq = g.node(node.input(1)?.node);
    let codes = match dq.op {
        Op::DequantizeLinear(_) => dq.input(0)?,
        _ => return None,
    };
    g.const_weight(codes).is_some().then_some(codes)
}

/// Why one float linear layer feeds another directly, with no nonlinearity between
/// them. No trained model chains two linear layers otherwise, so the shapes alone tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Through a bottleneck (the first's width below its input and the second's output):
    /// the two factors `low-rank` writes for one layer, `x·A·B`.
    LowRank,
    /// The first is square: a rotation of the second's inputs, as `rotate`'s online
    /// Hadamard before a down projection, which mixes every channel into every other.
    Square,
}

/// Pairs `(a, b, why)` of float linear layers where `b` reads `a`'s output and nothing
/// else does.
pub fn chained_pairs(g: &Graph, linears: &[Linear]) -> Vec<(usize, usize, Chain)> {
    let float = |l: &Linear| matches!(l.kind, LinearKind::MatMul | LinearKind::Gemm { .. });
    let mut pairs = Vec::new();
    for (ai, a) in linears.iter().enumerate() {
        let (Some(k), Some(r)) = (a.in_features, a.out_features) else {
            continue;
        };
        if !float(a) || g.value_users(a.output).len() != 1 {
            continue;
        }
        let Some(bi) = linears.iter().position(|b| float(b) && b.input == a.output) else {
            continue;
        };
        let n = linears[bi].out_features;
        if r == k {
            pairs.push((ai, bi, Chain::Square));
        } else if r < k && n.is_some_and(|n| r < n) {
            pairs.push((ai, bi, Chain::LowRank));
        }
    }
    pairs
}

fn dims(g: &Graph, v: ValueRef) -> Option<Vec<u64>> {
    g.value_type(v)?.shape.as_known()
}

/// A bias `Add` right after a MatMul: the only user of the product, adding a 1-D constant
/// of `out` elements.
fn bias_add(g: &Graph, id: NodeId, out: Option<u64>) -> Option<(NodeId, ValueRef)> {
    let users = users0(g, id);
    let [add] = users.as_slice() else { return None };
    if g.node(*add).op != Op::Binary(BinaryOp::Add) {
        return None;
    }
    let (_, c) = split_const_operand(g, *add)?;
    let d = dims(g, c)?;
    (d.len() == 1 && Some(d[0]) == out).then_some((*add, c))
}

pub fn find_linears(g: &Graph, order: &[NodeId]) -> Vec<Linear> {
    let mut out = Vec::new();
    for &id in order {
        let node = g.node(id);
        let (Some(x), Some(w)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let found = match &node.op {
            Op::MatMul => {
                let (kind, wv) = if g.const_weight(w).is_some() {
                    (LinearKind::MatMul, w)
                } else if let (Op::DequantizeLinear(_), Some(q)) =
                    (&g.node(w.node).op, g.node(w.node).input(0))
                {
                    if g.const_weight(q).is_none() {
                        continue;
                    }
                    (LinearKind::QdqMatMul, q)
                } else {
                    continue;
                };
                let d = dims(g, w);
                let (fin, fout) = match d.as_deref() {
                    Some([i, o]) => (Some(*i), Some(*o)),
                    _ => (None, None),
                };
                let bias = bias_add(g, id, fout);
                let output = bias
                    .map(|(a, _)| ValueRef::new(a, 0))
                    .unwrap_or(ValueRef::new(id, 0));
                Linear {
                    node: id,
                    kind,
                    input: x,
                    weight: wv,
                    bias,
                    in_features: fin,
                    out_features: fout,
                    output,
                }
            }
            Op::Gemm(a) if g.const_weight(w).is_some() && !a.trans_a => {
                let d = dims(g, w);
                let (fin, fout) = match (d.as_deref(), a.trans_b) {
                    (Some([o, i]), true) | (Some([i, o]), false) => (Some(*i), Some(*o)),
                    _ => (None, None),
                };
                let bias = node.input(2).map(|b| (id, b));
                Linear {
                    node: id,
                    kind: LinearKind::Gemm { trans_b: a.trans_b },
                    input: x,
                    weight: w,
                    bias,
                    in_features: fin,
                    out_features: fout,
                    output: ValueRef::new(id, 0),
                }
            }
            Op::MatMulNBits(a) if g.const_weight(w).is_some() => Linear {
                node: id,
                kind: LinearKind::MatMulNBits,
                input: x,
                weight: w,
                bias: node.input(5).map(|b| (id, b)),
                in_features: Some(a.k as u64),
                out_features: Some(a.n as u64),
                output: ValueRef::new(id, 0),
            },
            Op::Conv(_) if g.const_weight(w).is_some() => {
                let d = dims(g, w);
                Linear {
                    node: id,
                    kind: LinearKind::Conv,
                    input: x,
                    weight: w,
                    bias: node.input(2).map(|b| (id, b)),
                    in_features: d.as_ref().and_then(|d| d.get(1).copied()),
                    out_features: d.as_ref().and_then(|d| d.first().copied()),
                    output: ValueRef::new(id, 0),
                }
            }
            _ => continue,
        };
        out.push(found);
    }
    out
}

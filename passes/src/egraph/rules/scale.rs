//! Scale folding: a per-channel constant multiply (or divide) next to a MatMul or Conv by
//! a constant weight goes into a new weight, and the multiply disappears:
//! `(x·W)·s = x·(W·diag(s))`, `(x·s)·W = x·(diag(s)·W)`, `conv(x, W, b)·s = conv(x, W·s, b·s)`.
//! Only f32 weights: scaling a weight stored in a narrower type would round it again.

use super::{child, konst, operands, ops_where, rewrite, root_ty, Rw};
use crate::egraph::analysis::{add_const, add_typed, const_of, ty, weight_of, EG};
use crate::egraph::language::ENode;
use compc_ir::op::BinaryOp;
use compc_ir::{DType, Op};
use compc_runtime::Tensor;
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("matmul-scale-out", matmul_scale_out, build_matmul_out),
        rewrite("matmul-scale-in", matmul_scale_in, build_matmul_in),
        rewrite("conv-scale-out", conv_scale_out, build_conv_out),
    ]
}

/// The values of a constant that, broadcast against a value of rank `rank`, varies only
/// along `axis` (length `n` there), as a vector of `n` factors (inverted for a divide).
/// `None` if it varies along another axis, is not f32, or divides by zero.
pub fn channel_factors(
    t: &Tensor,
    rank: usize,
    axis: usize,
    n: usize,
    div: bool,
) -> Option<Vec<f64>> {
    if t.dtype() != DType::F32 || t.rank() > rank {
        return None;
    }
    let off = rank - t.rank();
    let mut along = None;
    for (i, &d) in t.shape().iter().enumerate() {
        if d == 1 {
            continue;
        }
        if off + i != axis || d != n {
            return None;
        }
        along = Some(d);
    }
    let v = t.to_f64_vec();
    let v: Vec<f64> = match along {
        Some(_) => v,
        None => vec![*v.first()?; n],
    };
    if div {
        if v.contains(&0.0) {
            return None;
        }
        Some(v.iter().map(|x| 1.0 / x).collect())
    } else {
        Some(v)
    }
}

/// A constant f32 weight of the given rank: its class and dims.
fn weight_dims(eg: &EG, w: Id, want_rank: Option<usize>) -> Option<Vec<usize>> {
    let t = ty(eg, w)?;
    let d: Vec<usize> = t.shape.as_known()?.iter().map(|&d| d as usize).collect();
    let ok = t.dtype == DType::F32
        && weight_of(eg, w).is_some()
        && want_rank.is_none_or(|r| d.len() == r);
    ok.then_some(d)
}

/// Multiplies slices of `w` along `axis` by `f` (computed in f64, rounded once).
pub fn scale_along(w: &Tensor, axis: usize, f: &[f64]) -> Option<Tensor> {
    let shape = w.shape().to_vec();
    let n = *shape.get(axis)?;
    if f.len() != n {
        return None;
    }
    let inner: usize = shape[axis + 1..].iter().product();
    let v = w.to_f32_vec();
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 * f[(i / inner.max(1)) % n]) as f32)
        .collect();
    Some(Tensor::from_f32(shape, out))
}

/// A match: the op to rebuild, its data input, weight and bias (Conv) classes, the
/// factors' class and whether they divide.
pub struct ScaleMatch {
    op: Op,
    x: Id,
    w: Id,
    b: Option<Id>,
    s: Id,
    div: bool,
}

/// The (value, constant) operand pairs of a Mul or Div in this class.
fn scaled_operands(eg: &EG, id: Id) -> Vec<(Id, Id, bool)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| {
        matches!(o, Op::Binary(BinaryOp::Mul | BinaryOp::Div))
    }) {
        let div = op == Op::Binary(BinaryOp::Div);
        for (v, s) in operands(&op, &c) {
            let (v, s) = (eg.find(v), eg.find(s));
            if konst(eg, s).is_some() && konst(eg, v).is_none() {
                out.push((v, s, div));
            }
        }
    }
    out
}

/// `MatMul(x, W) ∘ s` with `s` per output column.
fn matmul_scale_out(eg: &EG, id: Id) -> Vec<ScaleMatch> {
    let mut out = Vec::new();
    let Some(tout) = ty(eg, id) else { return out };
    for (m, s, div) in scaled_operands(eg, id) {
        let Some(ks) = konst(eg, s) else { continue };
        if !super::broadcast_keeps(tout, ks.shape()) {
            continue;
        }
        for (_, c) in ops_where(eg, m, |o| matches!(o, Op::MatMul)) {
            let (Some(x), Some(w)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
                continue;
            };
            let Some(d) = weight_dims(eg, w, Some(2)) else {
                continue;
            };
            let Some(r) = super::rank(eg, m) else {
                continue;
            };
            if r >= 1 && channel_factors(&ks, r, r - 1, d[1], div).is_some() {
                out.push(ScaleMatch {
                    op: Op::MatMul,
                    x,
                    w,
                    b: None,
                    s,
                    div,
                });
            }
        }
    }
    out
}

/// `w` scaled along `w_axis` by the factors of `s` (which vary along `axis` of a value of
/// rank `rank`), memoized so a match seen again costs nothing.
fn scaled_weight(
    eg: &mut EG,
    (w, s, div): (Id, Id, bool),
    (rank, axis): (usize, usize),
    w_axis: usize,
) -> Option<Id> {
    let wi = weight_of(eg, w)?;
    let key = format!(
        "scale:{wi}:{:?}:{div}:{rank}:{axis}:{w_axis}",
        weight_of(eg, s)
    );
    if let Some(&leaf) = eg.analysis.memo.get(&key) {
        return Some(leaf);
    }
    let wt = const_of(eg, w)?;
    let st = konst(eg, s)?;
    let f = channel_factors(&st, rank, axis, *wt.shape().get(w_axis)?, div)?;
    let scaled = scale_along(&wt, w_axis, &f)?;
    let name = format!("{}.scaled", eg.analysis.weights[wi as usize].name);
    let leaf = add_const(eg, &name, &scaled)?;
    eg.analysis.memo.insert(key, leaf);
    Some(leaf)
}

fn build_matmul_out(eg: &mut EG, id: Id, m: ScaleMatch) -> Option<Id> {
    let rank = super::rank(eg, id)?;
    let w = scaled_weight(eg, (m.w, m.s, m.div), (rank, rank.checked_sub(1)?), 1)?;
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(Op::MatMul, vec![m.x, w]), t))
}

/// `MatMul(x ∘ s, W)` with `s` per input channel (the last axis of x).
fn matmul_scale_in(eg: &EG, id: Id) -> Vec<ScaleMatch> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::MatMul)) {
        let (Some(a), Some(w)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let Some(d) = weight_dims(eg, w, Some(2)) else {
            continue;
        };
        for (x, s, div) in scaled_operands(eg, a) {
            let (Some(ks), Some(tx)) = (konst(eg, s), ty(eg, x)) else {
                continue;
            };
            let Some(r) = tx.shape.rank() else { continue };
            if r >= 1
                && super::broadcast_keeps(tx, ks.shape())
                && channel_factors(&ks, r, r - 1, d[0], div).is_some()
            {
                out.push(ScaleMatch {
                    op: Op::MatMul,
                    x,
                    w,
                    b: None,
                    s,
                    div,
                });
            }
        }
    }
    out
}

fn build_matmul_in(eg: &mut EG, id: Id, m: ScaleMatch) -> Option<Id> {
    let rank = super::rank(eg, m.x)?;
    let w = scaled_weight(eg, (m.w, m.s, m.div), (rank, rank.checked_sub(1)?), 0)?;
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(Op::MatMul, vec![m.x, w]), t))
}

/// `Conv(x, W, b) ∘ s` with `s` per output channel.
fn conv_scale_out(eg: &EG, id: Id) -> Vec<ScaleMatch> {
    let mut out = Vec::new();
    let Some(tout) = ty(eg, id) else { return out };
    for (m, s, div) in scaled_operands(eg, id) {
        let Some(ks) = konst(eg, s) else { continue };
        if !super::broadcast_keeps(tout, ks.shape()) {
            continue;
        }
        for (op, c) in ops_where(eg, m, |o| matches!(o, Op::Conv(_))) {
            let (Some(x), Some(w)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
                continue;
            };
            let Some(d) = weight_dims(eg, w, None) else {
                continue;
            };
            let b = child(eg, &c, 2);
            if b.is_some_and(|b| weight_dims(eg, b, Some(1)).is_none()) {
                continue;
            }
            let Some(r) = super::rank(eg, m) else {
                continue;
            };
            if r >= 2 && !d.is_empty() && channel_factors(&ks, r, 1, d[0], div).is_some() {
                out.push(ScaleMatch {
                    op,
                    x,
                    w,
                    b,
                    s,
                    div,
                });
            }
        }
    }
    out
}

fn build_conv_out(eg: &mut EG, id: Id, m: ScaleMatch) -> Option<Id> {
    let rank = super::rank(eg, id)?;
    let w = scaled_weight(eg, (m.w, m.s, m.div), (rank, 1), 0)?;
    let mut kids = vec![m.x, w];
    if let Some(b) = m.b {
        kids.push(scaled_weight(eg, (b, m.s, m.div), (rank, 1), 0)?);
    }
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(m.op, kids), t))
}

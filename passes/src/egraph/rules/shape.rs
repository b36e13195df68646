//! Layout chains: transposes compose into one (or vanish), chains of reshape-like ops
//! (Reshape, Squeeze, Unsqueeze, Flatten) become one Reshape (or vanish when the shape
//! comes back), and a Reshape whose target shape is computed at run time (the
//! `Shape → Gather → Concat` subgraphs exporters write for dynamic dims) becomes a Reshape
//! to a constant when the IR's types say what the result is — then the shape subgraph is
//! dead.

use super::{child, ints, ops_where, rewrite, root_ty, same, same_ty, Rw};
use crate::egraph::analysis::{add_const, add_typed, is_const, ty, EG};
use crate::egraph::language::ENode;
use compc_ir::op::{Reshape, Transpose};
use compc_ir::{Dim, Op, TensorType};
use compc_runtime::Tensor;
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("transpose-transpose", transpose_pairs, build_transpose),
        rewrite("transpose-identity", transpose_identity, same),
        rewrite("reshape-same", reshape_same, same),
        rewrite("reshape-chain", reshape_chain, build_reshape),
        rewrite("reshape-static", reshape_static, build_reshape),
        rewrite("shape-slice", shape_slice, build_shape),
    ]
}

/// A transpose's permutation, with `perm` unset meaning reversed axes.
fn perm_of(t: &Transpose, rank: usize) -> Option<Vec<usize>> {
    match &t.perm {
        Some(p) => {
            if p.len() != rank {
                return None;
            }
            let mut seen = vec![false; rank];
            let mut out = Vec::with_capacity(rank);
            for &a in p {
                let a = usize::try_from(a).ok().filter(|&a| a < rank)?;
                if std::mem::replace(&mut seen[a], true) {
                    return None;
                }
                out.push(a);
            }
            Some(out)
        }
        None => Some((0..rank).rev().collect()),
    }
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &a)| i == a)
}

/// Transpose(Transpose(x, p1), p2) = Transpose(x, p) with p[i] = p1[p2[i]].
fn transpose_pairs(eg: &EG, id: Id) -> Vec<(Id, Vec<usize>)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Transpose(_))) {
        let (Op::Transpose(t2), Some(y)) = (&op, child(eg, &c, 0)) else {
            continue;
        };
        for (inner, ic) in ops_where(eg, y, |o| matches!(o, Op::Transpose(_))) {
            let (Op::Transpose(t1), Some(x)) = (&inner, child(eg, &ic, 0)) else {
                continue;
            };
            let Some(r) = super::rank(eg, x) else {
                continue;
            };
            let (Some(p1), Some(p2)) = (perm_of(t1, r), perm_of(t2, r)) else {
                continue;
            };
            out.push((x, p2.iter().map(|&i| p1[i]).collect()));
        }
    }
    out
}

fn build_transpose(eg: &mut EG, id: Id, (x, p): (Id, Vec<usize>)) -> Option<Id> {
    if is_identity(&p) {
        return Some(x);
    }
    let op = Op::Transpose(Transpose {
        perm: Some(p.iter().map(|&a| a as i64).collect()),
    });
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(op, vec![x]), t))
}

fn transpose_identity(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Transpose(_))) {
        let (Op::Transpose(t), Some(x)) = (&op, child(eg, &c, 0)) else {
            continue;
        };
        if let Some(p) = super::rank(eg, x).and_then(|r| perm_of(t, r)) {
            if is_identity(&p) {
                out.push(x);
            }
        }
    }
    out
}

/// Ops that only reinterpret the shape of their first input.
fn reshape_like(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Flatten(_)
    )
}

/// A reshape-like op whose result has its input's type is the input.
fn reshape_same(eg: &EG, id: Id) -> Vec<Id> {
    ops_where(eg, id, reshape_like)
        .into_iter()
        .filter_map(|(_, c)| child(eg, &c, 0))
        .filter(|&x| same_ty(eg, id, x))
        .collect()
}

/// A constant Reshape target that gives `out` from `input`: known dims as they are, a dim
/// equal to the input's at the same position as 0 ("copy"), at most one other as -1.
fn static_shape(input: &TensorType, out: &TensorType) -> Option<Vec<i64>> {
    let (ind, outd) = (input.shape.dims()?, out.shape.dims()?);
    let mut shape = Vec::with_capacity(outd.len());
    let mut inferred = false;
    for (i, d) in outd.iter().enumerate() {
        match d {
            // A literal 0 would read as "copy"; such shapes are left alone.
            Dim::Known(0) => return None,
            Dim::Known(n) => shape.push(i64::try_from(*n).ok()?),
            Dim::Sym(_) if ind.get(i) == Some(d) => shape.push(0),
            _ if !inferred => {
                inferred = true;
                shape.push(-1);
            }
            _ => return None,
        }
    }
    // `-1` needs every other dim of the input to be nonzero to be well defined.
    if inferred && ind.contains(&Dim::Known(0)) {
        return None;
    }
    Some(shape)
}

/// Reshape-like ∘ reshape-like: the outer one's result straight from the inner one's
/// input, as the outer Reshape's own constant target (if it has no "copy" zeros) or as a
/// constant target computed from the types; the input itself if the shape comes back.
fn reshape_chain(eg: &EG, id: Id) -> Vec<(Id, ReshapeTo)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, reshape_like) {
        let Some(y) = child(eg, &c, 0) else { continue };
        for (_, ic) in ops_where(eg, y, reshape_like) {
            let Some(x) = child(eg, &ic, 0) else { continue };
            if same_ty(eg, id, x) {
                out.push((x, ReshapeTo::Same));
                continue;
            }
            if let Op::Reshape(r) = &op {
                let s = child(eg, &c, 1);
                let keeps = s
                    .and_then(|s| ints(eg, s))
                    .is_some_and(|v| r.allowzero || !v.contains(&0));
                if let (true, Some(s)) = (keeps, s) {
                    out.push((x, ReshapeTo::Class(s, r.allowzero)));
                    continue;
                }
            }
            if let (Some(tx), Some(t)) = (ty(eg, x), ty(eg, id)) {
                if let Some(s) = static_shape(tx, t) {
                    out.push((x, ReshapeTo::Shape(s)));
                }
            }
        }
    }
    out
}

/// A Reshape to a shape computed at run time, whose result type the IR knows well enough
/// to write the shape as a constant.
fn reshape_static(eg: &EG, id: Id) -> Vec<(Id, ReshapeTo)> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::Reshape(_))) {
        let (Some(x), Some(s)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        if is_const(eg, s) {
            continue;
        }
        if let (Some(tx), Some(t)) = (ty(eg, x), ty(eg, id)) {
            if let Some(s) = static_shape(tx, t) {
                out.push((x, ReshapeTo::Shape(s)));
            }
        }
    }
    out
}

pub enum ReshapeTo {
    Same,
    /// An existing shape class, with the Reshape's `allowzero`.
    Class(Id, bool),
    Shape(Vec<i64>),
}

fn build_reshape(eg: &mut EG, id: Id, (x, to): (Id, ReshapeTo)) -> Option<Id> {
    let (s, allowzero) = match to {
        ReshapeTo::Same => return Some(x),
        ReshapeTo::Class(s, a) => (s, a),
        ReshapeTo::Shape(v) => {
            let t = Tensor::from_i64(vec![v.len()], v);
            (add_const(eg, "shape", &t)?, false)
        }
    };
    let t = root_ty(eg, id);
    let op = Op::Reshape(Reshape { allowzero });
    Some(add_typed(eg, ENode::new_op(op, vec![x, s]), t))
}

/// One dim of a shape picked out of `Shape(x)` by a constant index, as exporters write it
/// (`Unsqueeze(Gather(Shape(x), i), 0)` or `Gather(Shape(x), [i])`), is `Shape(x)` with
/// `start`/`end` (opset 15): one node instead of two or three.
fn shape_slice(eg: &EG, id: Id) -> Vec<(Id, i64)> {
    let mut out = Vec::new();
    if eg.analysis.opset < 15 {
        return out;
    }
    // `Gather(Shape(x), [i])` itself, or `Unsqueeze(Gather(Shape(x), i), 0)`.
    out.extend(picked(eg, id, true));
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Unsqueeze(_))) {
        if let (Op::Unsqueeze(a), Some(g)) = (&op, child(eg, &c, 0)) {
            if a.axes.as_deref() == Some(&[0]) || a.axes.as_deref() == Some(&[-1]) {
                out.extend(picked(eg, g, false));
            }
        }
    }
    out
}

/// `Gather(Shape(x){start}, i)` with i a constant scalar (or a one-element 1-D index when
/// `one_d`): (x, absolute dim index).
fn picked(eg: &EG, g: Id, one_d: bool) -> Vec<(Id, i64)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, g, |o| matches!(o, Op::Gather(_))) {
        let (Op::Gather(ga), Some(s), Some(i)) = (&op, child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let idx_rank = super::rank(eg, i);
        if ga.axis != 0 || idx_rank != Some(if one_d { 1 } else { 0 }) {
            continue;
        }
        let Some(&[i]) = ints(eg, i).as_deref() else {
            continue;
        };
        for (sop, sc) in ops_where(eg, s, |o| matches!(o, Op::Shape(_))) {
            let (Op::Shape(sh), Some(x)) = (&sop, child(eg, &sc, 0)) else {
                continue;
            };
            let Some(r) = super::rank(eg, x) else {
                continue;
            };
            let r = r as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
            let (start, end) = (clamp(sh.start), clamp(sh.end.unwrap_or(r)));
            let n = end - start;
            let i = if i < 0 { i + n } else { i };
            if (0..n).contains(&i) {
                out.push((x, start + i));
            }
        }
    }
    out
}

fn build_shape(eg: &mut EG, id: Id, (x, d): (Id, i64)) -> Option<Id> {
    let op = Op::Shape(compc_ir::op::ShapeOf {
        start: d,
        end: Some(d + 1),
    });
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(op, vec![x]), t))
}

//! Ops that compute their input: multiplying by one, adding zero, casting to the type the
//! value already has, expanding to the shape it already has, `Identity`, inference-time
//! `Dropout`, a one-input `Concat`, a `Slice` that keeps everything. Each is checked on
//! types so a broadcast that would grow the value is never mistaken for a no-op.

use super::{
    all_equal, broadcast_keeps, child, ints, konst, operands, ops_where, rewrite, same, same_ty, Rw,
};
use crate::egraph::analysis::{ty, EG};
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Dim, Op};
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("binary-neutral", binary_neutral, same),
        rewrite("cast-same-type", cast_same, same),
        rewrite("expand-same-shape", expand_same, same),
        rewrite("identity-op", identity_op, same),
        rewrite("concat-single", concat_single, same),
        rewrite("slice-everything", slice_all, same),
    ]
}

/// `x ∘ c = x` for a neutral constant `c` whose broadcast does not grow `x`: Mul/Div/Pow by
/// one, Add/Sub by zero.
fn binary_neutral(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Binary(_))) {
        let Op::Binary(k) = op else { continue };
        let neutral = match k {
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow => 1.0,
            BinaryOp::Add | BinaryOp::Sub => 0.0,
            _ => continue,
        };
        for (x, n) in operands(&op, &c) {
            let (x, n) = (eg.find(x), eg.find(n));
            let (Some(tx), Some(kn)) = (ty(eg, x), konst(eg, n)) else {
                continue;
            };
            let same_dtype =
                tx.dtype == kn.dtype() && ty(eg, id).is_some_and(|t| t.dtype == tx.dtype);
            if same_dtype && all_equal(eg, n, neutral) && broadcast_keeps(tx, kn.shape()) {
                out.push(x);
            }
        }
    }
    out
}

fn cast_same(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Cast(_) | Op::CastLike)) {
        let Some(x) = child(eg, &c, 0) else { continue };
        let Some(from) = ty(eg, x).map(|t| t.dtype) else {
            continue;
        };
        let to = match &op {
            Op::Cast(a) => Some(a.to),
            _ => child(eg, &c, 1).and_then(|l| ty(eg, l)).map(|t| t.dtype),
        };
        if to == Some(from) {
            out.push(x);
        }
    }
    out
}

/// `Expand(x, s)` is x when the result has x's type, or when the constant target shape
/// broadcasts to x's own shape.
fn expand_same(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::Expand)) {
        let Some(x) = child(eg, &c, 0) else { continue };
        let by_shape = child(eg, &c, 1)
            .and_then(|s| ints(eg, s))
            .zip(ty(eg, x))
            .is_some_and(|(s, tx)| {
                s.iter().all(|&d| d >= 1)
                    && broadcast_keeps(tx, &s.iter().map(|&d| d as usize).collect::<Vec<_>>())
            });
        if by_shape || same_ty(eg, id, x) {
            out.push(x);
        }
    }
    out
}

/// `Identity(x)` and inference-mode `Dropout(x)` (single output, not in training mode).
fn identity_op(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| {
        matches!(o, Op::Unary(UnaryOp::Identity) | Op::Dropout(_))
    }) {
        let Some(x) = child(eg, &c, 0) else { continue };
        if let Op::Dropout(_) = op {
            // The third input is `training_mode`; only a constant false keeps it a no-op.
            let training = match child(eg, &c, 2) {
                None => false,
                Some(t) => !all_equal(eg, t, 0.0),
            };
            if training {
                continue;
            }
        }
        out.push(x);
    }
    out
}

fn concat_single(eg: &EG, id: Id) -> Vec<Id> {
    ops_where(eg, id, |o| matches!(o, Op::Concat(_)))
        .into_iter()
        .filter(|(_, c)| c.len() == 1)
        .filter_map(|(_, c)| child(eg, &c, 0))
        .filter(|&x| same_ty(eg, id, x))
        .collect()
}

/// `Slice` from 0 to the end (an `ends` at or past the dim, or the huge sentinel
/// exporters write) with step 1 on every sliced axis.
fn slice_all(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::Slice)) {
        let Some(x) = child(eg, &c, 0) else { continue };
        let Some(d) = super::dims(eg, x) else {
            continue;
        };
        let (Some(starts), Some(ends)) = (
            child(eg, &c, 1).and_then(|s| ints(eg, s)),
            child(eg, &c, 2).and_then(|s| ints(eg, s)),
        ) else {
            continue;
        };
        let axes = match child(eg, &c, 3) {
            Some(a) => match ints(eg, a) {
                Some(a) => a,
                None => continue,
            },
            None => (0..starts.len() as i64).collect(),
        };
        let steps = match child(eg, &c, 4) {
            Some(s) => match ints(eg, s) {
                Some(s) => s,
                None => continue,
            },
            None => vec![1; starts.len()],
        };
        if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
            continue;
        }
        let full = (0..starts.len()).all(|i| {
            let Some(a) = super::norm_axis(axes[i], d.len()) else {
                return false;
            };
            let reaches_end = match &d[a] {
                Dim::Known(n) => ends[i] >= *n as i64,
                _ => ends[i] >= i32::MAX as i64,
            };
            starts[i] == 0 && steps[i] == 1 && reaches_end
        });
        if full {
            out.push(x);
        }
    }
    out
}

//! Scalar factors move toward the weights: a multiply or divide by a one-element constant
//! passes into the first operand of a MatMul, through Transpose and Reshape (which only
//! move elements), and across an Add of a constant (whose value it scales at compile
//! time). Once it reaches a MatMul by a constant weight, `matmul-scale-out` takes it into
//! the weight and the multiply is gone — e.g. attention's `QKᵀ/√d` becomes a query
//! projection with pre-scaled weight and bias. Each step only moves the factor toward the
//! producers, so the chain ends; extraction keeps the moved form only when it is cheaper.

use super::{child, konst, ops_where, rewrite, Rw};
use crate::egraph::analysis::{add_typed, ty, EG};
use crate::egraph::language::ENode;
use compc_ir::op::BinaryOp;
use compc_ir::{DType, Op, TensorType};
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![rewrite("scalar-toward-weights", scalar_moves, build_move)]
}

pub enum Move {
    /// `(a·b)∘c = (a∘c)·b`
    MatMul(Id, Id),
    /// `op(t)∘c = op(t∘c)` for a layout op (its other inputs kept).
    Layout(Op, Vec<Id>),
    /// `(u + k)∘c = u∘c + k∘c`
    AddConst(Id, Id),
}

/// A one-element f32 constant.
fn scalar(eg: &EG, c: Id) -> bool {
    konst(eg, c).is_some_and(|t| t.numel() == 1 && t.dtype() == DType::F32)
}

/// The scalar's shape leaves `t`'s as it is when broadcast against it.
fn fits(eg: &EG, c: Id, t: Option<&TensorType>) -> bool {
    match (konst(eg, c), t) {
        (Some(k), Some(t)) => super::broadcast_keeps(t, k.shape()) && t.dtype == DType::F32,
        _ => false,
    }
}

fn scalar_moves(eg: &EG, id: Id) -> Vec<(Op, Id, Move)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| {
        matches!(o, Op::Binary(BinaryOp::Mul | BinaryOp::Div))
    }) {
        if c.len() != 2 {
            continue;
        }
        // The scalar on the right (or on either side of a Mul).
        let mut pairs = vec![(c[0], c[1])];
        if op == Op::Binary(BinaryOp::Mul) {
            pairs.push((c[1], c[0]));
        }
        for (y, s) in pairs {
            let (y, s) = (eg.find(y), eg.find(s));
            if !scalar(eg, s) || konst(eg, y).is_some() {
                continue;
            }
            for (inner, ic) in ops_where(eg, y, |o| {
                matches!(
                    o,
                    Op::MatMul | Op::Transpose(_) | Op::Reshape(_) | Op::Binary(BinaryOp::Add)
                )
            }) {
                let Some(a) = child(eg, &ic, 0) else { continue };
                let mv = match &inner {
                    Op::MatMul => match child(eg, &ic, 1) {
                        Some(b) if konst(eg, a).is_none() => Move::MatMul(a, b),
                        _ => continue,
                    },
                    Op::Transpose(_) | Op::Reshape(_) => Move::Layout(inner.clone(), ic.clone()),
                    _ => {
                        // An Add with a constant operand, either side.
                        let Some(b) = child(eg, &ic, 1) else { continue };
                        let (u, k) = if konst(eg, b).is_some() && konst(eg, a).is_none() {
                            (a, b)
                        } else if konst(eg, a).is_some() && konst(eg, b).is_none() {
                            (b, a)
                        } else {
                            continue;
                        };
                        // The constant keeps its shape too, so its scaled copy has a type.
                        if !fits(eg, s, ty(eg, k)) {
                            continue;
                        }
                        Move::AddConst(u, k)
                    }
                };
                let target = match &mv {
                    Move::MatMul(a, _) | Move::AddConst(a, _) => *a,
                    Move::Layout(_, kids) => eg.find(kids[0]),
                };
                if fits(eg, s, ty(eg, target)) && fits(eg, s, ty(eg, id)) {
                    out.push((op.clone(), s, mv));
                }
            }
        }
    }
    out
}

fn build_move(eg: &mut EG, id: Id, (op, s, mv): (Op, Id, Move)) -> Option<Id> {
    let t = super::root_ty(eg, id);
    let scaled = |eg: &mut EG, v: Id| {
        let vt = ty(eg, v).cloned();
        add_typed(eg, ENode::new_op(op.clone(), vec![v, s]), vt)
    };
    let node = match mv {
        Move::MatMul(a, b) => {
            let a2 = scaled(eg, a);
            ENode::new_op(Op::MatMul, vec![a2, b])
        }
        Move::Layout(inner, mut kids) => {
            kids[0] = scaled(eg, eg.find(kids[0]));
            ENode::new_op(inner, kids)
        }
        Move::AddConst(u, k) => {
            let u2 = scaled(eg, u);
            // Folded by the analysis: a constant times a constant.
            let k2 = scaled(eg, k);
            ENode::new_op(Op::Binary(BinaryOp::Add), vec![u2, k2])
        }
    };
    Some(add_typed(eg, node, t))
}

//! Decomposed idioms into the fused ops compc has: erf-GELU (`x·½·(1 + erf(x/√2))` in the
//! association orders the torch exporters write) and tanh-GELU
//! (`x·½·(1 + tanh(√(2/π)(x + 0.044715x³)))`) into `Gelu`, RMSNorm
//! (`x · 1/√(mean(x²) + ε) · w`) into `RmsNorm`, LayerNorm
//! (`(x − mean x)/√(mean((x − mean x)²) + ε) · γ + β`) into `LayerNorm`. compc has no
//! fused attention op, so attention stays as MatMul/Softmax.
//!
//! Exported ONNX: `Gelu` needs opset 20 and `RMSNormalization` opset 23; the ONNX backend
//! raises the opset for the first and writes the second as onnxruntime's
//! `SimplifiedLayerNormalization` below 23.

use super::{child, konst, operands, ops_where, rewrite, root_ty, uniform, Rw};
use crate::egraph::analysis::{add_typed, ty, EG};
use crate::egraph::language::ENode;
use compc_ir::op::{BinaryOp, Gelu, Norm, ReduceOp, UnaryOp};
use compc_ir::{DType, Op};
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("gelu-erf", gelu_erf, build_gelu_erf),
        rewrite("gelu-tanh", gelu_tanh, build_gelu_tanh),
        rewrite("rms-norm", norm_scaled, build_norm),
        rewrite("layer-norm", norm_shifted, build_norm),
    ]
}

fn near(v: Option<f64>, want: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs().max(1.0))
}

/// A scalar-like float constant of value `want`.
fn is_value(eg: &EG, id: Id, want: f64) -> bool {
    konst(eg, id).is_some_and(|t| t.dtype() == DType::F32) && near(uniform(eg, id), want)
}

/// The binary `kind` nodes of a class, as operand pairs in both orders where it commutes.
fn pairs(eg: &EG, id: Id, kind: BinaryOp) -> Vec<(Id, Id)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| *o == Op::Binary(kind)) {
        for (a, b) in operands(&op, &c) {
            out.push((eg.find(a), eg.find(b)));
        }
    }
    out
}

/// `1 + erf(x/√2)` (or `x·(1/√2)`), either order of the add: returns x.
fn erf_term(eg: &EG, e: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (a, one) in pairs(eg, e, BinaryOp::Add) {
        if !is_value(eg, one, 1.0) {
            continue;
        }
        for (_, c) in ops_where(eg, a, |o| *o == Op::Unary(UnaryOp::Erf)) {
            let Some(d) = child(eg, &c, 0) else { continue };
            for (x, k) in pairs(eg, d, BinaryOp::Div) {
                if is_value(eg, k, std::f64::consts::SQRT_2) {
                    out.push(x);
                }
            }
            for (x, k) in pairs(eg, d, BinaryOp::Mul) {
                if is_value(eg, k, std::f64::consts::FRAC_1_SQRT_2) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// `x³` as `Pow(x, 3)`, `x·(x·x)` or `(x·x)·x`: returns x.
fn cube(eg: &EG, c: Id) -> Vec<Id> {
    let mut out: Vec<Id> = pairs(eg, c, BinaryOp::Pow)
        .into_iter()
        .filter(|&(_, e)| is_value(eg, e, 3.0))
        .map(|(x, _)| x)
        .collect();
    for (x, sq) in pairs(eg, c, BinaryOp::Mul) {
        if square(eg, sq).contains(&x) {
            out.push(x);
        }
    }
    out
}

/// `1 + tanh(√(2/π)·(x + 0.044715·x³))`, in either operand order throughout: returns x.
fn tanh_term(eg: &EG, e: Id) -> Vec<Id> {
    let beta = (2.0 / std::f64::consts::PI).sqrt();
    let mut out = Vec::new();
    for (a, one) in pairs(eg, e, BinaryOp::Add) {
        if !is_value(eg, one, 1.0) {
            continue;
        }
        for (_, c) in ops_where(eg, a, |o| *o == Op::Unary(UnaryOp::Tanh)) {
            let Some(t) = child(eg, &c, 0) else { continue };
            for (inner, b) in pairs(eg, t, BinaryOp::Mul) {
                if !is_value(eg, b, beta) {
                    continue;
                }
                for (x, k) in pairs(eg, inner, BinaryOp::Add) {
                    let has_cube = pairs(eg, k, BinaryOp::Mul).into_iter().any(|(c3, kappa)| {
                        is_value(eg, kappa, 0.044715) && cube(eg, c3).contains(&x)
                    });
                    if has_cube {
                        out.push(x);
                    }
                }
            }
        }
    }
    out
}

/// The three factors x, ½ and `term(x)` multiplied in any association and order.
fn gelu(eg: &EG, id: Id, term: fn(&EG, Id) -> Vec<Id>) -> Vec<Id> {
    let mut out = Vec::new();
    for (p, q) in pairs(eg, id, BinaryOp::Mul) {
        // (x · E) · ½
        if is_value(eg, q, 0.5) {
            for (u, v) in pairs(eg, p, BinaryOp::Mul) {
                if term(eg, v).contains(&u) {
                    out.push(u);
                }
            }
        }
        // x · (½ · E)
        for (h, e) in pairs(eg, q, BinaryOp::Mul) {
            if is_value(eg, h, 0.5) && term(eg, e).contains(&p) {
                out.push(p);
            }
        }
        // E · (x · ½)
        for x in term(eg, p) {
            if pairs(eg, q, BinaryOp::Mul)
                .iter()
                .any(|&(u, h)| u == x && is_value(eg, h, 0.5))
            {
                out.push(x);
            }
        }
    }
    out.sort();
    out.dedup();
    out.retain(|&x| super::same_ty(eg, x, id));
    out
}

fn gelu_erf(eg: &EG, id: Id) -> Vec<Id> {
    gelu(eg, id, erf_term)
}

fn gelu_tanh(eg: &EG, id: Id) -> Vec<Id> {
    gelu(eg, id, tanh_term)
}

fn build_gelu(eg: &mut EG, id: Id, x: Id, approximate: &str) -> Option<Id> {
    let op = Op::Gelu(Gelu {
        approximate: approximate.into(),
    });
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(op, vec![x]), t))
}

fn build_gelu_erf(eg: &mut EG, id: Id, x: Id) -> Option<Id> {
    build_gelu(eg, id, x, "none")
}

fn build_gelu_tanh(eg: &mut EG, id: Id, x: Id) -> Option<Id> {
    build_gelu(eg, id, x, "tanh")
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rms,
    Layer,
}

/// `mean(v)` over the last axis with kept dims: returns v.
fn mean_last(eg: &EG, m: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, m, |o| matches!(o, Op::Reduce(ReduceOp::Mean, _))) {
        let Op::Reduce(_, r) = &op else { continue };
        let Some(v) = child(eg, &c, 0) else { continue };
        let Some(rank) = super::rank(eg, v) else {
            continue;
        };
        let axes = r
            .axes
            .clone()
            .or_else(|| child(eg, &c, 1).and_then(|a| super::ints(eg, a)));
        let last = axes.is_some_and(|a| {
            a.len() == 1 && super::norm_axis(a[0], rank) == Some(rank.wrapping_sub(1))
        });
        if r.keepdims && last {
            out.push(v);
        }
    }
    out
}

/// `v²` as `Pow(v, 2)` or `Mul(v, v)`: returns v.
fn square(eg: &EG, s: Id) -> Vec<Id> {
    let mut out: Vec<Id> = pairs(eg, s, BinaryOp::Pow)
        .into_iter()
        .filter(|&(_, e)| is_value(eg, e, 2.0))
        .map(|(v, _)| v)
        .collect();
    out.extend(
        pairs(eg, s, BinaryOp::Mul)
            .into_iter()
            .filter(|(a, b)| a == b)
            .map(|(a, _)| a),
    );
    out
}

/// `√(mean(d²) + ε)`: returns (d, ε).
fn root_mean_square(eg: &EG, s: Id) -> Vec<(Id, f32)> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, s, |o| *o == Op::Unary(UnaryOp::Sqrt)) {
        let Some(a) = child(eg, &c, 0) else { continue };
        for (m, e) in pairs(eg, a, BinaryOp::Add) {
            let Some(eps) = uniform(eg, e).filter(|_| konst(eg, e).is_some()) else {
                continue;
            };
            for sq in mean_last(eg, m) {
                for d in square(eg, sq) {
                    out.push((d, eps as f32));
                }
            }
        }
    }
    out
}

/// `d / √(mean(d²) + ε)` written as a division, or as `d · r` with r a reciprocal
/// (`Reciprocal(√…)` or `1 / √…`).
fn normalized_parts(eg: &EG, n: Id) -> Vec<(Id, f32)> {
    let mut out = Vec::new();
    for (d, s) in pairs(eg, n, BinaryOp::Div) {
        out.extend(
            root_mean_square(eg, s)
                .into_iter()
                .filter(|(d2, _)| *d2 == d),
        );
    }
    for (d, r) in pairs(eg, n, BinaryOp::Mul) {
        let mut sqrts: Vec<Id> = ops_where(eg, r, |o| *o == Op::Unary(UnaryOp::Reciprocal))
            .into_iter()
            .filter_map(|(_, c)| child(eg, &c, 0))
            .collect();
        sqrts.extend(
            pairs(eg, r, BinaryOp::Div)
                .into_iter()
                .filter(|&(one, _)| is_value(eg, one, 1.0))
                .map(|(_, s)| s),
        );
        for s in sqrts {
            out.extend(
                root_mean_square(eg, s)
                    .into_iter()
                    .filter(|(d2, _)| *d2 == d),
            );
        }
    }
    out
}

/// A normalized value: (x, ε, kind) where LayerNorm's `d` is `x − mean(x)`.
fn normalized(eg: &EG, n: Id) -> Vec<(Id, f32, Kind)> {
    let mut out = Vec::new();
    for (d, eps) in normalized_parts(eg, n) {
        out.push((d, eps, Kind::Rms));
        for (_, c) in ops_where(eg, d, |o| *o == Op::Binary(BinaryOp::Sub)) {
            let (Some(x), Some(m)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
                continue;
            };
            if mean_last(eg, m).contains(&x) {
                out.push((x, eps, Kind::Layer));
            }
        }
    }
    out
}

/// A float constant of shape [D] (or broadcastable along the last axis only) for a value
/// whose last dim is D.
fn last_axis_param(eg: &EG, p: Id, x: Id) -> bool {
    let (Some(k), Some(tx)) = (konst(eg, p), ty(eg, x)) else {
        return false;
    };
    let Some(dims) = tx.shape.dims() else {
        return false;
    };
    let d = dims.last().and_then(|d| d.known());
    k.dtype() == tx.dtype && k.shape().len() == 1 && d == Some(k.shape()[0] as u64)
}

pub struct NormMatch {
    kind: Kind,
    x: Id,
    eps: f32,
    scale: Id,
    bias: Option<Id>,
}

/// `normalized(x) · w`: RMSNorm, or a LayerNorm without shift.
fn norm_scaled(eg: &EG, id: Id) -> Vec<NormMatch> {
    let mut out = Vec::new();
    for (n, w) in pairs(eg, id, BinaryOp::Mul) {
        for (x, eps, kind) in normalized(eg, n) {
            if last_axis_param(eg, w, x) && super::same_ty(eg, x, id) {
                out.push(NormMatch {
                    kind,
                    x,
                    eps,
                    scale: w,
                    bias: None,
                });
            }
        }
    }
    out
}

/// `normalized(x) · γ + β` with the LayerNorm form of `normalized`.
fn norm_shifted(eg: &EG, id: Id) -> Vec<NormMatch> {
    let mut out = Vec::new();
    for (m, b) in pairs(eg, id, BinaryOp::Add) {
        for mut nm in norm_scaled(eg, m) {
            if nm.kind == Kind::Layer
                && last_axis_param(eg, b, nm.x)
                && super::same_ty(eg, nm.x, id)
            {
                nm.bias = Some(b);
                out.push(nm);
            }
        }
    }
    out
}

fn build_norm(eg: &mut EG, id: Id, m: NormMatch) -> Option<Id> {
    let attrs = Norm {
        axis: -1,
        epsilon: m.eps,
        stash_type: 1,
    };
    let (op, kids) = match (m.kind, m.bias) {
        (Kind::Rms, _) => (Op::RmsNorm(attrs), vec![m.x, m.scale]),
        (Kind::Layer, None) => (Op::LayerNorm(attrs), vec![m.x, m.scale]),
        (Kind::Layer, Some(b)) => (Op::LayerNorm(attrs), vec![m.x, m.scale, b]),
    };
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(op, kids), t))
}

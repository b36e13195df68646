//! Conv + BatchNorm folding: inference-mode `BatchNorm(conv(x, W, b))` is
//! `conv(x, W·f, (b − μ)·f + β)` with `f = γ / √(σ² + ε)` per output channel. A constant
//! per-channel add after a Conv goes into its bias the same way.

use super::scale::{channel_factors, scale_along};
use super::{child, konst, operands, ops_where, rewrite, root_ty, Rw};
use crate::egraph::analysis::{add_const, add_typed, const_of, ty, weight_of, EG};
use crate::egraph::language::ENode;
use compc_ir::op::BinaryOp;
use compc_ir::{DType, Op};
use compc_runtime::Tensor;
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("conv-batchnorm", conv_bn, build_conv_bn),
        rewrite("conv-bias-add", conv_add, build_conv_add),
    ]
}

pub struct ConvMatch {
    conv: Op,
    x: Id,
    w: Id,
    b: Option<Id>,
    /// BatchNorm: (γ, β, μ, σ², ε); bias add: the added constant.
    bn: Option<([Id; 4], f32)>,
    add: Option<Id>,
}

/// A Conv in class `y` whose weight (and bias) are f32 constants: (op, x, W, b, M).
fn convs(eg: &EG, y: Id) -> Vec<(Op, Id, Id, Option<Id>, usize)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, y, |o| matches!(o, Op::Conv(_))) {
        let (Some(x), Some(w)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let Some(tw) = ty(eg, w) else { continue };
        let Some(m) = tw.shape.as_known().and_then(|d| d.first().copied()) else {
            continue;
        };
        let b = child(eg, &c, 2);
        let consts_ok = tw.dtype == DType::F32
            && weight_of(eg, w).is_some()
            && b.is_none_or(|b| {
                weight_of(eg, b).is_some() && ty(eg, b).is_some_and(|t| t.dtype == DType::F32)
            });
        if consts_ok {
            out.push((op, x, w, b, m as usize));
        }
    }
    out
}

/// A per-channel f32 vector of length `m` (shape [m]).
fn channel_vec(eg: &EG, id: Id, m: usize) -> Option<Vec<f64>> {
    let t = konst(eg, id)?;
    (t.dtype() == DType::F32 && t.shape() == [m]).then(|| t.to_f64_vec())
}

fn conv_bn(eg: &EG, id: Id) -> Vec<ConvMatch> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::BatchNorm(_))) {
        let Op::BatchNorm(bn) = &op else { continue };
        if bn.training_mode || c.len() != 5 {
            continue;
        }
        let Some(y) = child(eg, &c, 0) else { continue };
        let params = [c[1], c[2], c[3], c[4]].map(|p| eg.find(p));
        for (conv, x, w, b, m) in convs(eg, y) {
            if params.iter().all(|&p| channel_vec(eg, p, m).is_some()) {
                out.push(ConvMatch {
                    conv,
                    x,
                    w,
                    b,
                    bn: Some((params, bn.epsilon)),
                    add: None,
                });
            }
        }
    }
    out
}

/// New (weight, bias) leaves from the factors and shifts, memoized under `key`.
fn folded(
    eg: &mut EG,
    key: String,
    m: &ConvMatch,
    f: Option<Vec<f64>>,
    shift: Vec<f64>,
) -> Option<(Id, Id)> {
    if let (Some(&w), Some(&b)) = (
        eg.analysis.memo.get(&format!("{key}:w")),
        eg.analysis.memo.get(&format!("{key}:b")),
    ) {
        return Some((w, b));
    }
    let wt = const_of(eg, m.w)?;
    let n = shift.len();
    let bias = match m.b {
        Some(b) => const_of(eg, b)?.to_f64_vec(),
        None => vec![0.0; n],
    };
    if bias.len() != n {
        return None;
    }
    let wname = eg.analysis.weights[weight_of(eg, m.w)? as usize]
        .name
        .clone();
    let (w, b) = match f {
        Some(f) => {
            let w = scale_along(&wt, 0, &f)?;
            let b: Vec<f64> = (0..n).map(|i| bias[i] * f[i] + shift[i]).collect();
            (add_const(eg, &format!("{wname}.folded"), &w)?, b)
        }
        None => (m.w, (0..n).map(|i| bias[i] + shift[i]).collect()),
    };
    let bt: Tensor = super::tensor_f32(vec![n], b);
    let b = add_const(eg, &format!("{wname}.bias"), &bt)?;
    eg.analysis.memo.insert(format!("{key}:w"), w);
    eg.analysis.memo.insert(format!("{key}:b"), b);
    Some((w, b))
}

fn build_conv_bn(eg: &mut EG, id: Id, m: ConvMatch) -> Option<Id> {
    let ([g, beta, mean, var], eps) = m.bn?;
    let n = ty(eg, m.w)?.shape.as_known()?.first().copied()? as usize;
    let (g, beta, mean, var) = (
        channel_vec(eg, g, n)?,
        channel_vec(eg, beta, n)?,
        channel_vec(eg, mean, n)?,
        channel_vec(eg, var, n)?,
    );
    let f: Vec<f64> = (0..n)
        .map(|i| g[i] / (var[i] + eps as f64).sqrt())
        .collect();
    // (b − μ)·f + β = b·f + (β − μ·f).
    let shift: Vec<f64> = (0..n).map(|i| beta[i] - mean[i] * f[i]).collect();
    let key = format!(
        "bn:{:?}:{:?}:{:?}:{:?}:{eps}",
        weight_of(eg, m.w),
        m.b.map(|b| weight_of(eg, b)),
        f.iter()
            .map(|v| v.to_bits())
            .fold(0u64, |a, b| a.rotate_left(7) ^ b),
        shift
            .iter()
            .map(|v| v.to_bits())
            .fold(0u64, |a, b| a.rotate_left(7) ^ b),
    );
    let (w, b) = folded(eg, key, &m, Some(f), shift)?;
    let t = root_ty(eg, id);
    Some(add_typed(
        eg,
        ENode::new_op(m.conv.clone(), vec![m.x, w, b]),
        t,
    ))
}

fn conv_add(eg: &EG, id: Id) -> Vec<ConvMatch> {
    let mut out = Vec::new();
    let Some(tout) = ty(eg, id) else { return out };
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Binary(BinaryOp::Add))) {
        for (y, a) in operands(&op, &c) {
            let (y, a) = (eg.find(y), eg.find(a));
            let Some(ka) = konst(eg, a) else { continue };
            let Some(r) = tout.shape.rank() else { continue };
            if r < 2 || !super::broadcast_keeps(tout, ka.shape()) {
                continue;
            }
            for (conv, x, w, b, m) in convs(eg, y) {
                if channel_factors(&ka, r, 1, m, false).is_some() {
                    out.push(ConvMatch {
                        conv,
                        x,
                        w,
                        b,
                        bn: None,
                        add: Some(a),
                    });
                }
            }
        }
    }
    out
}

fn build_conv_add(eg: &mut EG, id: Id, m: ConvMatch) -> Option<Id> {
    let a = m.add?;
    let r = super::rank(eg, id)?;
    let n = ty(eg, m.w)?.shape.as_known()?.first().copied()? as usize;
    let shift = channel_factors(&*konst(eg, a)?, r, 1, n, false)?;
    let key = format!(
        "convadd:{:?}:{:?}:{:?}:{r}",
        weight_of(eg, m.w),
        m.b.map(|b| weight_of(eg, b)),
        weight_of(eg, a)
    );
    let (w, b) = folded(eg, key, &m, None, shift)?;
    let t = root_ty(eg, id);
    Some(add_typed(
        eg,
        ENode::new_op(m.conv.clone(), vec![m.x, w, b]),
        t,
    ))
}

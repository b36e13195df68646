//! Linear chains: `(x·A)·B = x·(A·B)` for constant A [n, m] and B [m, p] when it saves
//! FLOPs (n·p < n·m + m·p per row of x); a MatMul by a constant identity matrix — what a
//! rotation followed by its transpose multiplies out to — is its input; the normalized
//! Hadamard transform is its own inverse. A rotation pair split by a residual add or a
//! scale-free RMS norm still cancels: `x·Q + y·Q = (x + y)·Q` (one MatMul fewer), and
//! `rms_norm(x·Q)·Qᵀ = rms_norm(x)` when `Q·Qᵀ = I` (an orthogonal Q keeps the mean of
//! squares over the last axis, and a uniform norm scale commutes with it). These are what
//! is left of `rotate{fold=false}` once `quant` has turned the weights the rotations would
//! fold into into dequantized integers.

use super::{
    child, norm_axis, operands, ops_where, rank, rewrite, root_ty, same, same_ty, uniform, Rw,
};
use crate::egraph::analysis::{add_const, add_typed, const_of, ty, weight_of, EG};
use crate::egraph::language::ENode;
use compc_ir::op::BinaryOp;
use compc_ir::{DType, Op, Weight};
use compc_runtime::Tensor;
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![
        rewrite("matmul-chain", matmul_chain, build_chain),
        rewrite("matmul-identity", matmul_identity, same),
        rewrite("hadamard-hadamard", hadamard_pair, same),
        rewrite("matmul-factor", matmul_factor, build_factor),
        rewrite(
            "rotation-through-rms-norm",
            rotation_norm,
            build_rotation_norm,
        ),
    ]
}

/// Products of more multiply-adds than this are not formed at compile time.
const MAX_PRODUCT_MACS: u64 = 1 << 31;

/// Dims of a constant f32 matrix.
fn matrix(eg: &EG, id: Id) -> Option<(u64, u64)> {
    let t = ty(eg, id)?;
    match (t.dtype, t.shape.as_known()?.as_slice(), weight_of(eg, id)) {
        (DType::F32, &[r, c], Some(_)) => Some((r, c)),
        _ => None,
    }
}

fn matmul_chain(eg: &EG, id: Id) -> Vec<(Id, Id, Id)> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::MatMul)) {
        let (Some(y), Some(b)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let Some((m, p)) = matrix(eg, b) else {
            continue;
        };
        for (_, ic) in ops_where(eg, y, |o| matches!(o, Op::MatMul)) {
            let (Some(x), Some(a)) = (child(eg, &ic, 0), child(eg, &ic, 1)) else {
                continue;
            };
            let Some((n, m2)) = matrix(eg, a) else {
                continue;
            };
            let saves =
                n.saturating_mul(p) < n.saturating_mul(m).saturating_add(m.saturating_mul(p));
            let small = n.saturating_mul(m).saturating_mul(p) <= MAX_PRODUCT_MACS;
            if m2 == m && saves && small && super::rank(eg, x).is_some_and(|r| r >= 1) {
                out.push((x, a, b));
            }
        }
    }
    out
}

/// `A·B` in f64, rounded once to f32.
fn product(a: &Tensor, b: &Tensor) -> Option<Tensor> {
    let (&[n, m], &[m2, p]) = (a.shape(), b.shape()) else {
        return None;
    };
    if m != m2 {
        return None;
    }
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let mut out = vec![0f64; n * p];
    for i in 0..n {
        for k in 0..m {
            let aik = av[i * m + k] as f64;
            if aik == 0.0 {
                continue;
            }
            for j in 0..p {
                out[i * p + j] += aik * bv[k * p + j] as f64;
            }
        }
    }
    Some(super::tensor_f32(vec![n, p], out))
}

/// The constant `A·B` of two weight classes, computed once.
fn product_const(eg: &mut EG, a: Id, b: Id) -> Option<Id> {
    let (wa, wb) = (weight_of(eg, a)?, weight_of(eg, b)?);
    let key = format!("chain:{wa}:{wb}");
    if let Some(&ab) = eg.analysis.memo.get(&key) {
        return Some(ab);
    }
    let p = product(&*const_of(eg, a)?, &*const_of(eg, b)?)?;
    let name = format!(
        "{}.{}",
        eg.analysis.weights[wa as usize].name, eg.analysis.weights[wb as usize].name
    );
    let ab = add_const(eg, &name, &p)?;
    eg.analysis.memo.insert(key, ab);
    Some(ab)
}

fn build_chain(eg: &mut EG, id: Id, (x, a, b): (Id, Id, Id)) -> Option<Id> {
    let ab = product_const(eg, a, b)?;
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(Op::MatMul, vec![x, ab]), t))
}

/// How far from the identity a matrix may be and still count as one: f32 products of an
/// orthogonal matrix and its transpose land within a few ulps of 1 and 0, growing as √n.
fn identity_tolerance(n: usize) -> f64 {
    (1e-6 * (n as f64).sqrt() / 8.0).max(1e-6)
}

/// Reads the weight's bytes directly and stops at the first entry that is off, so the
/// check costs nothing on ordinary (non-identity) weights however large.
fn is_identity_weight(w: &Weight) -> bool {
    let (&[n, m], DType::F32, Ok(bytes)) = (w.dims.as_slice(), w.dtype, w.bytes()) else {
        return false;
    };
    if n != m {
        return false;
    }
    let n = n as usize;
    let tol = identity_tolerance(n);
    bytes.chunks_exact(4).enumerate().all(|(i, c)| {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64;
        let want = if i / n == i % n { 1.0 } else { 0.0 };
        (v - want).abs() <= tol
    })
}

fn matmul_identity(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::MatMul)) {
        let (Some(x), Some(w)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let identity = weight_of(eg, w)
            .is_some_and(|wi| is_identity_weight(&eg.analysis.weights[wi as usize]));
        if identity && super::rank(eg, x).is_some_and(|r| r >= 1) {
            out.push(x);
        }
    }
    out
}

fn hadamard_pair(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    // Only the plain transform is an involution; one with a Kronecker factor is not.
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Hadamard(_))) {
        let Some(y) = child(eg, &c, 0).filter(|_| child(eg, &c, 1).is_none()) else {
            continue;
        };
        for (inner, ic) in ops_where(eg, y, |o| matches!(o, Op::Hadamard(_))) {
            if inner == op && child(eg, &ic, 1).is_none() {
                if let Some(x) = child(eg, &ic, 0) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// `Add(MatMul(x, B), MatMul(y, B))` with B a constant matrix and x, y of the same type:
/// the add moves before the shared MatMul.
fn matmul_factor(eg: &EG, id: Id) -> Vec<(Id, Id, Id)> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Binary(BinaryOp::Add))) {
        for (l, r) in operands(&op, &c) {
            for (_, lc) in ops_where(eg, l, |o| matches!(o, Op::MatMul)) {
                let (Some(x), Some(b)) = (child(eg, &lc, 0), child(eg, &lc, 1)) else {
                    continue;
                };
                if matrix(eg, b).is_none() || rank(eg, x).is_none_or(|r| r < 1) {
                    continue;
                }
                for (_, rc) in ops_where(eg, r, |o| matches!(o, Op::MatMul)) {
                    if let (Some(y), Some(b2)) = (child(eg, &rc, 0), child(eg, &rc, 1)) {
                        if b2 == b && same_ty(eg, x, y) && !out.contains(&(x, y, b)) {
                            out.push((x, y, b));
                        }
                    }
                }
            }
        }
    }
    out
}

fn build_factor(eg: &mut EG, id: Id, (x, y, b): (Id, Id, Id)) -> Option<Id> {
    let t = ty(eg, x).cloned();
    let sum = add_typed(eg, ENode::new_op(Op::Binary(BinaryOp::Add), vec![x, y]), t);
    let rt = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(Op::MatMul, vec![sum, b]), rt))
}

/// `MatMul(RmsNorm(MatMul(x, Q), s), P)` with Q and P constant square matrices, the norm
/// over the last axis only and its scale one value: `(x, s, Q, P, the norm op)`. Whether `Q·P` is the
/// identity is checked when building (it needs the product).
fn rotation_norm(eg: &EG, id: Id) -> Vec<(Id, Id, Id, Id, Op)> {
    let mut out = Vec::new();
    for (_, c) in ops_where(eg, id, |o| matches!(o, Op::MatMul)) {
        let (Some(n), Some(p)) = (child(eg, &c, 0), child(eg, &c, 1)) else {
            continue;
        };
        let Some((d, d2)) = matrix(eg, p).filter(|(r, c)| r == c) else {
            continue;
        };
        for (op, nc) in ops_where(eg, n, |o| matches!(o, Op::RmsNorm(_))) {
            let Op::RmsNorm(attrs) = &op else { continue };
            let (Some(y), Some(s)) = (child(eg, &nc, 0), child(eg, &nc, 1)) else {
                continue;
            };
            let last_axis = rank(eg, y)
                .and_then(|r| norm_axis(attrs.axis, r).map(|a| a + 1 == r))
                .unwrap_or(false);
            if !last_axis || nc.len() > 2 || uniform(eg, s).is_none() {
                continue;
            }
            for (_, yc) in ops_where(eg, y, |o| matches!(o, Op::MatMul)) {
                let (Some(x), Some(q)) = (child(eg, &yc, 0), child(eg, &yc, 1)) else {
                    continue;
                };
                if matrix(eg, q) == Some((d, d2)) && same_ty(eg, x, y) {
                    out.push((x, s, q, p, op.clone()));
                }
            }
        }
    }
    out
}

fn build_rotation_norm(
    eg: &mut EG,
    id: Id,
    (x, s, q, p, norm): (Id, Id, Id, Id, Op),
) -> Option<Id> {
    let qp = product_const(eg, q, p)?;
    let w = weight_of(eg, qp)?;
    if !is_identity_weight(&eg.analysis.weights[w as usize]) {
        return None;
    }
    let rt = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(norm, vec![x, s]), rt))
}

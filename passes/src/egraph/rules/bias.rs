//! Bias-add fusion: `MatMul(a, B) + c` of 2-D operands is `Gemm(a, B, c)`, and a bias added
//! after a bias-less Gemm becomes its C input. Gemm reads the bias while it writes its
//! result, so the separate pass over the output disappears. (Gemm takes only 2-D
//! operands; the 3-D MatMul + Add of transformer layers stays as it is.)

use super::{child, operands, ops_where, rewrite, root_ty, Rw};
use crate::egraph::analysis::{add_typed, ty, EG};
use crate::egraph::language::ENode;
use compc_ir::op::{BinaryOp, Gemm};
use compc_ir::{DType, Dim, Op};
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![rewrite("bias-add-gemm", bias_add, build_gemm)]
}

/// True if a value of class `c` broadcasts onto the 2-D result `out` without growing it
/// (ONNX Gemm allows only this unidirectional broadcast for C).
fn bias_fits(eg: &EG, c: Id, out: Id) -> bool {
    let (Some(tc), Some(to)) = (ty(eg, c), ty(eg, out)) else {
        return false;
    };
    let (Some(dc), Some(dout)) = (tc.shape.dims(), to.shape.dims()) else {
        return false;
    };
    if tc.dtype != to.dtype || dout.len() != 2 || dc.len() > 2 {
        return false;
    }
    let off = 2 - dc.len();
    dc.iter()
        .enumerate()
        .all(|(i, d)| *d == Dim::Known(1) || (d == &dout[off + i] && *d != Dim::Unknown))
}

fn bias_add(eg: &EG, id: Id) -> Vec<(Op, Id, Id, Id)> {
    let mut out = Vec::new();
    if ty(eg, id).is_none_or(|t| !matches!(t.dtype, DType::F32 | DType::F16 | DType::F64)) {
        return out;
    }
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::Binary(BinaryOp::Add))) {
        for (y, bias) in operands(&op, &c) {
            let (y, bias) = (eg.find(y), eg.find(bias));
            if !bias_fits(eg, bias, id) {
                continue;
            }
            for (inner, ic) in ops_where(eg, y, |o| matches!(o, Op::MatMul | Op::Gemm(_))) {
                let (Some(a), Some(b)) = (child(eg, &ic, 0), child(eg, &ic, 1)) else {
                    continue;
                };
                let gemm = match inner {
                    Op::MatMul
                        if super::rank(eg, a) == Some(2) && super::rank(eg, b) == Some(2) =>
                    {
                        Gemm::default()
                    }
                    // A bias-less Gemm: the bias takes C's place with beta = 1.
                    Op::Gemm(g) if child(eg, &ic, 2).is_none() => Gemm { beta: 1.0, ..g },
                    _ => continue,
                };
                out.push((Op::Gemm(gemm), a, b, bias));
            }
        }
    }
    out
}

fn build_gemm(eg: &mut EG, id: Id, (op, a, b, c): (Op, Id, Id, Id)) -> Option<Id> {
    let t = root_ty(eg, id);
    Some(add_typed(eg, ENode::new_op(op, vec![a, b, c]), t))
}

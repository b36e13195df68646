//! Quantize ∘ dequantize with the same scale, zero point, axis and block size gives the
//! integers back exactly: `(q - zp)·s` divided by `s` rounds back to `q - zp` (the error of
//! two f32 roundings is far below one half for any 16-bit-or-narrower integer), and
//! adding `zp` cannot saturate since `q` was in range. The other order (dequantize of a
//! quantize) is the lossy fake-quantization and is never removed.

use super::{child, ops_where, rewrite, same, Rw};
use crate::egraph::analysis::{ty, EG};
use compc_ir::Op;
use egg::Id;

pub fn rules() -> Vec<Rw> {
    vec![rewrite("quantize-dequantize", quant_dequant, same)]
}

fn quant_dequant(eg: &EG, id: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for (op, c) in ops_where(eg, id, |o| matches!(o, Op::QuantizeLinear(_))) {
        let Op::QuantizeLinear(qa) = &op else {
            continue;
        };
        let Some(x) = child(eg, &c, 0) else { continue };
        for (inner, ic) in ops_where(eg, x, |o| matches!(o, Op::DequantizeLinear(_))) {
            let Op::DequantizeLinear(da) = &inner else {
                continue;
            };
            let Some(q) = child(eg, &ic, 0) else { continue };
            let same_params = child(eg, &c, 1) == child(eg, &ic, 1)
                && child(eg, &c, 2) == child(eg, &ic, 2)
                && qa.axis == da.axis
                && qa.block_size == da.block_size;
            // The quantize must produce q's integer type (its zero point's, or the
            // `output_dtype` it names).
            let back_to = ty(eg, id).map(|t| t.dtype);
            if same_params && back_to.is_some() && back_to == ty(eg, q).map(|t| t.dtype) {
                out.push(q);
            }
        }
    }
    out
}

//! QuantizeLinear and DequantizeLinear of run-time values (static activation
//! quantization) with a per-tensor scale and zero point: one element-wise op each, with
//! the reference runtime's formulas: `x / s` rounded half to even, plus `z`, clamped to
//! the type's range; and `(q − z)·s`. Dequantized weights (per tensor, per axis or
//! blocked) never get here: `compc::native::prepare` folds them into float constants.

use super::builder::{elt, Emitter, Val};
use super::EmitError;
use compc_ir::op::Quantize;
use compc_ir::NodeId;
use compc_runtime::ops::quant::qrange;

pub fn dequantize(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let (scale, zero) = per_tensor(em, id, "dequantize_linear")?;
    let out = em.out_type(id)?;
    let (xt, t) = (elt(x.ty.dtype), elt(out.dtype));
    let to_float = if x.ty.dtype.is_unsigned() {
        "uitofp"
    } else {
        "sitofp"
    };
    em.elementwise(&[&x], &out, |b, v| {
        // q − z is exact in float for 8- and 16-bit codes, as it is in the runtime's i64.
        let q = b.op(format!("arith.{to_float} {} : {xt} to {t}", v[0]));
        let z = b.fconst(zero as f32, t);
        let s = b.fconst(scale, t);
        let d = b.op(format!("arith.subf {q}, {z} : {t}"));
        Ok(b.op(format!("arith.mulf {d}, {s} : {t}")))
    })
}

pub fn quantize(em: &mut Emitter, id: NodeId, a: &Quantize) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    if !x.ty.dtype.is_float() {
        return Err(em.err("quantize_linear needs a float input"));
    }
    let (scale, zero) = per_tensor(em, id, "quantize_linear")?;
    let out = em.out_type(id)?;
    let (lo, hi) = qrange(out.dtype).map_err(|e| em.err(e.to_string()))?;
    if a.output_dtype.is_some_and(|d| d != out.dtype) {
        return Err(em.err("quantize_linear's output_dtype differs from its output's type"));
    }
    let (xt, t) = (elt(x.ty.dtype), elt(out.dtype));
    let to_int = if out.dtype.is_unsigned() {
        "fptoui"
    } else {
        "fptosi"
    };
    em.elementwise(&[&x], &out, |b, v| {
        let s = b.fconst(scale, xt);
        let z = b.fconst(zero as f32, xt);
        let (l, h) = (b.fconst(lo, xt), b.fconst(hi, xt));
        let d = b.op(format!("arith.divf {}, {s} : {xt}", v[0]));
        let r = b.op(format!("math.roundeven {d} : {xt}"));
        let r = b.op(format!("arith.addf {r}, {z} : {xt}"));
        let r = b.op(format!("arith.maximumf {r}, {l} : {xt}"));
        let r = b.op(format!("arith.minimumf {r}, {h} : {xt}"));
        Ok(b.op(format!("arith.{to_int} {r} : {xt} to {t}")))
    })
}

/// The scale and zero point of a run-time (de)quantization: one of each, constant.
fn per_tensor(em: &Emitter, id: NodeId, what: &str) -> Result<(f32, i64), EmitError> {
    let scale = match em.const_f32(id, 1).as_deref() {
        Some(&[s]) => s,
        _ => {
            return Err(em.err(format!(
                "{what} of a run-time value needs one constant scale (per-axis and blocked \
                 scales are lowered only for constant weights, folded before lowering)"
            )))
        }
    };
    let zero = match em.g.node(id).input(2) {
        None => 0,
        Some(_) => match em.const_i64(id, 2).as_deref() {
            Some(&[z]) => z,
            _ => return Err(em.err(format!("{what}: the zero point must be one constant"))),
        },
    };
    Ok((scale, zero))
}

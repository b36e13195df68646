//! Element-wise ops: the output has the input's shape (or the inputs' broadcast shape);
//! only the element type varies (predicates give bool, casts and quantization change it).

use super::dims::{broadcast_shapes, norm_axis};
use super::Cx;
use crate::dtype::DType;
use crate::op::{BinaryOp, Hadamard, Quantize, UnaryOp};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

/// The output has input 0's type.
pub(crate) fn same(cx: &Cx) -> Out {
    Ok(vec![cx.ty(0)?.clone()])
}

/// Input 0's type; `axis` must be valid for its rank (Softmax, RMSNorm).
pub(crate) fn same_with_axis(cx: &Cx, axis: i64) -> Out {
    let t = cx.ty(0)?;
    if let Some(r) = t.shape.rank() {
        norm_axis(axis, r)?;
    }
    Ok(vec![t.clone()])
}

pub(crate) fn unary(cx: &Cx, k: UnaryOp) -> Out {
    let t = cx.ty(0)?;
    let dtype = match k {
        UnaryOp::IsNaN | UnaryOp::Not => DType::Bool,
        _ => t.dtype,
    };
    Ok(vec![TensorType::new(dtype, t.shape.clone())])
}

/// Broadcast shape of inputs `0..n`, with input `0`'s element type.
pub(crate) fn broadcast_like_first(cx: &Cx, n: usize) -> Out {
    let mut shapes = Vec::with_capacity(n);
    for i in 0..n {
        shapes.push(&cx.ty(i)?.shape);
    }
    Ok(vec![TensorType::new(
        cx.ty(0)?.dtype,
        broadcast_shapes(&shapes)?,
    )])
}

pub(crate) fn binary(cx: &Cx, k: BinaryOp) -> Out {
    let mut out = broadcast_like_first(cx, 2)?;
    if k.is_predicate() {
        out[0].dtype = DType::Bool;
    }
    Ok(out)
}

pub(crate) fn variadic(cx: &Cx) -> Out {
    broadcast_like_first(cx, cx.n_inputs())
}

pub(crate) fn where_(cx: &Cx) -> Out {
    let shape = broadcast_shapes(&[&cx.ty(0)?.shape, &cx.ty(1)?.shape, &cx.ty(2)?.shape])?;
    Ok(vec![TensorType::new(cx.ty(1)?.dtype, shape)])
}

pub(crate) fn cast(cx: &Cx, to: DType) -> Out {
    Ok(vec![TensorType::new(to, cx.ty(0)?.shape.clone())])
}

/// The quantized type comes from the zero point when there is one, else `output_dtype`,
/// else u8 (ONNX's default).
pub(crate) fn quantize(cx: &Cx, q: &Quantize) -> Out {
    let x = cx.ty(0)?;
    let dtype = match (cx.opt_ty(2).map(|t| t.dtype), q.output_dtype) {
        (Some(zp), Some(want)) if zp != want => {
            return Err(format!("zero point is {zp} but output_dtype is {want}"))
        }
        (Some(zp), _) => zp,
        (None, Some(want)) => want,
        (None, None) => DType::U8,
    };
    Ok(vec![TensorType::new(dtype, x.shape.clone())])
}

/// The result has the scale's float type (f32 if the scale is not a float).
pub(crate) fn dequantize(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let scale = cx.ty(1)?.dtype;
    let dtype = if scale.is_float() { scale } else { DType::F32 };
    Ok(vec![TensorType::new(dtype, x.shape.clone())])
}

pub(crate) fn dynamic_quantize(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    Ok(vec![
        TensorType::new(DType::U8, x.shape.clone()),
        TensorType::new(DType::F32, Shape::scalar()),
        TensorType::new(DType::U8, Shape::scalar()),
    ])
}

/// Output and the optional bool mask.
pub(crate) fn dropout(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    Ok(vec![
        x.clone(),
        TensorType::new(DType::Bool, x.shape.clone()),
    ])
}

/// Blocks of `size` must tile the last axis.
pub(crate) fn hadamard(cx: &Cx, h: &Hadamard) -> Out {
    let x = cx.ty(0)?;
    if h.size < 0 {
        return Err(format!("block size {} is negative", h.size));
    }
    let k = match cx.opt_ty(1) {
        None => 1,
        Some(f) => match f.shape.as_known().as_deref() {
            Some([a, b]) if a == b && *a > 0 => *a,
            _ => {
                return Err(format!(
                    "the Kronecker factor must be a square [K, K] matrix, got {:?}",
                    f.shape
                ))
            }
        },
    };
    if let Some(dims) = x.shape.dims() {
        match dims.last() {
            None => return Err("input is a scalar; the transform needs a last axis".into()),
            Some(Dim::Known(n)) if h.size > 0 && n % (k * h.size as u64) != 0 => {
                return Err(format!(
                    "last dim {n} is not a multiple of the block size {}",
                    k * h.size as u64
                ))
            }
            Some(Dim::Known(n)) if n % k != 0 => {
                return Err(format!(
                    "last dim {n} is not a multiple of the factor's order {k}"
                ))
            }
            _ => {}
        }
    }
    Ok(vec![x.clone()])
}

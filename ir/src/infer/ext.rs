//! Shape rules of the ops beyond the core set (`op/attrs_ext.rs`): recurrent layers,
//! losses, integer and quantized linear algebra, detection and sampling, signal
//! processing, text features, optimizers. Where an output size depends on data (Unique,
//! NonMaxSuppression, Compress), that dim is unknown.

use super::conv::conv_types;
use super::dims::{norm_axis, unify};
use super::nn::matmul_types;
use super::Cx;
use crate::dtype::DType;
use crate::op::{Compress, Conv, Dft, EyeLike, Loss, MaxUnpool, RoiAlign, Unique};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

fn ranked(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape::Ranked(dims))
}

fn dims(t: &TensorType) -> Option<&[Dim]> {
    t.shape.dims()
}

/// Dim `i` of `t`, unknown when the rank is.
fn dim(t: &TensorType, i: usize) -> Dim {
    dims(t)
        .and_then(|d| d.get(i))
        .cloned()
        .unwrap_or(Dim::Unknown)
}

pub(crate) fn is_inf(cx: &Cx) -> Out {
    Ok(vec![TensorType::new(DType::Bool, cx.ty(0)?.shape.clone())])
}

/// `[..., M, M]` to `[...]`.
pub(crate) fn det(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let Some(d) = dims(x) else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    if d.len() < 2 {
        return Err(format!("input must have rank ≥ 2, found {x}"));
    }
    unify(&d[d.len() - 2], &d[d.len() - 1]).map_err(|e| format!("matrices are not square: {e}"))?;
    Ok(vec![ranked(x.dtype, d[..d.len() - 2].to_vec())])
}

pub(crate) fn eye_like(cx: &Cx, e: &EyeLike) -> Out {
    let x = cx.ty(0)?;
    if x.shape.rank().is_some_and(|r| r != 2) {
        return Err(format!("input must be 2-D, found {x}"));
    }
    Ok(vec![TensorType::new(
        e.dtype.unwrap_or(x.dtype),
        x.shape.clone(),
    )])
}

pub(crate) fn compress(cx: &Cx, c: &Compress) -> Out {
    let x = cx.ty(0)?;
    let out = match (c.axis, dims(x)) {
        (None, _) => Shape::Ranked(vec![Dim::Unknown]),
        (Some(a), Some(d)) => {
            let a = norm_axis(a, d.len())?;
            let mut d = d.to_vec();
            d[a] = Dim::Unknown;
            Shape::Ranked(d)
        }
        (Some(_), None) => Shape::Unranked,
    };
    Ok(vec![TensorType::new(x.dtype, out)])
}

pub(crate) fn unique(cx: &Cx, u: &Unique) -> Out {
    let x = cx.ty(0)?;
    let y = match (u.axis, dims(x)) {
        (None, _) => Shape::Ranked(vec![Dim::Unknown]),
        (Some(a), Some(d)) => {
            let a = norm_axis(a, d.len())?;
            let mut d = d.to_vec();
            d[a] = Dim::Unknown;
            Shape::Ranked(d)
        }
        (Some(_), None) => Shape::Unranked,
    };
    let idx = ranked(DType::I64, vec![Dim::Unknown]);
    Ok(vec![
        TensorType::new(x.dtype, y),
        idx.clone(),
        idx.clone(),
        idx,
    ])
}

/// Output spatial size `(in - 1) · stride + kernel - pads`, or the `output_shape` input.
pub(crate) fn max_unpool(cx: &Cx, m: &MaxUnpool) -> Out {
    let x = cx.ty(0)?;
    if let Some(v) = cx.ints(2) {
        let d = v
            .iter()
            .map(|&n| super::dims::dim_of(n, "output_shape entry"))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(vec![ranked(x.dtype, d)]);
    }
    if cx.opt_ty(2).is_some() {
        let r = x.shape.rank();
        return Ok(vec![match r {
            Some(r) => ranked(x.dtype, vec![Dim::Unknown; r]),
            None => TensorType::unranked(x.dtype),
        }]);
    }
    let Some(d) = dims(x) else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let n = d.len().saturating_sub(2);
    if m.kernel_shape.len() != n {
        return Err(format!(
            "kernel_shape has {} entries for {n} spatial dims",
            m.kernel_shape.len()
        ));
    }
    let mut out = d[..2.min(d.len())].to_vec();
    for i in 0..n {
        let s = m.strides.get(i).copied().unwrap_or(1);
        let pads = m.pads.get(i).copied().unwrap_or(0) + m.pads.get(i + n).copied().unwrap_or(0);
        out.push(match &d[2 + i] {
            Dim::Known(v) => {
                let o = (*v as i64 - 1) * s + m.kernel_shape[i] - pads;
                super::dims::dim_of(o, "output size")?
            }
            _ => Dim::Unknown,
        });
    }
    Ok(vec![ranked(x.dtype, out)])
}

/// `[num_rois, C, output_height, output_width]`.
pub(crate) fn roi_align(cx: &Cx, r: &RoiAlign) -> Out {
    let (x, rois) = (cx.ty(0)?, cx.ty(1)?);
    Ok(vec![ranked(
        x.dtype,
        vec![
            dim(rois, 0),
            dim(x, 1),
            super::dims::dim_of(r.output_height, "output_height")?,
            super::dims::dim_of(r.output_width, "output_width")?,
        ],
    )])
}

pub(crate) fn non_max_suppression(_cx: &Cx) -> Out {
    Ok(vec![ranked(DType::I64, vec![Dim::Unknown, Dim::Known(3)])])
}

/// `[N, C, H_out, W_out]` from X `[N, C, H, W]` and the grid `[N, H_out, W_out, 2]`.
pub(crate) fn grid_sample(cx: &Cx) -> Out {
    let (x, grid) = (cx.ty(0)?, cx.ty(1)?);
    let r = x.shape.rank().or(grid.shape.rank());
    let Some(r) = r else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let mut out = vec![dim(x, 0), dim(x, 1)];
    for i in 1..r.saturating_sub(1) {
        out.push(dim(grid, i));
    }
    Ok(vec![ranked(x.dtype, out)])
}

pub(crate) fn conv_integer(cx: &Cx, c: &Conv) -> Out {
    let mut t = conv_types(cx.ty(0)?, cx.ty(1)?, c)?;
    t[0].dtype = DType::I32;
    Ok(t)
}

/// Inputs x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B; the output has y_zp's type.
pub(crate) fn qlinear_conv(cx: &Cx, c: &Conv) -> Out {
    let mut t = conv_types(cx.ty(0)?, cx.ty(3)?, c)?;
    t[0].dtype = cx.opt_ty(7).map_or(DType::U8, |t| t.dtype);
    Ok(t)
}

pub(crate) fn matmul_integer(cx: &Cx) -> Out {
    let mut t = matmul_types(cx.ty(0)?, cx.ty(1)?)?;
    t[0].dtype = DType::I32;
    Ok(t)
}

/// Inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp.
pub(crate) fn qlinear_matmul(cx: &Cx) -> Out {
    let mut t = matmul_types(cx.ty(0)?, cx.ty(3)?)?;
    t[0].dtype = cx.ty(7)?.dtype;
    Ok(t)
}

/// The loss (the target's shape without reduction, else a scalar), and for
/// SoftmaxCrossEntropyLoss the log-probabilities.
pub(crate) fn loss(cx: &Cx, l: &Loss) -> Out {
    let (x, target) = (cx.ty(0)?, cx.ty(1)?);
    let out = match l.reduction.as_str() {
        "none" => target.shape.clone(),
        "sum" | "mean" => Shape::scalar(),
        other => return Err(format!("reduction `{other}` is not none, sum or mean")),
    };
    Ok(vec![TensorType::new(x.dtype, out), x.clone()])
}

/// Y, Y_h (and Y_c) of the recurrent layers.
pub(crate) fn recurrent(
    cx: &Cx,
    hidden_size: Option<i64>,
    direction: &str,
    layout: i64,
    outputs: usize,
) -> Out {
    let (x, w) = (cx.ty(0)?, cx.ty(1)?);
    let dirs = match direction {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => {
            return Err(format!(
                "direction `{other}` is not forward, reverse or bidirectional"
            ))
        }
    };
    let hidden = match hidden_size {
        Some(h) => super::dims::dim_of(h, "hidden_size")?,
        None => dim(cx.ty(2)?, 2),
    };
    let (seq, batch) = if layout == 0 {
        (dim(x, 0), dim(x, 1))
    } else {
        (dim(x, 1), dim(x, 0))
    };
    unify(&dim(w, 0), &Dim::Known(dirs)).map_err(|e| format!("W's directions: {e}"))?;
    let nd = Dim::Known(dirs);
    let (y, h) = if layout == 0 {
        (
            vec![seq, nd.clone(), batch.clone(), hidden.clone()],
            vec![nd, batch, hidden],
        )
    } else {
        (
            vec![batch.clone(), seq, nd.clone(), hidden.clone()],
            vec![batch, nd, hidden],
        )
    };
    let mut out = vec![ranked(x.dtype, y), ranked(x.dtype, h.clone())];
    if outputs == 3 {
        out.push(ranked(x.dtype, h));
    }
    Ok(out)
}

/// `[..., 1 or 2]` to `[..., 2]`; the transformed axis takes `dft_length` (input 1) and
/// keeps only `n/2 + 1` bins when one-sided.
pub(crate) fn dft(cx: &Cx, d: &Dft) -> Out {
    let x = cx.ty(0)?;
    let Some(xd) = dims(x) else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    if xd.len() < 2 {
        return Err(format!("input must have rank ≥ 2, found {x}"));
    }
    let r = xd.len();
    let axis = norm_axis(d.axis, r - 1)?;
    let mut out = xd.to_vec();
    out[r - 1] = Dim::Known(2);
    let n = match cx.opt_ty(1) {
        Some(_) => match cx.ints(1).as_deref() {
            Some([n]) => super::dims::dim_of(*n, "dft_length")?,
            _ => Dim::Unknown,
        },
        None => out[axis].clone(),
    };
    out[axis] = match (d.onesided, n) {
        (true, Dim::Known(n)) => Dim::Known(n / 2 + 1),
        (true, _) => Dim::Unknown,
        (false, n) => n,
    };
    Ok(vec![ranked(x.dtype, out)])
}

pub(crate) fn stft(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    Ok(vec![ranked(
        x.dtype,
        vec![dim(x, 0), Dim::Unknown, Dim::Unknown, Dim::Known(2)],
    )])
}

/// A window of the length given by the scalar input.
pub(crate) fn window(cx: &Cx, dtype: DType) -> Out {
    let n = match cx.ints(0).as_deref() {
        Some([n]) => super::dims::dim_of(*n, "window length")?,
        _ => Dim::Unknown,
    };
    Ok(vec![ranked(dtype, vec![n])])
}

/// `[dft_length / 2 + 1, num_mel_bins]`.
pub(crate) fn mel_weight_matrix(cx: &Cx, dtype: DType) -> Out {
    let one = |i: usize| match cx.ints(i).as_deref() {
        Some([n]) => Some(*n),
        _ => None,
    };
    let bins = one(0).map_or(Ok(Dim::Unknown), |n| super::dims::dim_of(n, "num_mel_bins"))?;
    let rows = one(1).map_or(Ok(Dim::Unknown), |n| {
        super::dims::dim_of(n / 2 + 1, "dft_length")
    })?;
    Ok(vec![ranked(dtype, vec![rows, bins])])
}

/// f32 counts `[C]` or `[N, C]` with C one more than the largest n-gram index.
pub(crate) fn tf_idf(cx: &Cx, indexes: &[i64]) -> Out {
    let x = cx.ty(0)?;
    let c = Dim::Known(indexes.iter().copied().max().map_or(0, |m| m.max(-1) + 1) as u64);
    let out = match x.shape.rank() {
        Some(0) | Some(1) => vec![c],
        Some(2) => vec![dim(x, 0), c],
        Some(r) => return Err(format!("input must be 1-D or 2-D, found rank {r}")),
        None => return Ok(vec![TensorType::unranked(DType::F32)]),
    };
    Ok(vec![ranked(DType::F32, out)])
}

/// Optimizers: inputs R, T, then per-tensor groups; output `j` is shaped like tensor
/// `j mod n` of the first group.
pub(crate) fn optimizer(cx: &Cx, groups_out: usize) -> Out {
    let n_out = cx.n_outputs();
    let n = n_out / groups_out.max(1);
    let mut out = Vec::with_capacity(n_out);
    for j in 0..n_out {
        out.push(cx.ty(2 + j % n.max(1))?.clone());
    }
    Ok(out)
}

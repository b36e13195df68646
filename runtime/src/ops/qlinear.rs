//! Integer and quantized linear algebra: MatMulInteger, ConvInteger (int32 results of
//! zero-point-shifted 8-bit operands) and QLinearMatMul, QLinearConv (the same, requantized
//! with `scale_a · scale_b / scale_y`, rounded half to even, plus the output zero point,
//! saturated). Products are summed in f64, exact for any int32 result.

use crate::broadcast::map2;
use crate::error::{bail, Result};
use crate::ops::conv::conv_core;
use crate::ops::matmul::batched;
use crate::tensor::Tensor;
use compc_ir::op::Conv;
use compc_ir::DType;

fn int8(t: &Tensor, what: &str) -> Result<()> {
    match t.dtype() {
        DType::U8 | DType::I8 => Ok(()),
        other => bail!("{what} must be uint8 or int8, got {other}"),
    }
}

/// `x - zp` in f64; `zp` is a scalar or, when `per` says so, one value per index of
/// axis `axis` of `x`.
fn shifted(x: &Tensor, zp: Option<&Tensor>, axis: Option<usize>, what: &str) -> Result<Vec<f64>> {
    let xv = x.to_f64_vec();
    let Some(z) = zp else { return Ok(xv) };
    if z.dtype() != x.dtype() {
        bail!(
            "{what} zero point is {}, the input is {}",
            z.dtype(),
            x.dtype()
        );
    }
    let zv = z.to_f64_vec();
    if zv.len() == 1 {
        let z0 = zv[0];
        return Ok(xv.into_iter().map(|v| v - z0).collect());
    }
    let Some(ax) = axis.filter(|&a| a < x.rank() && x.shape()[a] == zv.len()) else {
        bail!(
            "{what} zero point of shape {:?} does not fit input {:?}",
            z.shape(),
            x.shape()
        );
    };
    let mut zs = vec![1; x.rank()];
    zs[ax] = zv.len();
    Ok(map2(&xv, x.shape(), &zv, &zs, |a, b| a - b)?.1)
}

/// The matrices' row axis of A (per-row zero points) and column axis of B.
fn mat_axes(a: &Tensor, b: &Tensor) -> (Option<usize>, Option<usize>) {
    let ra = (a.rank() >= 2).then(|| a.rank() - 2);
    let cb = (b.rank() >= 2).then(|| b.rank() - 1);
    (ra, cb)
}

fn int_product(a: &Tensor, b: &Tensor, av: &[f64], bv: &[f64]) -> Result<(Vec<usize>, Vec<f64>)> {
    let (mut sa, mut sb) = (a.shape().to_vec(), b.shape().to_vec());
    if sa.is_empty() || sb.is_empty() {
        bail!("matrix product of a scalar");
    }
    let (va, vb) = (sa.len() == 1, sb.len() == 1);
    if va {
        sa.insert(0, 1);
    }
    if vb {
        sb.push(1);
    }
    let (mut shape, v) = batched(av, &sa, bv, &sb)?;
    if vb {
        shape.pop();
    }
    if va {
        let r = shape.len();
        shape.remove(r - if vb { 1 } else { 2 });
    }
    Ok((shape, v))
}

pub fn matmul_integer(
    a: &Tensor,
    b: &Tensor,
    azp: Option<&Tensor>,
    bzp: Option<&Tensor>,
) -> Result<Tensor> {
    int8(a, "matmul_integer A")?;
    int8(b, "matmul_integer B")?;
    let (ra, cb) = mat_axes(a, b);
    let av = shifted(a, azp, ra, "matmul_integer A")?;
    let bv = shifted(b, bzp, cb, "matmul_integer B")?;
    let (shape, v) = int_product(a, b, &av, &bv)?;
    Tensor::from_i64_as(DType::I32, shape, v.into_iter().map(|x| x as i64).collect())
}

/// The weight zero points of the integer convolutions: one, or one per output channel.
fn conv_operands(
    x: &Tensor,
    w: &Tensor,
    xzp: Option<&Tensor>,
    wzp: Option<&Tensor>,
    what: &str,
) -> Result<(Vec<f64>, Vec<f64>)> {
    int8(x, what)?;
    int8(w, what)?;
    if xzp.is_some_and(|z| z.numel() != 1) {
        bail!("{what}: the input zero point must be a scalar");
    }
    Ok((
        shifted(x, xzp, None, what)?,
        shifted(w, wzp, Some(0), what)?,
    ))
}

pub fn conv_integer(
    x: &Tensor,
    w: &Tensor,
    xzp: Option<&Tensor>,
    wzp: Option<&Tensor>,
    c: &Conv,
) -> Result<Tensor> {
    let (xv, wv) = conv_operands(x, w, xzp, wzp, "conv_integer")?;
    let (shape, v) = conv_core(&xv, x.shape(), &wv, w.shape(), None, c)?;
    Tensor::from_i64_as(DType::I32, shape, v.into_iter().map(|x| x as i64).collect())
}

fn scalar_f32(t: &Tensor, what: &str) -> Result<f32> {
    match t.to_f32_vec().as_slice() {
        [v] => Ok(*v),
        _ => bail!("{what} must be a scalar, got shape {:?}", t.shape()),
    }
}

/// `round(acc · multiplier) + zp`, saturated to the output type's range.
fn requantize(acc: f64, mult: f32, zp: f64, lo: f64, hi: f64) -> i64 {
    ((acc * mult as f64).round_ties_even() + zp).clamp(lo, hi) as i64
}

fn out_range(zp: &Tensor) -> Result<(f64, f64)> {
    Ok(match zp.dtype() {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        other => bail!("the output zero point must be uint8 or int8, got {other}"),
    })
}

pub fn qlinear_matmul(ins: [&Tensor; 8]) -> Result<Tensor> {
    let [a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp] = ins;
    int8(a, "qlinear_matmul A")?;
    int8(b, "qlinear_matmul B")?;
    let (ra, cb) = mat_axes(a, b);
    let av = shifted(a, Some(a_zp), ra, "qlinear_matmul A")?;
    let bv = shifted(b, Some(b_zp), cb, "qlinear_matmul B")?;
    let (shape, acc) = int_product(a, b, &av, &bv)?;
    let (asv, bsv) = (a_s.to_f32_vec(), b_s.to_f32_vec());
    let ys = scalar_f32(y_s, "qlinear_matmul y_scale")?;
    let yz = y_zp.get_f64(0).unwrap_or(0.0);
    let (lo, hi) = out_range(y_zp)?;
    let n = *shape.last().unwrap_or(&1);
    let m = if shape.len() >= 2 {
        shape[shape.len() - 2]
    } else {
        1
    };
    let pick = |v: &[f32], i: usize, what: &str| -> Result<f32> {
        match v.len() {
            1 => Ok(v[0]),
            l if l > i => Ok(v[i]),
            _ => bail!("qlinear_matmul {what} has {} values", v.len()),
        }
    };
    let mut out = Vec::with_capacity(acc.len());
    for (i, &s) in acc.iter().enumerate() {
        let col = i % n.max(1);
        let row = (i / n.max(1)) % m.max(1);
        let mult = pick(&asv, row, "a_scale")? * pick(&bsv, col, "b_scale")? / ys;
        out.push(requantize(s, mult, yz, lo, hi));
    }
    Tensor::from_i64_as(y_zp.dtype(), shape, out)
}

pub fn qlinear_conv(ins: [&Tensor; 8], bias: Option<&Tensor>, c: &Conv) -> Result<Tensor> {
    let [x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp] = ins;
    let (xv, wv) = conv_operands(x, w, Some(x_zp), Some(w_zp), "qlinear_conv")?;
    let bv = match bias {
        Some(b) if b.dtype() != DType::I32 => {
            bail!("qlinear_conv bias must be int32, got {}", b.dtype())
        }
        Some(b) => Some(b.to_f64_vec()),
        None => None,
    };
    let (shape, acc) = conv_core(&xv, x.shape(), &wv, w.shape(), bv.as_deref(), c)?;
    let xs = scalar_f32(x_s, "qlinear_conv x_scale")?;
    let ys = scalar_f32(y_s, "qlinear_conv y_scale")?;
    let wsv = w_s.to_f32_vec();
    let m = shape.get(1).copied().unwrap_or(1);
    if wsv.len() != 1 && wsv.len() != m {
        bail!(
            "qlinear_conv w_scale has {} values for {m} channels",
            wsv.len()
        );
    }
    let inner: usize = shape.get(2..).map_or(1, |s| s.iter().product());
    let yz = y_zp.get_f64(0).unwrap_or(0.0);
    let (lo, hi) = out_range(y_zp)?;
    let out = acc
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ch = (i / inner.max(1)) % m.max(1);
            let ws = if wsv.len() == 1 { wsv[0] } else { wsv[ch] };
            requantize(s, xs * ws / ys, yz, lo, hi)
        })
        .collect();
    Tensor::from_i64_as(y_zp.dtype(), shape, out)
}

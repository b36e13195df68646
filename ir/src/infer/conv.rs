//! Spatial ops on `[N, C, D1, …, Dn]`: Conv, ConvTranspose, MaxPool/AveragePool, the
//! global pools and Resize. Output sizes follow ONNX's formulas for pads, strides,
//! dilations, `auto_pad` and `ceil_mode`.

use super::dims::{mul, norm_axes, unify};
use super::Cx;
use crate::dtype::DType;
use crate::op::{Conv, ConvTranspose, Pool, Resize};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

/// Per spatial dim attributes, defaults filled in and lengths checked.
struct Window {
    strides: Vec<i64>,
    dilations: Vec<i64>,
    /// Begin pads then end pads, zero under `VALID`.
    pads: Vec<i64>,
    same: bool,
}

fn per_dim(v: &[i64], n: usize, default: i64, name: &str) -> Result<Vec<i64>, String> {
    if v.is_empty() {
        return Ok(vec![default; n]);
    }
    if v.len() != n {
        return Err(format!(
            "{name} has {} entries for {n} spatial dims",
            v.len()
        ));
    }
    Ok(v.to_vec())
}

impl Window {
    fn new(
        auto_pad: &str,
        strides: &[i64],
        dilations: &[i64],
        pads: &[i64],
        n: usize,
    ) -> Result<Window, String> {
        let strides = per_dim(strides, n, 1, "strides")?;
        let dilations = per_dim(dilations, n, 1, "dilations")?;
        let mut pads = per_dim(pads, 2 * n, 0, "pads")?;
        if let Some(s) = strides.iter().chain(&dilations).find(|&&s| s <= 0) {
            return Err(format!("strides and dilations must be positive, found {s}"));
        }
        if let Some(p) = pads.iter().find(|&&p| p < 0) {
            return Err(format!("pads must not be negative, found {p}"));
        }
        let same = match auto_pad {
            "NOTSET" | "" => false,
            "SAME_UPPER" | "SAME_LOWER" => true,
            "VALID" => {
                pads.iter_mut().for_each(|p| *p = 0);
                false
            }
            other => {
                return Err(format!(
                    "auto_pad `{other}` is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"
                ))
            }
        };
        Ok(Window {
            strides,
            dilations,
            pads,
            same,
        })
    }

    fn pads_of(&self, i: usize) -> (i64, i64) {
        (self.pads[i], self.pads[i + self.strides.len()])
    }

    /// Output size of spatial dim `i` of a convolution or pooling window of `k`.
    fn out(&self, i: usize, input: &Dim, k: Option<i64>, ceil_mode: bool) -> Result<Dim, String> {
        let s = self.strides[i];
        let (pb, pe) = self.pads_of(i);
        if self.same {
            return Ok(match input {
                Dim::Known(n) => Dim::Known(n.div_ceil(s as u64)),
                d if s == 1 => d.clone(),
                _ => Dim::Unknown,
            });
        }
        let Some(k) = k else { return Ok(Dim::Unknown) };
        if k <= 0 {
            return Err(format!("spatial dim {i}: kernel size {k} is not positive"));
        }
        let eff_k = (self.dilations[i] as i128) * (k as i128 - 1) + 1;
        let Dim::Known(n) = input else {
            // Stride 1 with pads that exactly cover the kernel keeps the size.
            let keeps = s == 1 && pb as i128 + pe as i128 == eff_k - 1;
            return Ok(if keeps { input.clone() } else { Dim::Unknown });
        };
        let n = *n as i128;
        let span = n + pb as i128 + pe as i128 - eff_k;
        if span < 0 {
            return Err(format!(
                "spatial dim {i}: input {n} with pads {pb}+{pe} is smaller than the kernel extent {eff_k}"
            ));
        }
        let s = s as i128;
        let mut out = if ceil_mode {
            (span + s - 1) / s + 1
        } else {
            span / s + 1
        };
        // A last window that would start in the end padding is dropped (as in PyTorch).
        if ceil_mode && (out - 1) * s >= n + pb as i128 {
            out -= 1;
        }
        u64::try_from(out)
            .map(Dim::Known)
            .map_err(|_| "output size overflows".into())
    }
}

/// `[N, C, spatial…]` dims of X, or `None` when unranked.
fn spatial(x: &TensorType) -> Result<Option<&[Dim]>, String> {
    match x.shape.dims() {
        Some(d) if d.len() < 3 => Err(format!("input must be [N, C, D1, …], found {x}")),
        d => Ok(d),
    }
}

fn kernel_of(attr: &[i64], w: Option<&[Dim]>, n: usize) -> Result<Vec<Option<i64>>, String> {
    if !attr.is_empty() {
        let k = per_dim(attr, n, 1, "kernel_shape")?;
        if let Some(bad) = k.iter().find(|&&k| k <= 0) {
            return Err(format!(
                "kernel_shape entries must be positive, found {bad}"
            ));
        }
        return Ok(k.into_iter().map(Some).collect());
    }
    Ok((0..n)
        .map(|i| {
            w.and_then(|w| w.get(2 + i))
                .and_then(Dim::known)
                .and_then(|k| i64::try_from(k).ok())
        })
        .collect())
}

pub(crate) fn conv(cx: &Cx, c: &Conv) -> Out {
    conv_types(cx.ty(0)?, cx.ty(1)?, c)
}

/// Conv's output type for input `x` and weights `w` (ConvInteger and QLinearConv read
/// them from other positions and change the element type).
pub(crate) fn conv_types(x: &TensorType, w: &TensorType, c: &Conv) -> Out {
    let Some(xd) = spatial(x)? else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let n = xd.len() - 2;
    let wd = w.shape.dims();
    if let Some(wd) = wd {
        if wd.len() != xd.len() {
            return Err(format!(
                "weights {w} must have the input's rank {}",
                xd.len()
            ));
        }
        if c.group <= 0 {
            return Err(format!("group {} must be positive", c.group));
        }
        let per_group = mul(&wd[1], &Dim::Known(c.group as u64));
        unify(&xd[1], &per_group).map_err(|_| {
            format!(
                "input has {} channels but the weights expect {} × group {}",
                xd[1], wd[1], c.group
            )
        })?;
    }
    let kernel = kernel_of(&c.kernel_shape, wd, n)?;
    let win = Window::new(&c.auto_pad, &c.strides, &c.dilations, &c.pads, n)?;
    let mut out = vec![xd[0].clone(), wd.map_or(Dim::Unknown, |w| w[0].clone())];
    for i in 0..n {
        out.push(win.out(i, &xd[2 + i], kernel[i], false)?);
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

pub(crate) fn conv_transpose(cx: &Cx, c: &ConvTranspose) -> Out {
    let (x, w) = (cx.ty(0)?, cx.ty(1)?);
    let Some(xd) = spatial(x)? else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let n = xd.len() - 2;
    let wd = w.shape.dims();
    if c.group <= 0 {
        return Err(format!("group {} must be positive", c.group));
    }
    let channels = match wd {
        Some(wd) if wd.len() != xd.len() => {
            return Err(format!(
                "weights {w} must have the input's rank {}",
                xd.len()
            ))
        }
        Some(wd) => {
            unify(&xd[1], &wd[0])
                .map_err(|e| format!("input channels and weights disagree: {e}"))?;
            mul(&wd[1], &Dim::Known(c.group as u64))
        }
        None => Dim::Unknown,
    };
    let mut out = vec![xd[0].clone(), channels];
    if !c.output_shape.is_empty() {
        // Either the spatial dims alone or the full shape.
        let sp = match c.output_shape.len() {
            l if l == n => &c.output_shape[..],
            l if l == n + 2 => &c.output_shape[2..],
            l => return Err(format!("output_shape has {l} entries for {n} spatial dims")),
        };
        for &d in sp {
            out.push(super::dims::dim_of(d, "output_shape entry")?);
        }
        return Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))]);
    }
    let kernel = kernel_of(&c.kernel_shape, wd, n)?;
    let win = Window::new(&c.auto_pad, &c.strides, &c.dilations, &c.pads, n)?;
    let out_pad = per_dim(&c.output_padding, n, 0, "output_padding")?;
    for i in 0..n {
        let s = win.strides[i] as i128;
        let (pb, pe) = win.pads_of(i);
        let d = match (&xd[2 + i], kernel[i]) {
            (Dim::Known(len), _) if win.same => Dim::Known(len.saturating_mul(s as u64)),
            (Dim::Known(len), Some(k)) => {
                let eff_k = (win.dilations[i] as i128) * (k as i128 - 1) + 1;
                let v =
                    s * (*len as i128 - 1) + out_pad[i] as i128 + eff_k - pb as i128 - pe as i128;
                let v = u64::try_from(v)
                    .map_err(|_| format!("spatial dim {i}: output size {v} is not positive"))?;
                Dim::Known(v)
            }
            (d, _) if win.same && s == 1 => d.clone(),
            (d, Some(k)) if s == 1 && out_pad[i] == 0 => {
                let eff_k = (win.dilations[i] as i128) * (k as i128 - 1) + 1;
                if pb as i128 + pe as i128 == eff_k - 1 {
                    d.clone()
                } else {
                    Dim::Unknown
                }
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// MaxPool (with its optional i64 indices output) and AveragePool.
pub(crate) fn pool(cx: &Cx, p: &Pool, is_max: bool) -> Out {
    let x = cx.ty(0)?;
    let Some(xd) = spatial(x)? else {
        return Ok(vec![
            TensorType::unranked(x.dtype),
            TensorType::unranked(DType::I64),
        ]);
    };
    let n = xd.len() - 2;
    if p.kernel_shape.is_empty() {
        return Err("kernel_shape is required".into());
    }
    let kernel = kernel_of(&p.kernel_shape, None, n)?;
    let win = Window::new(&p.auto_pad, &p.strides, &p.dilations, &p.pads, n)?;
    let mut out = xd[..2].to_vec();
    for i in 0..n {
        out.push(win.out(i, &xd[2 + i], kernel[i], p.ceil_mode)?);
    }
    let y = TensorType::new(x.dtype, Shape::Ranked(out.clone()));
    if is_max {
        Ok(vec![y, TensorType::new(DType::I64, Shape::Ranked(out))])
    } else {
        Ok(vec![y])
    }
}

pub(crate) fn global_pool(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let out = match x.shape.dims() {
        None => Shape::Unranked,
        Some(d) if d.len() < 2 => return Err(format!("input must be [N, C, …], found {x}")),
        Some(d) => {
            let mut o = d[..2].to_vec();
            o.extend(std::iter::repeat_n(Dim::Known(1), d.len() - 2));
            Shape::Ranked(o)
        }
    };
    Ok(vec![TensorType::new(x.dtype, out)])
}

/// Output sizes from `sizes` (input 3) or `floor(dim · scale)` from `scales` (input 2).
pub(crate) fn resize(cx: &Cx, r: &Resize) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    let axes = match &r.axes {
        Some(a) => norm_axes(a, dims.len())?,
        None => (0..dims.len()).collect(),
    };
    let mut out = dims.to_vec();
    let non_empty = |i: usize| {
        cx.node.input(i).is_some()
            && !matches!(
                cx.opt_ty(i).and_then(|t| t.shape.dims()),
                Some([Dim::Known(0)])
            )
    };
    if non_empty(3) {
        let Some(sizes) = cx
            .shape_value(3, "sizes")?
            .filter(|s| s.iter().any(|d| *d != Dim::Unknown))
        else {
            axes.iter().for_each(|&a| out[a] = Dim::Unknown);
            return Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))]);
        };
        if sizes.len() != axes.len() {
            return Err(format!(
                "sizes has {} entries for {} axes",
                sizes.len(),
                axes.len()
            ));
        }
        keep_aspect(&r.keep_aspect_ratio_policy, dims, &axes, &sizes, &mut out)?;
    } else if non_empty(2) {
        match cx.floats(2) {
            Some(scales) => {
                if scales.len() != axes.len() {
                    return Err(format!(
                        "scales has {} entries for {} axes",
                        scales.len(),
                        axes.len()
                    ));
                }
                for (&a, &s) in axes.iter().zip(&scales) {
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(format!("scale {s} must be positive"));
                    }
                    out[a] = match &dims[a] {
                        Dim::Known(n) => Dim::Known((*n as f64 * s as f64).floor() as u64),
                        d if s == 1.0 => d.clone(),
                        _ => Dim::Unknown,
                    };
                }
            }
            None => axes.iter().for_each(|&a| out[a] = Dim::Unknown),
        }
    } else {
        return Err("needs `scales` (input 2) or `sizes` (input 3)".into());
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// `stretch` takes the sizes; `not_larger`/`not_smaller` scale every axis by the
/// smallest/largest ratio and round.
fn keep_aspect(
    policy: &str,
    dims: &[Dim],
    axes: &[usize],
    sizes: &[Dim],
    out: &mut [Dim],
) -> Result<(), String> {
    let pick_min = match policy {
        "stretch" => {
            for (&a, s) in axes.iter().zip(sizes) {
                out[a] = s.clone();
            }
            return Ok(());
        }
        "not_larger" => true,
        "not_smaller" => false,
        other => {
            return Err(format!(
                "keep_aspect_ratio_policy `{other}` is not stretch, not_larger or not_smaller"
            ))
        }
    };
    let mut ratio: Option<f64> = None;
    for (&a, s) in axes.iter().zip(sizes) {
        let (Dim::Known(n), Dim::Known(want)) = (&dims[a], s) else {
            axes.iter().for_each(|&a| out[a] = Dim::Unknown);
            return Ok(());
        };
        let q = *want as f64 / *n as f64;
        ratio = Some(match ratio {
            None => q,
            Some(r) if pick_min => r.min(q),
            Some(r) => r.max(q),
        });
    }
    if let Some(q) = ratio {
        for &a in axes {
            if let Dim::Known(n) = dims[a] {
                out[a] = Dim::Known((q * n as f64).round_ties_even() as u64);
            }
        }
    }
    Ok(())
}

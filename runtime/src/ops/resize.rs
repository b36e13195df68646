//! Resize (opsets 11–19): nearest (all `nearest_mode`s), linear and cubic, every
//! coordinate transformation mode (`tf_crop_and_resize` with its extrapolation), from scales or sizes
//! (with `axes` and `keep_aspect_ratio_policy`). Linear and cubic are separable, so they
//! run as 1-D passes along each resized axis, which equals ORT's N-linear kernels; nearest
//! is a gather and works for every element type.

use crate::broadcast::{cartesian_index, norm_axis, split_at_axis};
use crate::error::{bail, Result};
use crate::tensor::Tensor;
use compc_ir::op::Resize;
use rayon::prelude::*;

/// Output sizes and per-axis scales.
fn plan(
    x: &Tensor,
    a: &Resize,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
) -> Result<(Vec<usize>, Vec<f64>)> {
    let r = x.rank();
    let axes: Vec<usize> = match &a.axes {
        Some(v) => v
            .iter()
            .map(|&ax| norm_axis(ax, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let ins = x.shape();
    let mut out = ins.to_vec();
    let mut sc = vec![1f64; r];
    let scales = scales.filter(|t| t.numel() > 0);
    let sizes = sizes.filter(|t| t.numel() > 0);
    match (scales, sizes) {
        (Some(s), None) => {
            let sv = s.to_f64_vec();
            if sv.len() != axes.len() || sv.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
                bail!(
                    "resize scales {sv:?} must be {} positive values",
                    axes.len()
                );
            }
            for (&ax, &v) in axes.iter().zip(&sv) {
                sc[ax] = v;
                out[ax] = (ins[ax] as f64 * v)
                    .floor()
                    .min(crate::tensor::MAX_NUMEL as f64 + 1.0) as usize;
            }
        }
        (None, Some(s)) => {
            let sv = s.to_i64_vec();
            if sv.len() != axes.len() || sv.iter().any(|&v| v < 0) {
                bail!(
                    "resize sizes {sv:?} must be {} non-negative values",
                    axes.len()
                );
            }
            let ratio = |i: usize| sv[i] as f64 / ins[axes[i]].max(1) as f64;
            let policy = a.keep_aspect_ratio_policy.as_str();
            let common = match policy {
                "stretch" => None,
                "not_larger" => Some((0..axes.len()).map(ratio).fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some((0..axes.len()).map(ratio).fold(0.0, f64::max)),
                other => bail!("unknown keep_aspect_ratio_policy `{other}`"),
            };
            for (i, &ax) in axes.iter().enumerate() {
                match common {
                    None => {
                        sc[ax] = ratio(i);
                        out[ax] = sv[i] as usize;
                    }
                    Some(c) => {
                        sc[ax] = c;
                        out[ax] = (ins[ax] as f64 * c)
                            .round()
                            .min(crate::tensor::MAX_NUMEL as f64 + 1.0)
                            as usize;
                    }
                }
            }
        }
        _ => bail!("resize needs exactly one of scales and sizes"),
    }
    Ok((out, sc))
}

/// Maps an output coordinate to the input coordinate. `roi` is the axis's (start, end)
/// for `tf_crop_and_resize`.
fn source_coord(
    mode: &str,
    o: usize,
    scale: f64,
    n_in: usize,
    n_out: usize,
    roi: (f64, f64),
) -> Result<f64> {
    let x = o as f64;
    Ok(match mode {
        "tf_half_pixel_for_nn" => (x + 0.5) / scale,
        "tf_crop_and_resize" => {
            let (start, end) = roi;
            let last = n_in as f64 - 1.0;
            if n_out > 1 {
                start * last + x * (end - start) * last / (n_out as f64 - 1.0)
            } else {
                0.5 * (start + end) * last
            }
        }
        "half_pixel" => (x + 0.5) / scale - 0.5,
        "half_pixel_symmetric" => {
            let adj = n_out as f64 / (scale * n_in as f64);
            let center = n_in as f64 / 2.0;
            center * (1.0 - adj) + (x + 0.5) / scale - 0.5
        }
        "pytorch_half_pixel" => {
            if n_out > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        "align_corners" => {
            if n_out == 1 {
                0.0
            } else {
                x * (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
            }
        }
        "asymmetric" => x / scale,
        other => bail!("resize coordinate_transformation_mode `{other}` is not supported"),
    })
}

fn nearest_index(mode: &str, c: f64, n_in: usize) -> Result<usize> {
    let i = match mode {
        "round_prefer_floor" => {
            if c.fract() == 0.5 {
                c.floor()
            } else {
                c.round()
            }
        }
        "round_prefer_ceil" => {
            if c.fract() == 0.5 {
                c.ceil()
            } else {
                c.round()
            }
        }
        "floor" => c.floor(),
        "ceil" => c.ceil(),
        other => bail!("unknown nearest_mode `{other}`"),
    };
    Ok(i.clamp(0.0, n_in.saturating_sub(1) as f64) as usize)
}

fn cubic_coeffs(t: f64, a: f64) -> [f64; 4] {
    let w = |d: f64| {
        let d = d.abs();
        if d <= 1.0 {
            ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
        } else if d < 2.0 {
            ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
        } else {
            0.0
        }
    };
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

/// Taps (input index, weight) of every output position along one axis.
fn taps(
    a: &Resize,
    o_n: usize,
    n_in: usize,
    scale: f64,
    roi: (f64, f64),
) -> Result<Vec<Vec<(usize, f64)>>> {
    let last = n_in.saturating_sub(1) as f64;
    (0..o_n)
        .map(|o| {
            let c = source_coord(&a.coordinate_transformation_mode, o, scale, n_in, o_n, roi)?;
            Ok(match a.mode.as_str() {
                "linear" => {
                    let c = c.clamp(0.0, last);
                    let x0 = c.floor();
                    let w1 = c - x0;
                    let i0 = x0 as usize;
                    vec![(i0, 1.0 - w1), ((i0 + 1).min(n_in - 1), w1)]
                }
                "cubic" => {
                    let x0 = c.floor();
                    let co = cubic_coeffs(c - x0, a.cubic_coeff_a as f64);
                    let mut t: Vec<(usize, f64)> = Vec::with_capacity(4);
                    let mut total = 0.0;
                    for (j, &w) in co.iter().enumerate() {
                        let p = x0 as i64 - 1 + j as i64;
                        let inside = p >= 0 && p < n_in as i64;
                        if a.exclude_outside && !inside {
                            continue;
                        }
                        total += w;
                        t.push((p.clamp(0, n_in as i64 - 1) as usize, w));
                    }
                    if a.exclude_outside && total != 0.0 {
                        t.iter_mut().for_each(|(_, w)| *w /= total);
                    }
                    t
                }
                other => bail!("resize mode `{other}` is not supported"),
            })
        })
        .collect()
}

fn resample_axis(v: &[f32], shape: &[usize], axis: usize, tp: &[Vec<(usize, f64)>]) -> Vec<f32> {
    let (outer, n, inner) = split_at_axis(shape, axis);
    let o_n = tp.len();
    let mut out = vec![0f32; outer * o_n * inner];
    if o_n * inner == 0 {
        return out;
    }
    out.par_chunks_mut(o_n * inner)
        .enumerate()
        .for_each(|(b, dst)| {
            let src = &v[b * n * inner..(b + 1) * n * inner];
            for (o, t) in tp.iter().enumerate() {
                for i in 0..inner {
                    dst[o * inner + i] = t
                        .iter()
                        .map(|&(j, w)| src[j * inner + i] as f64 * w)
                        .sum::<f64>() as f32;
                }
            }
        });
    out
}

/// Per-axis (start, end) of the crop for `tf_crop_and_resize` (whole axes otherwise).
fn roi_of(x: &Tensor, a: &Resize, roi: Option<&Tensor>) -> Result<Vec<(f64, f64)>> {
    let r = x.rank();
    let mut out = vec![(0.0, 1.0); r];
    if a.coordinate_transformation_mode != "tf_crop_and_resize" {
        return Ok(out);
    }
    let Some(v) = roi.map(|t| t.to_f64_vec()).filter(|v| !v.is_empty()) else {
        bail!("resize with tf_crop_and_resize needs a roi");
    };
    let axes: Vec<usize> = match &a.axes {
        Some(ax) => ax.iter().map(|&d| norm_axis(d, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if v.len() != 2 * axes.len() {
        bail!("resize roi has {} values for {} axes", v.len(), axes.len());
    }
    for (i, &d) in axes.iter().enumerate() {
        out[d] = (v[i], v[i + axes.len()]);
    }
    Ok(out)
}

pub fn resize(
    x: &Tensor,
    roi: Option<&Tensor>,
    scales: Option<&Tensor>,
    sizes: Option<&Tensor>,
    a: &Resize,
) -> Result<Tensor> {
    let rois = roi_of(x, a, roi)?;
    let crop = a.coordinate_transformation_mode == "tf_crop_and_resize";
    let (out, sc) = plan(x, a, scales, sizes)?;
    crate::tensor::checked_numel(&out, "resize")?;
    if x.shape().iter().zip(&out).any(|(&i, &o)| i == 0 && o > 0) {
        bail!("resize cannot enlarge an empty axis of {:?}", x.shape());
    }
    // With tf_crop_and_resize, output positions whose source lies outside the input take
    // `extrapolation_value` (per axis: `outside[d][o]`).
    let mut outside: Vec<Vec<bool>> = Vec::with_capacity(x.rank());
    for d in 0..x.rank() {
        let mut v = vec![false; out[d]];
        if crop {
            for (o, f) in v.iter_mut().enumerate() {
                let c = source_coord(
                    &a.coordinate_transformation_mode,
                    o,
                    sc[d],
                    x.shape()[d],
                    out[d],
                    rois[d],
                )?;
                *f = c < 0.0 || c > x.shape()[d] as f64 - 1.0;
            }
        }
        outside.push(v);
    }
    let extrapolate = outside.iter().any(|v| v.contains(&true));
    if a.mode == "nearest" {
        let per_axis = (0..x.rank())
            .map(|d| {
                (0..out[d])
                    .map(|o| {
                        if outside[d][o] {
                            return Ok(usize::MAX);
                        }
                        let c = source_coord(
                            &a.coordinate_transformation_mode,
                            o,
                            sc[d],
                            x.shape()[d],
                            out[d],
                            rois[d],
                        )?;
                        nearest_index(&a.nearest_mode, c, x.shape()[d])
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let fill = if extrapolate {
            Some(Tensor::from_f64_as(
                x.dtype(),
                vec![1],
                vec![a.extrapolation_value as f64],
            )?)
        } else {
            None
        };
        return x.take(&cartesian_index(x.shape(), &per_axis), out, fill.as_ref());
    }
    if !x.dtype().is_float() {
        bail!(
            "resize mode `{}` needs a float input, got {}",
            a.mode,
            x.dtype()
        );
    }
    if a.antialias && sc.iter().any(|&s| s < 1.0) {
        bail!("resize with antialias while downsampling is not supported");
    }
    let mut shape = x.shape().to_vec();
    let mut v = x.to_f32_vec();
    for d in 0..x.rank() {
        if out[d] == shape[d] && sc[d] == 1.0 && !crop {
            continue;
        }
        let tp = taps(a, out[d], shape[d], sc[d], rois[d])?;
        v = resample_axis(&v, &shape, d, &tp);
        shape[d] = out[d];
    }
    if extrapolate {
        // An out-of-range index on any axis makes the whole hyperplane extrapolated, and
        // the separable passes never mix it with in-range positions.
        let st = crate::broadcast::strides(&shape);
        for (i, e) in v.iter_mut().enumerate() {
            let hit = (0..shape.len()).any(|d| outside[d][(i / st[d]) % shape[d]]);
            if hit {
                *e = a.extrapolation_value;
            }
        }
    }
    Tensor::from_f32_as(x.dtype(), shape, v)
}

//! Detection and sampling: MaxUnpool, RoiAlign, NonMaxSuppression, GridSample. The
//! arithmetic follows ONNX's reference implementations (which follow onnxruntime's), down
//! to where coordinates are clamped, so results agree to the last bit where they can.

use crate::error::{bail, Result};
use crate::ops::shape_ops::ints;
use crate::tensor::{checked_numel, Tensor};
use compc_ir::op::{GridSample, MaxUnpool, RoiAlign};
use std::cmp::Ordering;

/// Scatters `x` into zeros at the flat output positions `indices` (from MaxPool).
pub fn max_unpool(
    x: &Tensor,
    indices: &Tensor,
    shape: Option<&Tensor>,
    m: &MaxUnpool,
) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() < 3 {
        bail!(
            "max_unpool needs a float input [N, C, ...], got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    if indices.shape() != x.shape() {
        bail!(
            "max_unpool indices of shape {:?} differ from the input's {:?}",
            indices.shape(),
            x.shape()
        );
    }
    let n = x.rank() - 2;
    if m.kernel_shape.len() != n {
        bail!(
            "max_unpool kernel_shape {:?} does not fit {n} spatial dims",
            m.kernel_shape
        );
    }
    let mut default = x.shape()[..2].to_vec();
    for i in 0..n {
        let s = m.strides.get(i).copied().unwrap_or(1);
        let p = m.pads.get(i).copied().unwrap_or(0) + m.pads.get(i + n).copied().unwrap_or(0);
        let d = (x.shape()[2 + i] as i64 - 1) * s + m.kernel_shape[i] - p;
        if d < 0 {
            bail!("max_unpool output size {d} is negative");
        }
        default.push(d as usize);
    }
    let out: Vec<usize> = match shape {
        Some(s) => {
            let v = ints(s, "output_shape")?;
            if v.len() != x.rank() || v.iter().any(|&d| d < 0) {
                bail!(
                    "max_unpool output_shape {v:?} does not fit rank {}",
                    x.rank()
                );
            }
            v.iter().map(|&d| d as usize).collect()
        }
        None => default.clone(),
    };
    let total = checked_numel(&out, "max_unpool")?;
    let dtotal = checked_numel(&default, "max_unpool")?;
    // Indices count positions in the default output; a given output_shape keeps each
    // value at the same coordinates (ONNX's reference reading).
    let (dst, ost) = (
        crate::broadcast::strides(&default),
        crate::broadcast::strides(&out),
    );
    let mut y = vec![0f64; total];
    for (v, i) in x.to_f64_vec().into_iter().zip(indices.to_i64_vec()) {
        let Some(mut i) = usize::try_from(i).ok().filter(|&i| i < dtotal) else {
            bail!("max_unpool index {i} is out of range for output {default:?}");
        };
        let mut at = 0usize;
        for d in 0..default.len() {
            let c = i / dst[d];
            i %= dst[d];
            if c >= out[d] {
                bail!("max_unpool: a value falls outside output_shape {out:?}");
            }
            at += c * ost[d];
        }
        y[at] = v;
    }
    Tensor::from_f64_as(x.dtype(), out, y)
}

/// Bilinear weights and positions of one sampling point (all zero outside the map).
#[derive(Clone, Copy, Default)]
struct Sample {
    pos: [usize; 4],
    w: [f64; 4],
}

fn sample_at(y: f64, x: f64, h: usize, w: usize) -> Sample {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return Sample::default();
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Sample {
        pos: [yl * w + xl, yl * w + xh, yh * w + xl, yh * w + xh],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

pub fn roi_align(x: &Tensor, rois: &Tensor, batch: &Tensor, a: &RoiAlign) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() != 4 {
        bail!(
            "roi_align needs a float input [N, C, H, W], got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let nr = match rois.shape() {
        [n, 4] => *n,
        s => bail!("roi_align rois must be [num_rois, 4], got {s:?}"),
    };
    let bi = ints(batch, "batch_indices")?;
    if bi.len() != nr {
        bail!("roi_align has {} batch indices for {nr} rois", bi.len());
    }
    let half = match a.coordinate_transformation_mode.as_str() {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => bail!("roi_align coordinate_transformation_mode `{other}` is not supported"),
    };
    let max = match a.mode.as_str() {
        "avg" => false,
        "max" => true,
        other => bail!("roi_align mode `{other}` is not avg or max"),
    };
    if a.output_height <= 0 || a.output_width <= 0 || a.sampling_ratio < 0 {
        bail!("roi_align output size and sampling_ratio must be positive");
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (ph, pw) = (a.output_height as usize, a.output_width as usize);
    let out_shape = vec![nr, c, ph, pw];
    checked_numel(&out_shape, "roi_align")?;
    if h == 0 || w == 0 {
        return Tensor::from_f64_as(x.dtype(), out_shape, vec![0.0; nr * c * ph * pw]);
    }
    let xv = x.to_f64_vec();
    let rv = rois.to_f64_vec();
    let scale = a.spatial_scale as f64;
    let mut out = vec![0f64; nr * c * ph * pw];
    for r in 0..nr {
        let b = bi[r];
        if b < 0 || b as usize >= n {
            bail!("roi_align batch index {b} is out of range for {n} images");
        }
        let off = if half { 0.5 } else { 0.0 };
        let roi = &rv[r * 4..][..4];
        let (sw, sh) = (roi[0] * scale - off, roi[1] * scale - off);
        let (ew, eh) = (roi[2] * scale - off, roi[3] * scale - off);
        let (mut rw, mut rh) = (ew - sw, eh - sh);
        if !half {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let gh = if a.sampling_ratio > 0 {
            a.sampling_ratio as usize
        } else {
            (rh / ph as f64).ceil().max(0.0) as usize
        };
        let gw = if a.sampling_ratio > 0 {
            a.sampling_ratio as usize
        } else {
            (rw / pw as f64).ceil().max(0.0) as usize
        };
        let count = (gh * gw).max(1) as f64;
        let mut samples = Vec::with_capacity(ph * pw * gh * gw);
        for py in 0..ph {
            for px in 0..pw {
                for iy in 0..gh {
                    let yy = sh + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                    for ix in 0..gw {
                        let xx = sw + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                        samples.push(sample_at(yy, xx, h, w));
                    }
                }
            }
        }
        for ch in 0..c {
            let plane = &xv[(b as usize * c + ch) * h * w..][..h * w];
            for p in 0..ph * pw {
                let pts = &samples[p * gh * gw..][..gh * gw];
                let v = if max {
                    pts.iter()
                        .map(|s| {
                            (0..4)
                                .map(|k| s.w[k] * plane[s.pos[k]])
                                .fold(f64::NEG_INFINITY, f64::max)
                        })
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        .unwrap_or(0.0)
                } else {
                    pts.iter()
                        .map(|s| (0..4).map(|k| s.w[k] * plane[s.pos[k]]).sum::<f64>())
                        .sum::<f64>()
                        / count
                };
                out[(r * c + ch) * ph * pw + p] = v;
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), out_shape, out)
}

/// `[y1, x1, y2, x2]` corners of a box in either format, each pair ordered.
fn corners(b: &[f64], center: bool) -> [f64; 4] {
    if center {
        let (xc, yc, w, h) = (b[0], b[1], b[2], b[3]);
        [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
    } else {
        [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ]
    }
}

fn iou_above(a: &[f64; 4], b: &[f64; 4], threshold: f64) -> bool {
    let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ih * iw;
    let area = |c: &[f64; 4]| (c[2] - c[0]) * (c[3] - c[1]);
    let (aa, ab) = (area(a), area(b));
    if aa <= 0.0 || ab <= 0.0 {
        return false;
    }
    let union = aa + ab - inter;
    union > 0.0 && inter / union > threshold
}

pub fn non_max_suppression(
    boxes: &Tensor,
    scores: &Tensor,
    max_out: Option<&Tensor>,
    iou: Option<&Tensor>,
    score_th: Option<&Tensor>,
    center_point_box: i64,
) -> Result<Tensor> {
    let (nb, ns) = match boxes.shape() {
        [b, s, 4] => (*b, *s),
        s => bail!("non_max_suppression boxes must be [batch, boxes, 4], got {s:?}"),
    };
    let nc = match scores.shape() {
        [b, c, s] if *b == nb && *s == ns => *c,
        s => bail!("non_max_suppression scores of shape {s:?} do not fit boxes [{nb}, {ns}, 4]"),
    };
    let scalar = |t: Option<&Tensor>| t.and_then(|t| t.get_f64(0));
    let max_out = max_out
        .map(|t| t.to_i64_vec().first().copied().unwrap_or(0))
        .unwrap_or(0);
    let iou = scalar(iou).unwrap_or(0.0);
    let score_th = scalar(score_th);
    let center = match center_point_box {
        0 => false,
        1 => true,
        other => bail!("non_max_suppression center_point_box {other} is not 0 or 1"),
    };
    let bv = boxes.to_f64_vec();
    let sv = scores.to_f64_vec();
    let mut sel: Vec<i64> = Vec::new();
    if max_out > 0 {
        for b in 0..nb {
            let bx: Vec<[f64; 4]> = (0..ns)
                .map(|i| corners(&bv[(b * ns + i) * 4..][..4], center))
                .collect();
            for c in 0..nc {
                let s = &sv[(b * nc + c) * ns..][..ns];
                let mut cand: Vec<usize> = (0..ns)
                    .filter(|&i| score_th.is_none_or(|t| s[i] > t))
                    .collect();
                cand.sort_by(|&i, &j| {
                    s[j].partial_cmp(&s[i])
                        .unwrap_or(Ordering::Equal)
                        .then(i.cmp(&j))
                });
                let mut kept: Vec<usize> = Vec::new();
                for i in cand {
                    if kept.len() as i64 >= max_out {
                        break;
                    }
                    if kept.iter().all(|&k| !iou_above(&bx[k], &bx[i], iou)) {
                        kept.push(i);
                    }
                }
                for k in kept {
                    sel.extend([b as i64, c as i64, k as i64]);
                }
            }
        }
    }
    Ok(Tensor::from_i64(vec![sel.len() / 3, 3], sel))
}

fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn cubic_coeffs(x: f64) -> [f64; 4] {
    let a = -0.75;
    let x = x.abs();
    [
        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((a * (2.0 - x) - 5.0 * a) * (2.0 - x) + 8.0 * a) * (2.0 - x) - 4.0 * a,
    ]
}

/// GridSample of a 4-D input: `grid[n, y, x] = (x, y)` in [-1, 1] picks the point to sample.
pub fn grid_sample(x: &Tensor, grid: &Tensor, a: &GridSample) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() != 4 {
        bail!(
            "grid_sample needs a float input [N, C, H, W], got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (ho, wo) = match grid.shape() {
        [gn, ho, wo, 2] if *gn == n => (*ho, *wo),
        s => bail!("grid_sample grid must be [{n}, H_out, W_out, 2], got {s:?}"),
    };
    let mode = a.mode.as_str();
    if !matches!(mode, "bilinear" | "nearest" | "bicubic") {
        bail!("grid_sample mode `{mode}` is not bilinear, nearest or bicubic");
    }
    let pad = a.padding_mode.as_str();
    if !matches!(pad, "zeros" | "border" | "reflection") {
        bail!("grid_sample padding_mode `{pad}` is not zeros, border or reflection");
    }
    let ac = a.align_corners;
    let (x_min, x_max, y_min, y_max) = if ac {
        (0.0, w as f64 - 1.0, 0.0, h as f64 - 1.0)
    } else {
        (-0.5, w as f64 - 0.5, -0.5, h as f64 - 0.5)
    };
    let denorm = |v: f64, len: usize| {
        if ac {
            (v + 1.0) / 2.0 * (len as f64 - 1.0)
        } else {
            ((v + 1.0) * len as f64 - 1.0) / 2.0
        }
    };
    let out_shape = vec![n, c, ho, wo];
    checked_numel(&out_shape, "grid_sample")?;
    if h == 0 || w == 0 {
        return Tensor::from_f64_as(x.dtype(), out_shape, vec![0.0; n * c * ho * wo]);
    }
    let xv = x.to_f64_vec();
    let gv = grid.to_f64_vec();
    let mut out = vec![0f64; n * c * ho * wo];
    for b in 0..n {
        for ch in 0..c {
            let img = &xv[(b * c + ch) * h * w..][..h * w];
            let pixel = |r: i64, col: i64| -> f64 {
                match pad {
                    "zeros" => {
                        if (0..w as i64).contains(&col) && (0..h as i64).contains(&r) {
                            img[r as usize * w + col as usize]
                        } else {
                            0.0
                        }
                    }
                    "border" => {
                        let col = col.clamp(0, w as i64 - 1).max(0) as usize;
                        let r = r.clamp(0, h as i64 - 1).max(0) as usize;
                        img.get(r * w + col).copied().unwrap_or(0.0)
                    }
                    _ => {
                        let col = reflect(col as f64, x_min, x_max) as i64;
                        let r = reflect(r as f64, y_min, y_max) as i64;
                        let col = col.clamp(0, w as i64 - 1).max(0) as usize;
                        let r = r.clamp(0, h as i64 - 1).max(0) as usize;
                        img.get(r * w + col).copied().unwrap_or(0.0)
                    }
                }
            };
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = &gv[((b * ho + oy) * wo + ox) * 2..][..2];
                    let mut gx = denorm(g[0], w);
                    let mut gy = denorm(g[1], h);
                    if mode == "nearest" {
                        gx = gx.round_ties_even();
                        gy = gy.round_ties_even();
                    }
                    if gx < x_min || gx > x_max || gy < y_min || gy > y_max {
                        if pad == "border" {
                            gx = gx.clamp(0.0, (w as f64 - 1.0).max(0.0));
                            gy = gy.clamp(0.0, (h as f64 - 1.0).max(0.0));
                        } else if pad == "reflection" {
                            gx = reflect(gx, x_min, x_max);
                            gy = reflect(gy, y_min, y_max);
                        }
                    }
                    let v = match mode {
                        "nearest" => {
                            pixel(gy.round_ties_even() as i64, gx.round_ties_even() as i64)
                        }
                        "bilinear" => {
                            let (x1, y1) = (gx.floor() as i64, gy.floor() as i64);
                            let (x2, y2) = (x1 + 1, y1 + 1);
                            let (dx2, dx1) = (x2 as f64 - gx, gx - x1 as f64);
                            let (dy2, dy1) = (y2 as f64 - gy, gy - y1 as f64);
                            dy2 * (dx2 * pixel(y1, x1) + dx1 * pixel(y1, x2))
                                + dy1 * (dx2 * pixel(y2, x1) + dx1 * pixel(y2, x2))
                        }
                        _ => {
                            let (x0, y0) = (gx.floor() as i64 - 1, gy.floor() as i64 - 1);
                            let cx = cubic_coeffs(gx - x0 as f64 - 1.0);
                            let cy = cubic_coeffs(gy - y0 as f64 - 1.0);
                            let mut acc = 0.0;
                            for (i, wy) in cy.iter().enumerate() {
                                let row: f64 = cx
                                    .iter()
                                    .enumerate()
                                    .map(|(j, wx)| wx * pixel(y0 + i as i64, x0 + j as i64))
                                    .sum();
                                acc += wy * row;
                            }
                            acc
                        }
                    };
                    out[((b * c + ch) * ho + oy) * wo + ox] = v;
                }
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), out_shape, out)
}

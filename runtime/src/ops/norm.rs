//! Normalizations: BatchNorm (inference), LayerNorm, RMSNorm, InstanceNorm, GroupNorm.
//! Statistics are accumulated in f64 per row; rows run in parallel.

use crate::broadcast::{expand_index, norm_axis};
use crate::error::{bail, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Normalizes consecutive rows of `row` elements in place; returns (mean, 1/std) per row.
/// `center = false` is RMS normalization (no mean subtraction).
fn normalize_rows(v: &mut [f32], row: usize, eps: f64, center: bool) -> (Vec<f32>, Vec<f32>) {
    if row == 0 {
        return (vec![], vec![]);
    }
    let stats: Vec<(f32, f32)> = v
        .par_chunks_mut(row)
        .map(|r| {
            let n = r.len() as f64;
            let mean = if center {
                r.iter().map(|&x| x as f64).sum::<f64>() / n
            } else {
                0.0
            };
            let var = r.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for x in r.iter_mut() {
                *x = ((*x as f64 - mean) * inv) as f32;
            }
            (mean as f32, inv as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// Values of `t` broadcast (unidirectionally) to `shape`.
fn expand_to(t: &Tensor, shape: &[usize], what: &str) -> Result<Vec<f32>> {
    let mut s = t.shape().to_vec();
    while s.len() > shape.len() && s[0] == 1 {
        s.remove(0);
    }
    let ok = s.len() <= shape.len()
        && s.iter()
            .rev()
            .zip(shape.iter().rev())
            .all(|(&a, &b)| a == b || a == 1);
    if !ok {
        bail!(
            "{what} of shape {:?} does not broadcast to {shape:?}",
            t.shape()
        );
    }
    let v = t.f32_cow();
    Ok(expand_index(&s, shape).into_iter().map(|i| v[i]).collect())
}

fn float_input(x: &Tensor, what: &str) -> Result<()> {
    if !x.dtype().is_float() {
        bail!("{what} needs a float input, got {}", x.dtype());
    }
    Ok(())
}

/// LayerNormalization (`rms = false`, optional bias) and RMSNormalization / ORT's
/// SimplifiedLayerNormalization (`rms = true`): normalize over axes `axis..`, then
/// scale (and shift). Extra outputs: mean and 1/std (LayerNorm), 1/rms (RMSNorm).
pub fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: i64,
    eps: f32,
    rms: bool,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    let what = if rms {
        "rms_normalization"
    } else {
        "layer_normalization"
    };
    float_input(x, what)?;
    let ax = norm_axis(axis, x.rank().max(1))?.min(x.rank());
    let norm_shape = &x.shape()[ax..];
    let row: usize = norm_shape.iter().product();
    let sc = expand_to(scale, norm_shape, "scale")?;
    let bi = bias.map(|b| expand_to(b, norm_shape, "bias")).transpose()?;
    let mut v = x.to_f32_vec();
    let (mut mean, mut inv) = normalize_rows(&mut v, row, eps as f64, !rms);
    // Rows of zero elements have no statistics.
    let rows: usize = x.shape()[..ax].iter().product();
    mean.resize(rows, f32::NAN);
    inv.resize(rows, f32::NAN);
    if row > 0 {
        v.par_chunks_mut(row).for_each(|r| {
            for (i, y) in r.iter_mut().enumerate() {
                *y = *y * sc[i] + bi.as_ref().map_or(0.0, |b| b[i]);
            }
        });
    }
    let mut out = vec![Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)?];
    let mut stat_shape = x.shape()[..ax].to_vec();
    stat_shape.extend(std::iter::repeat_n(1, x.rank() - ax));
    if rms {
        if num_outputs > 1 {
            out.push(Tensor::from_f32(stat_shape, inv));
        }
    } else {
        if num_outputs > 1 {
            out.push(Tensor::from_f32(stat_shape.clone(), mean));
        }
        if num_outputs > 2 {
            out.push(Tensor::from_f32(stat_shape, inv));
        }
    }
    Ok(out)
}

fn per_channel(t: &Tensor, c: usize, what: &str) -> Result<Vec<f32>> {
    if t.numel() != c {
        bail!("{what} has {} values for {c} channels", t.numel());
    }
    Ok(t.to_f32_vec())
}

/// Inference: normalizes with the given statistics. Training mode: with the batch's own
/// (per channel over N and the spatial dims; population variance), and also returns the
/// updated running statistics `running · momentum + batch · (1 - momentum)`.
pub fn batch_norm(
    inputs: [&Tensor; 5],
    eps: f32,
    momentum: f32,
    training: bool,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    let [x, scale, b, mean, var] = inputs;
    float_input(x, "batch_normalization")?;
    if !training {
        return Ok(vec![batch_norm_with(x, scale, b, mean, var, eps)?]);
    }
    if x.rank() < 2 {
        bail!(
            "batch_normalization needs an input of rank ≥ 2, got {:?}",
            x.shape()
        );
    }
    let c = x.shape()[1];
    let inner: usize = x.shape()[2..].iter().product();
    let xv = x.to_f64_vec();
    let (mut sum, mut sq) = (vec![0f64; c], vec![0f64; c]);
    for (p, plane) in xv.chunks(inner.max(1)).enumerate() {
        let ch = p % c;
        for &v in plane {
            sum[ch] += v;
            sq[ch] += v * v;
        }
    }
    let count = (x.numel() / c.max(1)).max(1) as f64;
    let bm: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let bv: Vec<f64> = (0..c)
        .map(|i| (sq[i] / count - bm[i] * bm[i]).max(0.0))
        .collect();
    let stat = |v: &[f64]| Tensor::from_f64_as(mean.dtype(), vec![c], v.to_vec());
    let y = batch_norm_with(x, scale, b, &stat(&bm)?, &stat(&bv)?, eps)?;
    let mut out = vec![y];
    let mom = momentum as f64;
    for (running, batch) in [(mean, &bm), (var, &bv)] {
        if out.len() >= num_outputs {
            break;
        }
        let r = per_channel(running, c, "running statistics")?;
        let v = (0..c)
            .map(|i| r[i] as f64 * mom + batch[i] * (1.0 - mom))
            .collect();
        out.push(Tensor::from_f64_as(running.dtype(), vec![c], v)?);
    }
    Ok(out)
}

fn batch_norm_with(
    x: &Tensor,
    scale: &Tensor,
    b: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    if x.rank() < 2 {
        bail!(
            "batch_normalization needs an input of rank ≥ 2, got {:?}",
            x.shape()
        );
    }
    let c = x.shape()[1];
    let (s, bb, m, vv) = (
        per_channel(scale, c, "scale")?,
        per_channel(b, c, "bias")?,
        per_channel(mean, c, "mean")?,
        per_channel(var, c, "var")?,
    );
    let inner: usize = x.shape()[2..].iter().product();
    let mul: Vec<f64> = (0..c)
        .map(|i| s[i] as f64 / (vv[i] as f64 + eps as f64).sqrt())
        .collect();
    let mut v = x.to_f32_vec();
    if inner > 0 {
        v.par_chunks_mut(inner).enumerate().for_each(|(p, plane)| {
            let ch = p % c;
            for y in plane {
                *y = ((*y as f64 - m[ch] as f64) * mul[ch] + bb[ch] as f64) as f32;
            }
        });
    }
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)
}

pub fn instance_norm(x: &Tensor, scale: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    float_input(x, "instance_normalization")?;
    if x.rank() < 3 {
        bail!(
            "instance_normalization needs an input of rank ≥ 3, got {:?}",
            x.shape()
        );
    }
    let c = x.shape()[1];
    let (s, bb) = (per_channel(scale, c, "scale")?, per_channel(b, c, "bias")?);
    let inner: usize = x.shape()[2..].iter().product();
    let mut v = x.to_f32_vec();
    normalize_rows(&mut v, inner, eps as f64, true);
    if inner > 0 {
        v.par_chunks_mut(inner).enumerate().for_each(|(p, plane)| {
            let ch = p % c;
            plane.iter_mut().for_each(|y| *y = *y * s[ch] + bb[ch]);
        });
    }
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)
}

/// GroupNormalization; scale and bias are per channel (opset 21) or per group (opset 18).
pub fn group_norm(x: &Tensor, scale: &Tensor, b: &Tensor, groups: i64, eps: f32) -> Result<Tensor> {
    float_input(x, "group_normalization")?;
    if x.rank() < 2 {
        bail!(
            "group_normalization needs an input of rank ≥ 2, got {:?}",
            x.shape()
        );
    }
    let c = x.shape()[1];
    let g = usize::try_from(groups).unwrap_or(0);
    if g == 0 || !c.is_multiple_of(g) {
        bail!("group_normalization num_groups {groups} does not divide {c} channels");
    }
    let inner: usize = x.shape()[2..].iter().product();
    let per_group = scale.numel() == g && g != c;
    let n_sc = if per_group { g } else { c };
    let (s, bb) = (
        per_channel(scale, n_sc, "scale")?,
        per_channel(b, n_sc, "bias")?,
    );
    let mut v = x.to_f32_vec();
    normalize_rows(&mut v, (c / g) * inner, eps as f64, true);
    if inner > 0 {
        v.par_chunks_mut(inner).enumerate().for_each(|(p, plane)| {
            let ch = p % c;
            let k = if per_group { ch / (c / g) } else { ch };
            plane.iter_mut().for_each(|y| *y = *y * s[k] + bb[k]);
        });
    }
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)
}

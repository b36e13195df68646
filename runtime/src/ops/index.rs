//! Index ops: Gather, GatherElements, GatherND, ScatterND, ScatterElements, OneHot,
//! NonZero, TopK and compc's RouterTopK. User-given indices are validated (negative
//! ones wrap once, as ONNX allows) before any buffer is indexed.

use crate::broadcast::{norm_axis, split_at_axis, strides};
use crate::error::{bail, Result};
use crate::ops::shape_ops::ints;
use crate::tensor::{zip_data, Tensor};
use std::cmp::Ordering;

fn fix_index(i: i64, n: usize, what: &str) -> Result<usize> {
    let n = n as i64;
    let j = if i < 0 { i + n } else { i };
    if !(0..n).contains(&j) {
        bail!("{what} index {i} is out of range for a dimension of size {n}");
    }
    Ok(j as usize)
}

pub fn gather(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let (outer, n, inner) = split_at_axis(x.shape(), ax);
    let iv = ints(idx, "gather indices")?
        .iter()
        .map(|&i| fix_index(i, n, "gather"))
        .collect::<Result<Vec<_>>>()?;
    let mut map = Vec::with_capacity(outer * iv.len() * inner);
    for o in 0..outer {
        for &i in &iv {
            map.extend((0..inner).map(|j| (o * n + i) * inner + j));
        }
    }
    let mut shape = x.shape()[..ax].to_vec();
    shape.extend(idx.shape());
    shape.extend(&x.shape()[ax + 1..]);
    x.take(&map, shape, None)
}

/// For every element of `ishape` (same rank as `xshape`), the offset in `xshape` with the
/// `axis` coordinate replaced by the index value.
fn element_offsets(
    xshape: &[usize],
    ishape: &[usize],
    iv: &[i64],
    ax: usize,
    what: &str,
) -> Result<Vec<usize>> {
    if xshape.len() != ishape.len() {
        bail!(
            "{what}: indices rank {} differs from data rank {}",
            ishape.len(),
            xshape.len()
        );
    }
    if ishape
        .iter()
        .zip(xshape)
        .enumerate()
        .any(|(d, (&i, &x))| d != ax && i > x)
    {
        bail!("{what}: indices shape {ishape:?} exceeds data shape {xshape:?}");
    }
    let (xs, is) = (strides(xshape), strides(ishape));
    let mut out = Vec::with_capacity(iv.len());
    for (p, &i) in iv.iter().enumerate() {
        let mut off = 0;
        for d in 0..xshape.len() {
            let c = (p / is[d]) % ishape[d];
            off += if d == ax {
                fix_index(i, xshape[d], what)?
            } else {
                c
            } * xs[d];
        }
        out.push(off);
    }
    Ok(out)
}

pub fn gather_elements(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let offs = element_offsets(
        x.shape(),
        idx.shape(),
        &ints(idx, "gather_elements indices")?,
        ax,
        "gather_elements",
    )?;
    x.take(&offs, idx.shape().to_vec(), None)
}

/// (offset of each addressed slice, slice length, shape of the index tuples' grid).
fn nd_offsets(
    xshape: &[usize],
    idx: &Tensor,
    b: usize,
    what: &str,
) -> Result<(Vec<usize>, usize, Vec<usize>)> {
    let ishape = idx.shape();
    let Some(&k) = ishape.last() else {
        bail!("{what}: indices must have rank ≥ 1")
    };
    if b > 0 && (ishape.len() <= b || xshape.len() < b || ishape[..b] != xshape[..b]) {
        bail!("{what}: batch_dims {b} do not match data {xshape:?} and indices {ishape:?}");
    }
    if b + k > xshape.len() {
        bail!(
            "{what}: index tuples of length {k} address more than the data's rank {}",
            xshape.len()
        );
    }
    let xs = strides(xshape);
    let slice: usize = xshape[b + k..].iter().product();
    let batch_stride: usize = xshape[b..].iter().product();
    let per_batch: usize = ishape[b..ishape.len() - 1].iter().product();
    let iv = ints(idx, "indices")?;
    let tuples = iv.len() / k.max(1);
    let mut offs = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let batch = t / per_batch.max(1);
        let mut off = batch * batch_stride;
        for j in 0..k {
            off += fix_index(iv[t * k + j], xshape[b + j], what)? * xs[b + j];
        }
        offs.push(off);
    }
    if k == 0 {
        let n: usize = ishape[..ishape.len() - 1].iter().product();
        offs = (0..n)
            .map(|t| (t / per_batch.max(1)) * batch_stride)
            .collect();
    }
    Ok((offs, slice, ishape[..ishape.len() - 1].to_vec()))
}

pub fn gather_nd(x: &Tensor, idx: &Tensor, batch_dims: i64) -> Result<Tensor> {
    let b = usize::try_from(batch_dims).unwrap_or(usize::MAX);
    let (offs, slice, mut shape) = nd_offsets(x.shape(), idx, b, "gather_nd")?;
    let k = idx.shape().last().copied().unwrap_or(0);
    shape.extend(&x.shape()[b + k..]);
    let map: Vec<usize> = offs.iter().flat_map(|&o| o..o + slice).collect();
    x.take(&map, shape, None)
}

/// Writes `updates[src]` into a copy of `data` at `dst` for each pair, combining with
/// `reduction` (none/add/mul/max/min); later pairs win for `none`.
fn scatter_apply(
    data: &Tensor,
    updates: &Tensor,
    pairs: &[(usize, usize)],
    reduction: &str,
) -> Result<Tensor> {
    if data.dtype() != updates.dtype() {
        bail!(
            "scatter updates have type {}, data has {}",
            updates.dtype(),
            data.dtype()
        );
    }
    if reduction == "none" {
        let d = zip_data!(data.data(), updates.data(), (d, u) => {
            let mut o = d.clone();
            for &(dst, src) in pairs {
                o[dst] = u[src];
            }
            o
        }, else bail!("scatter inputs of different storage"));
        return Tensor::new(data.dtype(), data.shape().to_vec(), d);
    }
    let f = |a: f64, b: f64| -> Option<f64> {
        Some(match reduction {
            "add" => a + b,
            "mul" => a * b,
            "max" => a.max(b),
            "min" => a.min(b),
            _ => return None,
        })
    };
    if data.dtype().is_int() {
        let (mut o, u) = (data.to_i64_vec(), updates.to_i64_vec());
        for &(dst, src) in pairs {
            o[dst] = match reduction {
                "add" => o[dst].wrapping_add(u[src]),
                "mul" => o[dst].wrapping_mul(u[src]),
                "max" => o[dst].max(u[src]),
                "min" => o[dst].min(u[src]),
                other => bail!("unknown scatter reduction `{other}`"),
            };
        }
        return Tensor::from_i64_as(data.dtype(), data.shape().to_vec(), o);
    }
    let (mut o, u) = (data.to_f64_vec(), updates.to_f64_vec());
    for &(dst, src) in pairs {
        match f(o[dst], u[src]) {
            Some(v) => o[dst] = v,
            None => bail!("unknown scatter reduction `{reduction}`"),
        }
    }
    Tensor::from_f64_as(data.dtype(), data.shape().to_vec(), o)
}

pub fn scatter_nd(x: &Tensor, idx: &Tensor, upd: &Tensor, reduction: &str) -> Result<Tensor> {
    let (offs, slice, grid) = nd_offsets(x.shape(), idx, 0, "scatter_nd")?;
    let k = idx.shape().last().copied().unwrap_or(0);
    let mut want = grid;
    want.extend(&x.shape()[k..]);
    if upd.shape() != want.as_slice() {
        bail!(
            "scatter_nd updates have shape {:?}, expected {want:?}",
            upd.shape()
        );
    }
    let pairs: Vec<(usize, usize)> = offs
        .iter()
        .enumerate()
        .flat_map(|(t, &o)| (0..slice).map(move |j| (o + j, t * slice + j)))
        .collect();
    scatter_apply(x, upd, &pairs, reduction)
}

pub fn scatter_elements(
    x: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    axis: i64,
    reduction: &str,
) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    if idx.shape() != upd.shape() {
        bail!(
            "scatter_elements indices {:?} and updates {:?} differ in shape",
            idx.shape(),
            upd.shape()
        );
    }
    let offs = element_offsets(
        x.shape(),
        idx.shape(),
        &ints(idx, "scatter_elements indices")?,
        ax,
        "scatter_elements",
    )?;
    let pairs: Vec<(usize, usize)> = offs.into_iter().enumerate().map(|(s, d)| (d, s)).collect();
    scatter_apply(x, upd, &pairs, reduction)
}

pub fn one_hot(idx: &Tensor, depth: &Tensor, values: &Tensor, axis: i64) -> Result<Tensor> {
    if depth.numel() != 1 || values.numel() != 2 {
        bail!(
            "one_hot needs a scalar depth and two values, got {:?} and {:?}",
            depth.shape(),
            values.shape()
        );
    }
    let d = depth.to_f64_vec()[0] as i64;
    if d < 0 {
        bail!("one_hot depth {d} is negative");
    }
    let r = idx.rank() + 1;
    let ax = norm_axis(axis, r)?;
    let iv = idx.to_i64_vec();
    let (outer, inner) = (
        idx.shape()[..ax].iter().product::<usize>(),
        idx.shape()[ax..].iter().product::<usize>(),
    );
    let d = d as usize;
    crate::tensor::checked_numel(&[outer, d, inner], "one_hot")?;
    let mut map = vec![0usize; outer * d * inner];
    for o in 0..outer {
        for i in 0..inner {
            let v = iv[o * inner + i];
            let v = if v < 0 { v + d as i64 } else { v };
            if (0..d as i64).contains(&v) {
                map[(o * d + v as usize) * inner + i] = 1;
            }
        }
    }
    let mut shape = idx.shape().to_vec();
    shape.insert(ax, d);
    values.take(&map, shape, None)
}

pub fn non_zero(x: &Tensor) -> Result<Tensor> {
    let v = x.to_f64_vec();
    let nz: Vec<usize> = (0..v.len()).filter(|&i| v[i] != 0.0).collect();
    let r = x.rank();
    let st = strides(x.shape());
    let mut out = vec![0i64; r * nz.len()];
    for (j, &p) in nz.iter().enumerate() {
        for d in 0..r {
            out[d * nz.len() + j] = ((p / st[d]) % x.shape()[d]) as i64;
        }
    }
    Ok(Tensor::from_i64(vec![r, nz.len()], out))
}

/// Orders candidates: larger (or smaller) value first, ties by lower index; NaN counts
/// as the largest value.
fn rank_cmp(v: &[f64], largest: bool) -> impl Fn(&usize, &usize) -> Ordering + '_ {
    move |&a, &b| {
        let o = match v[a].partial_cmp(&v[b]) {
            Some(o) => o,
            None => v[a].is_nan().cmp(&v[b].is_nan()),
        };
        let o = if largest { o.reverse() } else { o };
        o.then(a.cmp(&b))
    }
}

pub fn top_k(x: &Tensor, k: &Tensor, axis: i64, largest: bool) -> Result<Vec<Tensor>> {
    let ax = norm_axis(axis, x.rank())?;
    let kv = ints(k, "top_k k")?;
    let (outer, n, inner) = split_at_axis(x.shape(), ax);
    let k = match kv.as_slice() {
        [k] if *k >= 0 && (*k as usize) <= n => *k as usize,
        _ => bail!("top_k k {kv:?} must be one value in 0..={n}"),
    };
    let v = x.to_f64_vec();
    let mut map = vec![0usize; outer * k * inner];
    let mut ind = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let col: Vec<f64> = (0..n).map(|j| v[(o * n + j) * inner + i]).collect();
            let mut ord: Vec<usize> = (0..n).collect();
            ord.sort_by(rank_cmp(&col, largest));
            for (t, &j) in ord.iter().take(k).enumerate() {
                map[(o * k + t) * inner + i] = (o * n + j) * inner + i;
                ind[(o * k + t) * inner + i] = j as i64;
            }
        }
    }
    let mut shape = x.shape().to_vec();
    shape[ax] = k;
    Ok(vec![
        x.take(&map, shape.clone(), None)?,
        Tensor::from_i64(shape, ind),
    ])
}

/// Tokens kept per sequence by `RouterTopK`: `ceil(capacity · seq)` computed in f32 (as
/// an exported graph computes it), clamped to `0..=seq`.
pub fn router_k(capacity: f32, seq: usize) -> usize {
    let k = (capacity * seq as f32).ceil();
    if k.is_nan() || k <= 0.0 {
        0
    } else {
        (k as usize).min(seq)
    }
}

pub fn router_top_k(scores: &Tensor, capacity: f32) -> Result<Tensor> {
    if scores.rank() != 2 || !scores.dtype().is_float() {
        bail!(
            "router_top_k needs float scores [batch, seq], got {} {:?}",
            scores.dtype(),
            scores.shape()
        );
    }
    let (b, s) = (scores.shape()[0], scores.shape()[1]);
    let k = router_k(capacity, s);
    let v = scores.to_f64_vec();
    let mut out = Vec::with_capacity(b * k);
    for row in 0..b {
        let col = &v[row * s..(row + 1) * s];
        let mut ord: Vec<usize> = (0..s).collect();
        ord.sort_by(rank_cmp(col, true));
        let mut keep: Vec<usize> = ord[..k].to_vec();
        keep.sort_unstable();
        out.extend(keep.into_iter().map(|j| j as i64));
    }
    Ok(Tensor::from_i64(vec![b, k], out))
}

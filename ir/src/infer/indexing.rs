//! Ops that select, join or pad along axes: Concat, Split, Slice, the Gather family, Pad,
//! NonZero, OneHot, TopK.

use super::dims::{add_const, norm_axes, norm_axis, slice_range, unify};
use super::symbolic::Elem;
use super::Cx;
use crate::dtype::DType;
use crate::op::{Concat, OneHot, Split, TopK};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

pub(crate) fn concat(cx: &Cx, c: &Concat) -> Out {
    let first = cx.ty(0)?;
    let mut out: Option<Vec<Dim>> = None;
    let mut axis = 0;
    let mut parts: Vec<Dim> = Vec::new();
    for i in 0..cx.n_inputs() {
        let Some(dims) = cx.ty(i)?.shape.dims() else {
            parts.push(Dim::Unknown);
            continue;
        };
        let acc = match &mut out {
            Some(acc) => acc,
            None => {
                axis = norm_axis(c.axis, dims.len())?;
                out.insert(dims.to_vec())
            }
        };
        if acc.len() != dims.len() {
            return Err(format!(
                "Concat inputs disagree on rank: {} vs {}",
                acc.len(),
                dims.len()
            ));
        }
        for (d, (a, b)) in acc.iter_mut().zip(dims).enumerate() {
            if d != axis {
                *a = unify(a, b).map_err(|e| format!("Concat inputs disagree on dim {d}: {e}"))?;
            }
        }
        parts.push(dims[axis].clone());
    }
    let Some(mut dims) = out else {
        return Ok(vec![TensorType::unranked(first.dtype)]);
    };
    dims[axis] = sum(&parts);
    Ok(vec![TensorType::new(first.dtype, Shape::Ranked(dims))])
}

/// Sum of dims: known if all are; one symbol plus zeros stays that symbol.
fn sum(parts: &[Dim]) -> Dim {
    let mut total: u64 = 0;
    let mut other: Option<&Dim> = None;
    for d in parts {
        match d {
            Dim::Known(n) => match total.checked_add(*n) {
                Some(t) => total = t,
                None => return Dim::Unknown,
            },
            d if other.is_none() => other = Some(d),
            _ => return Dim::Unknown,
        }
    }
    match other {
        None => Dim::Known(total),
        Some(d) if total == 0 => d.clone(),
        Some(_) => Dim::Unknown,
    }
}

pub(crate) fn split(cx: &Cx, s: &Split) -> Out {
    let x = cx.ty(0)?;
    let n = cx.n_outputs();
    if n == 0 {
        return Err("has no outputs".into());
    }
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::unranked(x.dtype); n]);
    };
    let axis = norm_axis(s.axis, dims.len())?;
    let d = &dims[axis];
    let sizes: Vec<Dim> =
        if let Some(sp) = &s.split {
            sizes_of(sp.iter().map(|&v| Elem::Num(v)), n, d)?
        } else if cx.node.input(1).is_some() {
            match cx.value(1) {
                Some(v) => sizes_of(v.elems.iter().cloned(), n, d)?,
                None => vec![Dim::Unknown; n],
            }
        } else if let Some(parts) = s.num_outputs {
            if parts != n as i64 {
                return Err(format!(
                    "num_outputs is {parts} but the node has {n} outputs"
                ));
            }
            match d {
                // Opset 18: the last chunk is smaller when the dim does not divide.
                Dim::Known(len) => {
                    let chunk = len.div_ceil(n as u64);
                    let last = len.checked_sub(chunk.saturating_mul(n as u64 - 1)).ok_or_else(|| {
                    format!("dim {axis} of size {len} cannot be split into {n} chunks of {chunk}")
                })?;
                    let mut v = vec![Dim::Known(chunk); n - 1];
                    v.push(Dim::Known(last));
                    v
                }
                d if n == 1 => vec![d.clone()],
                _ => vec![Dim::Unknown; n],
            }
        } else {
            match d {
                Dim::Known(len) if len % n as u64 != 0 => {
                    return Err(format!(
                        "dim {axis} of size {len} cannot be split into {n} equal parts"
                    ))
                }
                Dim::Known(len) => vec![Dim::Known(len / n as u64); n],
                d if n == 1 => vec![d.clone()],
                _ => vec![Dim::Unknown; n],
            }
        };
    Ok(sizes
        .into_iter()
        .map(|sz| {
            let mut o = dims.to_vec();
            o[axis] = sz;
            TensorType::new(x.dtype, Shape::Ranked(o))
        })
        .collect())
}

/// Explicit split sizes: one per output, summing to the dim when both are known.
fn sizes_of(sizes: impl Iterator<Item = Elem>, n: usize, d: &Dim) -> Result<Vec<Dim>, String> {
    let sizes: Vec<Dim> = sizes
        .map(|e| {
            e.to_dim()
                .ok_or_else(|| format!("split size {e:?} is negative"))
        })
        .collect::<Result<_, _>>()?;
    if sizes.len() != n {
        return Err(format!(
            "split has {} sizes but the node has {n} outputs",
            sizes.len()
        ));
    }
    if let (Dim::Known(len), Dim::Known(total)) = (d, sum(&sizes)) {
        if *len != total {
            return Err(format!("split sizes sum to {total} but the dim has {len}"));
        }
    }
    Ok(sizes)
}

/// Ends at least this large mean "to the end" (exporters write i32::MAX or i64::MAX).
const TO_END: i64 = i32::MAX as i64;

pub(crate) fn slice(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    let rank = dims.len();
    let unknown_dims = |axes: Option<Vec<usize>>| {
        let mut out = dims.to_vec();
        for (i, d) in out.iter_mut().enumerate() {
            if axes.as_ref().is_none_or(|a| a.contains(&i)) {
                *d = Dim::Unknown;
            }
        }
        Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
    };
    let axes: Option<Vec<i64>> = match cx.node.input(3) {
        Some(_) => match cx.ints(3) {
            Some(a) => Some(a),
            None => return unknown_dims(None),
        },
        None => None,
    };
    let (Some(starts), Some(ends)) = (cx.value(1), cx.value(2)) else {
        return unknown_dims(axes.map(|a| norm_axes(&a, rank)).transpose()?);
    };
    let (starts, ends) = (&starts.elems, &ends.elems);
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let axes = norm_axes(&axes, rank)?;
    let steps = match cx.node.input(4) {
        Some(_) => match cx.ints(4) {
            Some(s) => s,
            None => return unknown_dims(Some(axes)),
        },
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(format!(
            "starts, ends, axes and steps differ in length ({}, {}, {}, {})",
            starts.len(),
            ends.len(),
            axes.len(),
            steps.len()
        ));
    }
    let mut out = dims.to_vec();
    for (k, &ax) in axes.iter().enumerate() {
        out[ax] = slice_dim(&dims[ax], &starts[k], &ends[k], steps[k])?;
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

fn slice_dim(d: &Dim, start: &Elem, end: &Elem, step: i64) -> Result<Dim, String> {
    if step == 0 {
        return Err("slice step is 0".into());
    }
    if let (Dim::Known(n), Elem::Num(s), Elem::Num(e)) = (d, start, end) {
        let n = i64::try_from(*n).map_err(|_| "dim is too large")?;
        return Ok(Dim::Known(slice_range(n, *s, *e, step)?.1 as u64));
    }
    // `x[:seq]` is `min(dim, seq)`; like ONNX's own inference, take it to be `seq`
    // (exporters slice position tables of a maximum length to the sequence length,
    // and a longer sequence would fail downstream anyway).
    if let (Elem::Num(0), Elem::Sym(e)) = (start, end) {
        if step == 1 {
            return Ok(Dim::Sym(e.clone()));
        }
    }
    // Whole-axis slices keep a symbolic dim: `x[0:]`, `x[::-1]`.
    let whole = match (start, end) {
        (Elem::Num(s), Elem::Num(e)) if step == 1 => (*s == 0 || *s <= -TO_END) && *e >= TO_END,
        (Elem::Num(s), Elem::Num(e)) if step == -1 => (*s == -1 || *s >= TO_END) && *e <= -TO_END,
        _ => false,
    };
    Ok(if whole { d.clone() } else { Dim::Unknown })
}

pub(crate) fn gather(cx: &Cx, axis: i64) -> Out {
    let (data, idx) = (cx.ty(0)?, cx.ty(1)?);
    let (Some(dd), Some(id)) = (data.shape.dims(), idx.shape.dims()) else {
        return Ok(vec![TensorType::unranked(data.dtype)]);
    };
    let ax = norm_axis(axis, dd.len())?;
    if let (Dim::Known(n), Some(values)) = (&dd[ax], cx.ints(1)) {
        let n = *n as i64;
        if let Some(bad) = values.iter().find(|&&i| i < -n || i >= n) {
            return Err(format!(
                "index {bad} is out of range for axis {ax} of size {n}"
            ));
        }
    }
    let mut out = dd[..ax].to_vec();
    out.extend_from_slice(id);
    out.extend_from_slice(&dd[ax + 1..]);
    Ok(vec![TensorType::new(data.dtype, Shape::Ranked(out))])
}

pub(crate) fn gather_elements(cx: &Cx, axis: i64) -> Out {
    let (data, idx) = (cx.ty(0)?, cx.ty(1)?);
    if let (Some(r), Some(q)) = (data.shape.rank(), idx.shape.rank()) {
        if r != q {
            return Err(format!("data has rank {r} but indices have rank {q}"));
        }
        norm_axis(axis, r)?;
    }
    Ok(vec![TensorType::new(data.dtype, idx.shape.clone())])
}

/// `indices.shape[:-1] + data.shape[batch_dims + indices.shape[-1]:]`.
pub(crate) fn gather_nd(cx: &Cx, batch_dims: i64) -> Out {
    let (data, idx) = (cx.ty(0)?, cx.ty(1)?);
    let (Some(dd), Some(id)) = (data.shape.dims(), idx.shape.dims()) else {
        return Ok(vec![TensorType::unranked(data.dtype)]);
    };
    let b =
        usize::try_from(batch_dims).map_err(|_| format!("batch_dims {batch_dims} is negative"))?;
    if id.is_empty() || b >= id.len().min(dd.len()) {
        return Err(format!(
            "batch_dims {b} does not fit data rank {} and indices rank {}",
            dd.len(),
            id.len()
        ));
    }
    let Some(Dim::Known(k)) = id.last() else {
        return Ok(vec![TensorType::unranked(data.dtype)]);
    };
    let start = usize::try_from(*k).ok().and_then(|k| k.checked_add(b));
    let Some(start) = start.filter(|&s| s <= dd.len()) else {
        return Err(format!(
            "index tuples of length {k} do not fit data of rank {} (batch_dims {b})",
            dd.len()
        ));
    };
    let mut out = id[..id.len() - 1].to_vec();
    out.extend_from_slice(&dd[start..]);
    Ok(vec![TensorType::new(data.dtype, Shape::Ranked(out))])
}

pub(crate) fn pad(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    let axes = match cx.node.input(3) {
        Some(_) => cx.ints(3).map(|a| norm_axes(&a, dims.len())).transpose()?,
        None => Some((0..dims.len()).collect()),
    };
    let mut out = dims.to_vec();
    match (axes, cx.ints(1)) {
        (Some(axes), Some(pads)) => {
            if pads.len() != 2 * axes.len() {
                return Err(format!(
                    "pads has {} entries for {} axes",
                    pads.len(),
                    axes.len()
                ));
            }
            for (k, &ax) in axes.iter().enumerate() {
                let total = pads[k]
                    .checked_add(pads[k + axes.len()])
                    .ok_or("pads overflow")?;
                out[ax] = add_const(&dims[ax], total).map_err(|e| format!("axis {ax}: {e}"))?;
            }
        }
        (Some(axes), None) => axes.iter().for_each(|&a| out[a] = Dim::Unknown),
        (None, _) => out.iter_mut().for_each(|d| *d = Dim::Unknown),
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

pub(crate) fn non_zero(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let r = x
        .shape
        .rank()
        .map_or(Dim::Unknown, |r| Dim::Known(r as u64));
    Ok(vec![TensorType::new(
        DType::I64,
        Shape::Ranked(vec![r, Dim::Unknown]),
    )])
}

pub(crate) fn one_hot(cx: &Cx, o: &OneHot) -> Out {
    let (idx, values) = (cx.ty(0)?, cx.ty(2)?);
    let depth = match cx.value(1).map(|v| v.elems.as_slice()) {
        Some([e]) => e
            .to_dim()
            .ok_or_else(|| format!("depth {e:?} is negative"))?,
        _ => match cx.floats(1).as_deref() {
            Some([f]) if *f >= 0.0 && f.is_finite() => Dim::Known(*f as u64),
            _ => Dim::Unknown,
        },
    };
    let Some(dims) = idx.shape.dims() else {
        return Ok(vec![TensorType::unranked(values.dtype)]);
    };
    // The new axis is counted in the output's rank.
    let ax = norm_axis(o.axis, dims.len() + 1)?;
    let mut out = dims.to_vec();
    out.insert(ax, depth);
    Ok(vec![TensorType::new(values.dtype, Shape::Ranked(out))])
}

pub(crate) fn top_k(cx: &Cx, t: &TopK) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone(), TensorType::unranked(DType::I64)]);
    };
    let ax = norm_axis(t.axis, dims.len())?;
    let k = match cx.value(1).map(|v| v.elems.as_slice()) {
        Some([e]) => e.to_dim().ok_or_else(|| format!("k {e:?} is negative"))?,
        _ => Dim::Unknown,
    };
    if let (Dim::Known(k), Dim::Known(n)) = (&k, &dims[ax]) {
        if k > n {
            return Err(format!("k = {k} is larger than axis {ax} of size {n}"));
        }
    }
    let mut out = dims.to_vec();
    out[ax] = k;
    Ok(vec![
        TensorType::new(x.dtype, Shape::Ranked(out.clone())),
        TensorType::new(DType::I64, Shape::Ranked(out)),
    ])
}

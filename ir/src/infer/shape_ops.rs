//! Ops that rearrange a tensor or compute a shape: Reshape, Expand, Tile, Range, Shape,
//! ConstantOfShape, Transpose, Squeeze/Unsqueeze, Flatten, DepthToSpace/SpaceToDepth.
//! Shape operands come from the symbolic values, so `{batch}` and `{seq}` flow through.

use super::dims::{broadcast_shapes, mul, norm_axes, norm_axis, product, shape_text};
use super::symbolic::Elem;
use super::Cx;
use crate::dtype::DType;
use crate::op::{Axes, ConstantOfShape, Flatten, Reshape, ShapeOf, Transpose};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

fn ranked_or_not(dims: Option<Vec<Dim>>) -> Shape {
    dims.map_or(Shape::Unranked, Shape::Ranked)
}

pub(crate) fn reshape(cx: &Cx, r: &Reshape) -> Out {
    let x = cx.ty(0)?;
    let Some(target) = cx.value(1) else {
        let rank_only = cx.shape_value(1, "shape")?;
        return Ok(vec![TensorType::new(x.dtype, ranked_or_not(rank_only))]);
    };
    let in_dims = x.shape.dims();
    let mut out = Vec::with_capacity(target.elems.len());
    let mut minus_one = None;
    for (i, e) in target.elems.iter().enumerate() {
        out.push(match e {
            Elem::Num(-1) => {
                if minus_one.replace(i).is_some() {
                    return Err("shape has more than one -1".into());
                }
                Dim::Unknown
            }
            Elem::Num(0) if !r.allowzero => match in_dims {
                Some(d) => d.get(i).cloned().ok_or_else(|| {
                    format!(
                        "shape entry {i} is 0 (copy the input dim) but the input has rank {}",
                        d.len()
                    )
                })?,
                None => Dim::Unknown,
            },
            Elem::Num(n) if *n < 0 => return Err(format!("shape entry {i} is {n}")),
            e => e.to_dim().unwrap_or(Dim::Unknown),
        });
    }
    if let Some(at) = minus_one {
        if r.allowzero && out.contains(&Dim::Known(0)) {
            return Err("shape has both -1 and 0 while allowzero is set".into());
        }
        out[at] = solve_minus_one(in_dims, &out, at)?;
    } else if let (Some(a), Some(b)) = (x.shape.numel(), Shape::Ranked(out.clone()).numel()) {
        if a != b {
            return Err(format!(
                "cannot reshape {} ({a} elements) to {} ({b} elements)",
                shape_text(&x.shape),
                shape_text(&Shape::Ranked(out))
            ));
        }
    }
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// The dim Reshape's -1 stands for: symbols common to input and target cancel, then
/// the known products must divide (or a single leftover symbol carries over).
fn solve_minus_one(input: Option<&[Dim]>, target: &[Dim], at: usize) -> Result<Dim, String> {
    let Some(input) = input else {
        return Ok(Dim::Unknown);
    };
    let mut rest_in: Vec<Dim> = input.to_vec();
    let mut rest_out: Vec<Dim> = Vec::new();
    for (i, d) in target.iter().enumerate() {
        if i == at {
            continue;
        }
        match d {
            Dim::Sym(_) => match rest_in.iter().position(|x| x == d) {
                Some(p) => {
                    rest_in.remove(p);
                }
                None => rest_out.push(d.clone()),
            },
            d => rest_out.push(d.clone()),
        }
    }
    let split = |dims: &[Dim]| -> Option<(u64, Vec<String>)> {
        let mut p: u64 = 1;
        let mut syms = Vec::new();
        for d in dims {
            match d {
                Dim::Known(n) => p = p.checked_mul(*n)?,
                Dim::Sym(s) => syms.push(s.clone()),
                Dim::Unknown => return None,
            }
        }
        Some((p, syms))
    };
    let (Some((pi, si)), Some((po, so))) = (split(&rest_in), split(&rest_out)) else {
        return Ok(Dim::Unknown);
    };
    if !so.is_empty() || po == 0 {
        return Ok(Dim::Unknown);
    }
    match si.as_slice() {
        [] if pi % po != 0 => Err(format!(
            "cannot reshape {} to {}: {pi} elements are not a multiple of {po}",
            shape_text(&Shape::Ranked(input.to_vec())),
            shape_text(&Shape::Ranked(target.to_vec()))
        )),
        [] => Ok(Dim::Known(pi / po)),
        [s] if pi == po => Ok(Dim::Sym(s.clone())),
        _ => Ok(Dim::Unknown),
    }
}

pub(crate) fn expand(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let shape = match cx.shape_value(1, "shape")? {
        Some(d) => broadcast_shapes(&[&x.shape, &Shape::Ranked(d)])?,
        None => Shape::Unranked,
    };
    Ok(vec![TensorType::new(x.dtype, shape)])
}

pub(crate) fn tile(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    let reps: Vec<Dim> = match cx.value(1) {
        Some(v) => v
            .elems
            .iter()
            .map(|e| {
                e.to_dim()
                    .ok_or_else(|| format!("repeats has a negative entry: {e:?}"))
            })
            .collect::<Result<_, _>>()?,
        None => vec![Dim::Unknown; dims.len()],
    };
    if reps.len() != dims.len() {
        return Err(format!(
            "repeats has {} entries for an input of rank {}",
            reps.len(),
            dims.len()
        ));
    }
    let out = dims.iter().zip(&reps).map(|(d, r)| mul(d, r)).collect();
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// `max(ceil((limit - start) / delta), 0)` elements.
pub(crate) fn range(cx: &Cx) -> Out {
    let dtype = cx.ty(0)?.dtype;
    for i in 0..3 {
        if cx.ty(i)?.shape.rank().is_some_and(|r| r > 1) {
            return Err(format!("input {i} must be a scalar, found {}", cx.ty(i)?));
        }
    }
    let scalar = |i: usize| cx.value(i).and_then(|v| v.elems.first().cloned());
    let n = if let (Some(Elem::Num(s)), Some(Elem::Num(l)), Some(Elem::Num(d))) =
        (scalar(0), scalar(1), scalar(2))
    {
        if d == 0 {
            return Err("delta is 0".into());
        }
        let span = l as i128 - s as i128;
        let d = d as i128;
        let n = if (span > 0) == (d > 0) && span != 0 {
            (span + d - d.signum()) / d
        } else {
            0
        };
        Dim::Known(u64::try_from(n.max(0)).map_err(|_| "range is too long")?)
    } else if let (Some(s), Some(l), Some(d)) = (float1(cx, 0), float1(cx, 1), float1(cx, 2)) {
        if d == 0.0 {
            return Err("delta is 0".into());
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n.is_finite() && n < u64::MAX as f64 {
            Dim::Known(n as u64)
        } else {
            Dim::Unknown
        }
    } else {
        match (scalar(0), scalar(1), scalar(2)) {
            (Some(Elem::Num(0)), Some(Elem::Sym(s)), Some(Elem::Num(1))) => Dim::Sym(s),
            _ => Dim::Unknown,
        }
    };
    Ok(vec![TensorType::new(dtype, Shape::Ranked(vec![n]))])
}

fn float1(cx: &Cx, i: usize) -> Option<f64> {
    match cx.floats(i)?.as_slice() {
        [v] => Some(*v as f64),
        _ => None,
    }
}

pub(crate) fn shape(cx: &Cx, s: &ShapeOf) -> Out {
    let x = cx.ty(0)?;
    let n = match x.shape.rank() {
        Some(r) => {
            let r = r as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
            let (a, b) = (clamp(s.start), clamp(s.end.unwrap_or(r)));
            Dim::Known((b - a).max(0) as u64)
        }
        None => Dim::Unknown,
    };
    Ok(vec![TensorType::new(DType::I64, Shape::Ranked(vec![n]))])
}

pub(crate) fn constant_of_shape(cx: &Cx, c: &ConstantOfShape) -> Out {
    let dtype = c.value.as_ref().map_or(DType::F32, |l| l.dtype);
    let dims = cx.shape_value(0, "shape")?;
    Ok(vec![TensorType::new(dtype, ranked_or_not(dims))])
}

pub(crate) fn transpose(cx: &Cx, t: &Transpose) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    let perm: Vec<usize> = match &t.perm {
        None => (0..dims.len()).rev().collect(),
        Some(p) => {
            if p.len() != dims.len() {
                return Err(format!(
                    "perm {p:?} has {} entries for an input of rank {}",
                    p.len(),
                    dims.len()
                ));
            }
            norm_axes(p, dims.len()).map_err(|e| format!("perm {p:?}: {e}"))?
        }
    };
    let out = perm.iter().map(|&a| dims[a].clone()).collect();
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// Axes from the attribute, else from input 1. `None`: input 1 exists but its value is
/// not known; `Some(None)`: no axes were given at all.
fn axes_of(cx: &Cx, attr: &Option<Vec<i64>>) -> Option<Option<Vec<i64>>> {
    match (attr, cx.node.input(1)) {
        (Some(a), _) => Some(Some(a.clone())),
        (None, Some(_)) => cx.ints(1).map(Some),
        (None, None) => Some(None),
    }
}

pub(crate) fn squeeze(cx: &Cx, a: &Axes) -> Out {
    let x = cx.ty(0)?;
    let (Some(dims), Some(axes)) = (x.shape.dims(), axes_of(cx, &a.axes)) else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let out = match axes {
        None => {
            // Which unknown dims are 1 is not known, so neither is the rank.
            if dims.iter().any(|d| d.known().is_none()) {
                return Ok(vec![TensorType::unranked(x.dtype)]);
            }
            dims.iter()
                .filter(|d| **d != Dim::Known(1))
                .cloned()
                .collect()
        }
        Some(axes) => {
            let axes = norm_axes(&axes, dims.len())?;
            for &ax in &axes {
                if let Dim::Known(n) = dims[ax] {
                    if n != 1 {
                        return Err(format!("cannot squeeze axis {ax} of size {n}"));
                    }
                }
            }
            dims.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect()
        }
    };
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

pub(crate) fn unsqueeze(cx: &Cx, a: &Axes) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let axes = match axes_of(cx, &a.axes) {
        Some(Some(axes)) => axes,
        Some(None) => return Err("no axes: give the `axes` attribute or a second input".into()),
        None => {
            // The count of new axes still fixes the rank.
            let k = match cx.opt_ty(1).and_then(|t| t.shape.dims()) {
                Some([Dim::Known(k)]) => *k as usize,
                _ => return Ok(vec![TensorType::unranked(x.dtype)]),
            };
            return Ok(vec![TensorType::new(
                x.dtype,
                Shape::Ranked(vec![Dim::Unknown; dims.len() + k]),
            )]);
        }
    };
    let rank = dims.len() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut rest = dims.iter();
    let out = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        })
        .collect();
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

pub(crate) fn flatten(cx: &Cx, f: &Flatten) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::new(
            x.dtype,
            Shape::Ranked(vec![Dim::Unknown; 2]),
        )]);
    };
    // Flatten's axis may equal the rank (everything in the first dim).
    let axis = if f.axis == dims.len() as i64 {
        dims.len()
    } else {
        norm_axis(f.axis, dims.len())?
    };
    let out = vec![product(&dims[..axis]), product(&dims[axis..])];
    Ok(vec![TensorType::new(x.dtype, Shape::Ranked(out))])
}

/// `d / k`, which must divide exactly when known.
fn div_exact(d: &Dim, k: u64, what: &str) -> Result<Dim, String> {
    Ok(match d {
        Dim::Known(n) if n % k != 0 => return Err(format!("{what} {n} is not a multiple of {k}")),
        Dim::Known(n) => Dim::Known(n / k),
        d if k == 1 => d.clone(),
        _ => Dim::Unknown,
    })
}

fn nchw(cx: &Cx, blocksize: i64) -> Result<Option<(DType, [Dim; 4], u64)>, String> {
    let x = cx.ty(0)?;
    if blocksize <= 0 {
        return Err(format!("blocksize {blocksize} must be positive"));
    }
    match x.shape.dims() {
        None => Ok(None),
        Some([n, c, h, w]) => Ok(Some((
            x.dtype,
            [n.clone(), c.clone(), h.clone(), w.clone()],
            blocksize as u64,
        ))),
        Some(_) => Err(format!("input must have rank 4, found {x}")),
    }
}

pub(crate) fn depth_to_space(cx: &Cx, blocksize: i64) -> Out {
    let Some((dtype, [n, c, h, w], b)) = nchw(cx, blocksize)? else {
        return Ok(vec![TensorType::unranked(cx.ty(0)?.dtype)]);
    };
    let b2 = b.checked_mul(b).ok_or("blocksize overflows")?;
    let out = vec![
        n,
        div_exact(&c, b2, "channel count")?,
        mul(&h, &Dim::Known(b)),
        mul(&w, &Dim::Known(b)),
    ];
    Ok(vec![TensorType::new(dtype, Shape::Ranked(out))])
}

pub(crate) fn space_to_depth(cx: &Cx, blocksize: i64) -> Out {
    let Some((dtype, [n, c, h, w], b)) = nchw(cx, blocksize)? else {
        return Ok(vec![TensorType::unranked(cx.ty(0)?.dtype)]);
    };
    let b2 = b.checked_mul(b).ok_or("blocksize overflows")?;
    let out = vec![
        n,
        mul(&c, &Dim::Known(b2)),
        div_exact(&h, b, "height")?,
        div_exact(&w, b, "width")?,
    ];
    Ok(vec![TensorType::new(dtype, Shape::Ranked(out))])
}

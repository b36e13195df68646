//! Data-movement ops: Reshape, Transpose, Flatten, Squeeze/Unsqueeze, Concat, Split,
//! Slice, Expand, Tile, Shape, Size, ConstantOfShape, Range, Trilu, Pad,
//! DepthToSpace/SpaceToDepth. Most build a source index per output element and `take` it,
//! which works for every element type alike.

use crate::broadcast::{broadcast_shapes, cartesian_index, expand_index, norm_axis, permute_index};
use crate::error::{bail, Result};
use crate::tensor::{checked_numel, map_data, numel_of, Elem, Tensor, TensorData};
use compc_ir::{Literal, Weight};

/// Integer values of a shape/index input.
pub(crate) fn ints(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if !t.dtype().is_int() {
        bail!("{what} must be an integer tensor, got {}", t.dtype());
    }
    Ok(t.to_i64_vec())
}

fn dims_from(v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                crate::error::RuntimeError::op(format!("{what} has a negative dimension {d}"))
            })
        })
        .collect()
}

pub fn reshape(x: &Tensor, shape: &Tensor, allowzero: bool) -> Result<Tensor> {
    let want = ints(shape, "reshape shape")?;
    let mut out = Vec::with_capacity(want.len());
    let mut infer = None;
    for (i, &d) in want.iter().enumerate() {
        match d {
            0 if !allowzero => match x.shape().get(i) {
                Some(&n) => out.push(n),
                None => bail!(
                    "reshape: 0 at position {i} copies a dimension the input {:?} lacks",
                    x.shape()
                ),
            },
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d >= 0 => out.push(d as usize),
            _ => bail!("reshape: invalid target shape {want:?}"),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !x.numel().is_multiple_of(rest) {
            bail!(
                "reshape: cannot infer -1 in {want:?} for {} elements",
                x.numel()
            );
        }
        out[i] = x.numel() / rest;
    }
    if numel_of(&out) != Some(x.numel()) {
        bail!(
            "reshape: {:?} ({} elements) cannot become {want:?}",
            x.shape(),
            x.numel()
        );
    }
    x.clone().reshaped(out)
}

pub fn transpose(x: &Tensor, perm: Option<&[i64]>) -> Result<Tensor> {
    let r = x.rank();
    let perm: Vec<usize> = match perm {
        None => (0..r).rev().collect(),
        Some(p) => p.iter().map(|&a| norm_axis(a, r)).collect::<Result<_>>()?,
    };
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        bail!("transpose perm {perm:?} is not a permutation of {r} axes");
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    let shape = perm.iter().map(|&p| x.shape()[p]).collect();
    x.take(&permute_index(x.shape(), &perm), shape, None)
}

pub fn flatten(x: &Tensor, axis: i64) -> Result<Tensor> {
    let r = x.rank() as i64;
    if axis < -r || axis > r {
        bail!("flatten axis {axis} is out of range for rank {r}");
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let outer = x.shape()[..a].iter().product();
    x.clone().reshaped(vec![outer, x.numel() / outer.max(1)])
}

pub fn squeeze(x: &Tensor, axes: Option<Vec<i64>>) -> Result<Tensor> {
    let r = x.rank();
    let drop: Vec<bool> = match axes {
        None => x.shape().iter().map(|&d| d == 1).collect(),
        Some(a) => {
            let mut m = vec![false; r];
            for ax in a {
                let i = norm_axis(ax, r)?;
                if x.shape()[i] != 1 {
                    bail!("squeeze axis {ax} has size {}, not 1", x.shape()[i]);
                }
                m[i] = true;
            }
            m
        }
    };
    let shape = x
        .shape()
        .iter()
        .zip(&drop)
        .filter(|(_, &d)| !d)
        .map(|(&n, _)| n)
        .collect();
    x.clone().reshaped(shape)
}

pub fn unsqueeze(x: &Tensor, axes: &[i64]) -> Result<Tensor> {
    let r = x.rank() + axes.len();
    let mut ins = vec![false; r];
    for &a in axes {
        let i = norm_axis(a, r)?;
        if std::mem::replace(&mut ins[i], true) {
            bail!("unsqueeze axes {axes:?} repeat an axis");
        }
    }
    let mut it = x.shape().iter();
    let shape = ins
        .iter()
        .map(|&new| {
            if new {
                1
            } else {
                it.next().copied().unwrap_or(1)
            }
        })
        .collect();
    x.clone().reshaped(shape)
}

fn concat_generic<T: Elem>(
    first: &[T],
    xs: &[&Tensor],
    outer: usize,
    inners: &[usize],
) -> Result<Vec<T>> {
    let mut parts = vec![first];
    for x in &xs[1..] {
        match T::slice(x.data()) {
            Some(s) => parts.push(s),
            None => bail!("concat inputs have different types"),
        }
    }
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for o in 0..outer {
        for (p, &n) in parts.iter().zip(inners) {
            out.extend_from_slice(&p[o * n..(o + 1) * n]);
        }
    }
    Ok(out)
}

pub fn concat(xs: &[&Tensor], axis: i64) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        bail!("concat needs at least one input")
    };
    let r = first.rank();
    let ax = norm_axis(axis, r)?;
    let mut shape = first.shape().to_vec();
    shape[ax] = 0;
    for x in xs {
        let same = x.rank() == r
            && x.shape()
                .iter()
                .enumerate()
                .all(|(i, &d)| i == ax || d == first.shape()[i]);
        if !same || x.dtype() != first.dtype() {
            bail!(
                "concat on axis {axis}: input {} {:?} does not match {} {:?}",
                x.dtype(),
                x.shape(),
                first.dtype(),
                first.shape()
            );
        }
        shape[ax] += x.shape()[ax];
    }
    let outer: usize = first.shape()[..ax].iter().product();
    let inners: Vec<usize> = xs
        .iter()
        .map(|x| x.shape()[ax..].iter().product())
        .collect();
    let data = map_data!(first.data(), v => concat_generic(v, xs, outer, &inners)?);
    Tensor::new(first.dtype(), shape, data)
}

/// Sub-tensor of positions `start..start+len` along `axis`.
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    let per_axis: Vec<Vec<usize>> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            if d == axis {
                (start..start + len).collect()
            } else {
                (0..n).collect()
            }
        })
        .collect();
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    x.take(&cartesian_index(x.shape(), &per_axis), shape, None)
}

pub fn split(
    x: &Tensor,
    a: &compc_ir::op::Split,
    sizes: Option<&Tensor>,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    let ax = norm_axis(a.axis, x.rank())?;
    let n = x.shape()[ax];
    let sizes: Vec<usize> = match (sizes, &a.split) {
        (Some(t), _) => dims_from(&ints(t, "split sizes")?, "split")?,
        (None, Some(s)) => dims_from(s, "split")?,
        (None, None) => {
            let k = a
                .num_outputs
                .map_or(num_outputs, |v| v.max(1) as usize)
                .max(1);
            let chunk = n.div_ceil(k);
            (0..k)
                .map(|i| chunk.min(n.saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != n || sizes.len() != num_outputs {
        bail!("split sizes {sizes:?} do not cover axis {ax} of size {n} in {num_outputs} outputs");
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for s in sizes {
        out.push(narrow(x, ax, start, s)?);
        start += s;
    }
    Ok(out)
}

pub fn slice(
    x: &Tensor,
    starts: &Tensor,
    ends: &Tensor,
    axes: Option<&Tensor>,
    steps: Option<&Tensor>,
) -> Result<Tensor> {
    let (st, en) = (ints(starts, "slice starts")?, ints(ends, "slice ends")?);
    let r = x.rank();
    let axes = match axes {
        Some(t) => ints(t, "slice axes")?,
        None => (0..st.len() as i64).collect(),
    };
    let steps = match steps {
        Some(t) => ints(t, "slice steps")?,
        None => vec![1; st.len()],
    };
    if en.len() != st.len() || axes.len() != st.len() || steps.len() != st.len() {
        bail!("slice starts/ends/axes/steps have different lengths");
    }
    let mut per_axis: Vec<Vec<usize>> = x.shape().iter().map(|&n| (0..n).collect()).collect();
    let mut seen = vec![false; r];
    for i in 0..st.len() {
        let ax = norm_axis(axes[i], r)?;
        if std::mem::replace(&mut seen[ax], true) {
            bail!("slice axes {axes:?} repeat an axis");
        }
        let dim = x.shape()[ax] as i64;
        let step = steps[i];
        if step == 0 {
            bail!("slice step is 0");
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = if step > 0 {
            (fix(st[i]).clamp(0, dim), fix(en[i]).clamp(0, dim))
        } else {
            (fix(st[i]).clamp(0, dim - 1), fix(en[i]).clamp(-1, dim - 1))
        };
        let mut idx = Vec::new();
        let mut p = s;
        while (step > 0 && p < e) || (step < 0 && p > e) {
            idx.push(p as usize);
            p = match p.checked_add(step) {
                Some(q) => q,
                None => break,
            };
        }
        per_axis[ax] = idx;
    }
    let shape = per_axis.iter().map(|v| v.len()).collect();
    x.take(&cartesian_index(x.shape(), &per_axis), shape, None)
}

pub fn expand(x: &Tensor, shape: &Tensor) -> Result<Tensor> {
    let want = dims_from(&ints(shape, "expand shape")?, "expand shape")?;
    let out = broadcast_shapes(x.shape(), &want)?;
    checked_numel(&out, "expand")?;
    x.take(&expand_index(x.shape(), &out), out, None)
}

pub fn tile(x: &Tensor, repeats: &Tensor) -> Result<Tensor> {
    let reps = dims_from(&ints(repeats, "tile repeats")?, "tile repeats")?;
    if reps.len() != x.rank() {
        bail!("tile repeats {reps:?} do not match rank {}", x.rank());
    }
    let dims: Vec<usize> = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&n, &k)| n.saturating_mul(k))
        .collect();
    checked_numel(&dims, "tile")?;
    let per_axis: Vec<Vec<usize>> = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&n, &k)| (0..n * k).map(|i| i % n.max(1)).collect())
        .collect();
    let shape = per_axis.iter().map(|v| v.len()).collect();
    x.take(&cartesian_index(x.shape(), &per_axis), shape, None)
}

pub fn shape_of(x: &Tensor, start: i64, end: Option<i64>) -> Tensor {
    let r = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = x.shape()[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Tensor::from_i64(vec![dims.len()], dims)
}

pub fn literal_tensor(l: &Literal) -> Result<Tensor> {
    let w = Weight::from_bytes("value", l.dtype, l.dims.clone(), l.bytes.clone())
        .map_err(|e| crate::error::RuntimeError::op(e.to_string()))?;
    Tensor::from_weight(&w)
}

pub fn constant_of_shape(shape: &Tensor, value: Option<&Literal>) -> Result<Tensor> {
    let dims = dims_from(
        &ints(shape, "constant_of_shape shape")?,
        "constant_of_shape shape",
    )?;
    let v = match value {
        Some(l) => literal_tensor(l)?,
        None => Tensor::scalar_f32(0.0),
    };
    if v.numel() != 1 {
        bail!(
            "constant_of_shape value must have one element, has {}",
            v.numel()
        );
    }
    let n = checked_numel(&dims, "constant_of_shape")?;
    v.take(&vec![0; n], dims, None)
}

pub fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let dt = start.dtype();
    if limit.dtype() != dt
        || delta.dtype() != dt
        || start.numel() != 1
        || limit.numel() != 1
        || delta.numel() != 1
    {
        bail!(
            "range needs three scalars of one type, got {} {} {}",
            dt,
            limit.dtype(),
            delta.dtype()
        );
    }
    if dt.is_int() {
        let (s, l, d) = (
            start.to_i64_vec()[0],
            limit.to_i64_vec()[0],
            delta.to_i64_vec()[0],
        );
        if d == 0 {
            bail!("range delta is 0");
        }
        let span = l as i128 - s as i128;
        let n = ((span + d as i128 - d.signum() as i128) / d as i128).clamp(0, u32::MAX as i128 * 8)
            as usize;
        checked_numel(&[n], "range")?;
        return Tensor::from_i64_as(dt, vec![n], (0..n as i64).map(|i| s + i * d).collect());
    }
    let (s, l, d) = (
        start.to_f64_vec()[0],
        limit.to_f64_vec()[0],
        delta.to_f64_vec()[0],
    );
    if d == 0.0 || !d.is_finite() {
        bail!("range delta is {d}");
    }
    let n = ((l - s) / d).ceil().max(0.0) as usize;
    checked_numel(&[n], "range")?;
    Tensor::from_f64_as(dt, vec![n], (0..n).map(|i| s + i as f64 * d).collect())
}

fn zero_like(x: &Tensor) -> Result<Tensor> {
    Tensor::new(x.dtype(), vec![1], TensorData::zeros(x.dtype(), 1)?)
}

pub fn trilu(x: &Tensor, k: Option<&Tensor>, upper: bool) -> Result<Tensor> {
    if x.rank() < 2 {
        bail!("trilu needs an input of rank ≥ 2, got {:?}", x.shape());
    }
    let k = match k {
        Some(t) => *ints(t, "trilu k")?.first().unwrap_or(&0),
        None => 0,
    };
    let (r, c) = (x.shape()[x.rank() - 2], x.shape()[x.rank() - 1]);
    let idx: Vec<usize> = (0..x.numel())
        .map(|p| {
            let (i, j) = (((p / c.max(1)) % r.max(1)) as i64, (p % c.max(1)) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if keep {
                p
            } else {
                usize::MAX
            }
        })
        .collect();
    x.take(&idx, x.shape().to_vec(), Some(&zero_like(x)?))
}

pub fn pad(
    x: &Tensor,
    pads: &Tensor,
    value: Option<&Tensor>,
    axes: Option<&Tensor>,
    mode: &str,
) -> Result<Tensor> {
    let r = x.rank();
    let p = ints(pads, "pad pads")?;
    let axes: Vec<usize> = match axes {
        Some(t) => ints(t, "pad axes")?
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if p.len() != 2 * axes.len() {
        bail!(
            "pad needs {} pads for {} axes, got {}",
            2 * axes.len(),
            axes.len(),
            p.len()
        );
    }
    let mut per_axis: Vec<Vec<usize>> = x.shape().iter().map(|&n| (0..n).collect()).collect();
    for (i, &ax) in axes.iter().enumerate() {
        let n = x.shape()[ax] as i64;
        let (b, e) = (p[i], p[i + axes.len()]);
        let Some(len) = n.checked_add(b).and_then(|v| v.checked_add(e)) else {
            bail!("pads {b}, {e} overflow");
        };
        if len < 0 {
            bail!("pads {b}, {e} remove more than axis {ax} of size {n}");
        }
        if len as u64 > crate::tensor::MAX_NUMEL as u64 {
            bail!("pads {b}, {e} make axis {ax} too large");
        }
        if n == 0 && mode != "constant" && len > 0 {
            bail!("pad mode `{mode}` cannot pad an empty axis");
        }
        per_axis[ax] = (0..len)
            .map(|o| {
                let s = o - b;
                if (0..n).contains(&s) {
                    return Ok(s as usize);
                }
                Ok(match mode {
                    "constant" => usize::MAX,
                    "edge" => s.clamp(0, n - 1) as usize,
                    "wrap" => s.rem_euclid(n) as usize,
                    "reflect" => {
                        if n == 1 {
                            0
                        } else {
                            let period = 2 * (n - 1);
                            let m = s.rem_euclid(period);
                            (if m < n { m } else { period - m }) as usize
                        }
                    }
                    other => bail!("unknown pad mode `{other}`"),
                })
            })
            .collect::<Result<_>>()?;
    }
    let fill = match value {
        Some(v) if v.numel() >= 1 => {
            if v.dtype() != x.dtype() {
                bail!(
                    "pad constant_value has type {}, input has {}",
                    v.dtype(),
                    x.dtype()
                );
            }
            v.clone()
        }
        _ => zero_like(x)?,
    };
    let shape = per_axis.iter().map(|v| v.len()).collect();
    x.take(&cartesian_index(x.shape(), &per_axis), shape, Some(&fill))
}

fn reshape_transpose(
    x: &Tensor,
    mid: Vec<usize>,
    perm: &[usize],
    out: Vec<usize>,
) -> Result<Tensor> {
    let t = x.clone().reshaped(mid)?;
    let p: Vec<i64> = perm.iter().map(|&a| a as i64).collect();
    transpose(&t, Some(&p))?.reshaped(out)
}

pub fn depth_to_space(x: &Tensor, b: i64, mode: &str) -> Result<Tensor> {
    let b = usize::try_from(b).unwrap_or(0);
    if x.rank() != 4 || b == 0 || !x.shape()[1].is_multiple_of(b * b) {
        bail!("depth_to_space needs a 4-D input with channels divisible by blocksize² ({b}²), got {:?}", x.shape());
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let cc = c / (b * b);
    let out = vec![n, cc, h * b, w * b];
    match mode {
        "DCR" => reshape_transpose(x, vec![n, b, b, cc, h, w], &[0, 3, 4, 1, 5, 2], out),
        "CRD" => reshape_transpose(x, vec![n, cc, b, b, h, w], &[0, 1, 4, 2, 5, 3], out),
        other => bail!("depth_to_space mode `{other}` is not DCR or CRD"),
    }
}

pub fn space_to_depth(x: &Tensor, b: i64) -> Result<Tensor> {
    let b = usize::try_from(b).unwrap_or(0);
    if x.rank() != 4 || b == 0 || !x.shape()[2].is_multiple_of(b) || !x.shape()[3].is_multiple_of(b)
    {
        bail!(
            "space_to_depth needs a 4-D input with H, W divisible by blocksize {b}, got {:?}",
            x.shape()
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    reshape_transpose(
        x,
        vec![n, c, h / b, b, w / b, b],
        &[0, 3, 5, 1, 2, 4],
        vec![n, c * b * b, h / b, w / b],
    )
}

pub fn size_of(x: &Tensor) -> Tensor {
    Tensor::from_i64(vec![], vec![x.numel() as i64])
}

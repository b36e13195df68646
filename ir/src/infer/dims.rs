//! Arithmetic on dims that may be known, symbolic or unknown. Dims carry no expressions,
//! so anything that would need one (`batch * seq`) becomes `Unknown`.

use crate::shape::{Dim, Shape, TensorType};

/// Broadcasts two dims (numpy rules). A known dim other than 1 wins over a symbolic or
/// unknown one, since the other must then be 1 or equal to it.
pub(crate) fn broadcast_dim(a: &Dim, b: &Dim) -> Result<Dim, String> {
    Ok(match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(x), Dim::Known(y)) if x != y => return Err(format!("{x} vs {y}")),
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Sym(x.clone()),
        _ => Dim::Unknown,
    })
}

/// Multidirectional broadcast of several shapes; unranked if any input is.
pub(crate) fn broadcast_shapes(shapes: &[&Shape]) -> Result<Shape, String> {
    let mut out: Vec<Dim> = Vec::new();
    for s in shapes {
        let Some(dims) = s.dims() else {
            return Ok(Shape::Unranked);
        };
        if dims.len() > out.len() {
            let mut grown = vec![Dim::Known(1); dims.len() - out.len()];
            grown.append(&mut out);
            out = grown;
        }
        let off = out.len() - dims.len();
        for (i, d) in dims.iter().enumerate() {
            out[off + i] = broadcast_dim(&out[off + i], d).map_err(|e| {
                let shown: Vec<String> = shapes.iter().map(|s| shape_text(s)).collect();
                format!("shapes {} do not broadcast: {e}", shown.join(", "))
            })?;
        }
    }
    Ok(Shape::Ranked(out))
}

/// `[2x?x{seq}]`, `[]` for a scalar, `[*]` unranked: for messages.
pub(crate) fn shape_text(s: &Shape) -> String {
    match s.dims() {
        None => "[*]".into(),
        Some(d) => {
            let parts: Vec<String> = d.iter().map(|d| d.to_string()).collect();
            format!("[{}]", parts.join("x"))
        }
    }
}

/// Two dims that must be equal at run time; the more precise one is kept.
pub(crate) fn unify(a: &Dim, b: &Dim) -> Result<Dim, String> {
    Ok(match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => return Err(format!("{x} vs {y}")),
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        (Dim::Sym(x), _) | (_, Dim::Sym(x)) => Dim::Sym(x.clone()),
        _ => Dim::Unknown,
    })
}

/// Product of dims: known if all are; a single symbol times ones stays that symbol.
pub(crate) fn product(dims: &[Dim]) -> Dim {
    let mut known: u64 = 1;
    let mut other: Option<&Dim> = None;
    for d in dims {
        match d {
            Dim::Known(n) => match known.checked_mul(*n) {
                Some(p) => known = p,
                None => return Dim::Unknown,
            },
            d if other.is_none() => other = Some(d),
            _ => return Dim::Unknown,
        }
    }
    match other {
        None => Dim::Known(known),
        // Zero elements whatever the symbol is.
        Some(_) if known == 0 => Dim::Known(0),
        Some(d) if known == 1 => d.clone(),
        Some(_) => Dim::Unknown,
    }
}

pub(crate) fn mul(a: &Dim, b: &Dim) -> Dim {
    product(&[a.clone(), b.clone()])
}

/// `a + k` for a constant `k`: a symbol survives only `k = 0`.
pub(crate) fn add_const(a: &Dim, k: i64) -> Result<Dim, String> {
    match a {
        Dim::Known(n) => {
            let v = (*n as i128) + k as i128;
            if v < 0 {
                Err(format!("size {n} + {k} is negative"))
            } else {
                u64::try_from(v)
                    .map(Dim::Known)
                    .map_err(|_| "size overflows".into())
            }
        }
        d if k == 0 => Ok(d.clone()),
        _ => Ok(Dim::Unknown),
    }
}

/// A dim from a number read out of the graph (a shape value, an attribute).
pub(crate) fn dim_of(n: i64, what: &str) -> Result<Dim, String> {
    u64::try_from(n)
        .map(Dim::Known)
        .map_err(|_| format!("{what} {n} is negative"))
}

/// Resolves a possibly negative axis against `rank` (ONNX: `[-rank, rank)`).
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Resolves a list of axes, rejecting duplicates.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} is repeated"));
        }
        out.push(n);
    }
    Ok(out)
}

/// ONNX Slice on one axis of known length `d`: the clamped start and the element count.
pub(crate) fn slice_range(d: i64, start: i64, end: i64, step: i64) -> Result<(i64, i64), String> {
    if step == 0 {
        return Err("slice step is 0".into());
    }
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (fix(start), fix(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, (d - 1).max(0)), e.clamp(-1, d - 1))
    };
    let span = if step > 0 {
        e as i128 - s as i128
    } else {
        s as i128 - e as i128
    };
    let stride = step.unsigned_abs() as i128;
    let len = if span <= 0 {
        0
    } else {
        ((span + stride - 1) / stride) as i64
    };
    // A backward slice of an empty axis selects nothing even though `s` clamps to 0.
    Ok((s, if d == 0 { 0 } else { len }))
}

/// Requires rank `want` when the rank is known.
pub(crate) fn check_rank(t: &TensorType, want: usize, what: &str) -> Result<(), String> {
    match t.shape.rank() {
        Some(r) if r != want => Err(format!("{what} must have rank {want}, found {t}")),
        _ => Ok(()),
    }
}

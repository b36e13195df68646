//! Data movement: reshapes (as `tensor.collapse_shape`/`expand_shape`, free views),
//! transpose, slice, concat, gather, expand, resize, and the few shape-valued ops that
//! survive as tensors (`shape`, `range`).

use super::builder::{elt, float_lit, identity_map, tensor_type, Body, Emitter, Init, Val};
use super::EmitError;
use compc_ir::op::Resize;
use compc_ir::{Dim, NodeId, Shape, TensorType};

/// A dim as a product of a known factor and named symbols (`batch*seq`).
fn factors(d: &Dim) -> Option<(u64, Vec<String>)> {
    match d {
        Dim::Known(n) => Some((*n, vec![])),
        Dim::Sym(s) => {
            let mut k = 1u64;
            let mut v = Vec::new();
            for part in s.split('*') {
                match part.parse::<u64>() {
                    Ok(n) => k = k.checked_mul(n)?,
                    Err(_) => v.push(part.to_string()),
                }
            }
            v.sort();
            Some((k, v))
        }
        Dim::Unknown => None,
    }
}

fn product(dims: &[Dim]) -> Option<(u64, Vec<String>)> {
    let mut k = 1u64;
    let mut syms = Vec::new();
    for d in dims {
        let (n, s) = factors(d)?;
        k = k.checked_mul(n)?;
        syms.extend(s);
    }
    syms.sort();
    Some((k, syms))
}

/// The dim equal to the product of `dims` (`Known` or a `*`-joined symbol).
pub fn product_dim(dims: &[Dim]) -> Dim {
    match product(dims) {
        None => Dim::Unknown,
        Some((k, s)) if s.is_empty() => Dim::Known(k),
        Some((1, s)) => Dim::Sym(s.join("*")),
        Some((k, s)) => Dim::Sym(format!("{k}*{}", s.join("*"))),
    }
}

/// Groups consecutive dims of `long` so each group's product is one dim of `short`
/// (dims of 1 join the group before them). `None` if the shapes do not line up.
fn groups(long: &[Dim], short: &[Dim]) -> Option<Vec<Vec<usize>>> {
    if short.is_empty() {
        return long.iter().all(|d| *d == Dim::Known(1)).then(Vec::new);
    }
    let mut out = Vec::new();
    let mut i = 0;
    for (si, sd) in short.iter().enumerate() {
        let want = factors(sd)?;
        let mut grp = Vec::new();
        loop {
            if i >= long.len() {
                return None;
            }
            grp.push(i);
            i += 1;
            if product(&grp.iter().map(|&j| long[j].clone()).collect::<Vec<_>>())? == want {
                break;
            }
        }
        // Trailing 1s belong to the last group.
        if si == short.len() - 1 {
            while i < long.len() && long[i] == Dim::Known(1) {
                grp.push(i);
                i += 1;
            }
        }
        out.push(grp);
    }
    (i == long.len()).then_some(out)
}

fn reassoc(g: &[Vec<usize>]) -> String {
    let parts: Vec<String> = g
        .iter()
        .map(|grp| {
            let v: Vec<String> = grp.iter().map(|i| i.to_string()).collect();
            format!("[{}]", v.join(", "))
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn collapse(em: &mut Emitter, v: &Val, g: &[Vec<usize>], to: &TensorType) -> Val {
    let ssa = em.op(format!(
        "tensor.collapse_shape {} {} : {} into {}",
        v.ssa,
        reassoc(g),
        v.mlir_type(),
        tensor_type(to)
    ));
    Val {
        ssa,
        ty: to.clone(),
    }
}

fn expand(em: &mut Emitter, v: &Val, g: &[Vec<usize>], to: &TensorType) -> Result<Val, EmitError> {
    let dims = to.shape.dims().unwrap();
    let two_dynamic = g
        .iter()
        .any(|grp| grp.iter().filter(|&&i| dims[i].known().is_none()).count() > 1);
    if two_dynamic {
        // MLIR 22's expand-strided-metadata crashes on a memref.expand_shape that splits
        // one dynamic dim into several; `tensor.reshape` by a shape tensor avoids it
        // (it becomes a memref.reshape of the contiguous buffer).
        let mut idx = Vec::new();
        for d in dims {
            idx.push(em.dim_value(d)?);
        }
        let shape = em.op(format!(
            "tensor.from_elements {} : tensor<{}xindex>",
            idx.join(", "),
            dims.len()
        ));
        let ssa = em.op(format!(
            "tensor.reshape {}({shape}) : ({}, tensor<{}xindex>) -> {}",
            v.ssa,
            v.mlir_type(),
            dims.len(),
            tensor_type(to)
        ));
        return Ok(Val {
            ssa,
            ty: to.clone(),
        });
    }
    let mut shape = Vec::new();
    for d in to.shape.dims().unwrap() {
        shape.push(em.dim_operand(d)?);
    }
    let ssa = em.op(format!(
        "tensor.expand_shape {} {} output_shape [{}] : {} into {}",
        v.ssa,
        reassoc(g),
        shape.join(", "),
        v.mlir_type(),
        tensor_type(to)
    ));
    Ok(Val {
        ssa,
        ty: to.clone(),
    })
}

/// Reshapes `v` to `to` (same element count): one collapse or expand when the dims group,
/// else a collapse to 1-D followed by an expand. Both are views, never copies.
pub fn expand_to(em: &mut Emitter, v: &Val, to: &TensorType) -> Result<Val, EmitError> {
    let src = v.dims().to_vec();
    let dst = to.shape.dims().unwrap().to_vec();
    let to = TensorType::new(v.ty.dtype, Shape::Ranked(dst.clone()));
    if src == dst {
        return Ok(Val {
            ssa: v.ssa.clone(),
            ty: to,
        });
    }
    if src.len() > dst.len() {
        if let Some(g) = groups(&src, &dst) {
            return Ok(collapse(em, v, &g, &to));
        }
    } else if let Some(g) = groups(&dst, &src) {
        return expand(em, v, &g, &to);
    }
    // Through 1-D.
    let flat = TensorType::new(v.ty.dtype, Shape::Ranked(vec![product_dim(&src)]));
    let f = if src.is_empty() {
        expand(em, v, &[], &flat)?
    } else {
        collapse(em, v, &[(0..src.len()).collect()], &flat)
    };
    if dst.is_empty() {
        Ok(collapse(em, &f, &[], &to))
    } else {
        expand(em, &f, &[(0..dst.len()).collect()], &to)
    }
}

/// Collapses the first `n` dims of `v` into one.
pub fn collapse_leading(em: &mut Emitter, v: &Val, n: usize) -> Result<Val, EmitError> {
    if n <= 1 {
        return Ok(v.clone());
    }
    let d = v.dims();
    let mut nd = vec![product_dim(&d[..n])];
    nd.extend_from_slice(&d[n..]);
    let mut g = vec![(0..n).collect::<Vec<_>>()];
    g.extend((n..d.len()).map(|i| vec![i]));
    let to = TensorType::new(v.ty.dtype, Shape::Ranked(nd));
    Ok(collapse(em, v, &g, &to))
}

/// Reshape, Flatten, Squeeze, Unsqueeze: the output type says everything.
pub fn reshape_to_output(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    expand_to(em, &x, &out)
}

pub fn transpose(em: &mut Emitter, id: NodeId, perm: Option<&[i64]>) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let r = x.rank();
    let perm: Vec<i64> = perm
        .map(|p| p.to_vec())
        .unwrap_or_else(|| (0..r as i64).rev().collect());
    let init = em.empty(&out)?;
    let t = tensor_type(&out);
    let p: Vec<String> = perm.iter().map(|i| i.to_string()).collect();
    let ssa = em.op(format!(
        "linalg.transpose ins({} : {}) outs({} : {t}) permutation = [{}]",
        x.ssa,
        x.mlir_type(),
        init.ssa,
        p.join(", ")
    ));
    Ok(Val { ssa, ty: out })
}

fn norm_axis(axis: i64, rank: usize) -> usize {
    if axis < 0 {
        (axis + rank as i64) as usize
    } else {
        axis as usize
    }
}

/// `offset + k` for an index that may be static or an SSA value.
fn add_offset(em: &mut Emitter, base: &str, k: i64) -> String {
    if let Ok(n) = base.parse::<i64>() {
        return (n + k).to_string();
    }
    if k == 0 {
        return base.to_string();
    }
    let c = em.cidx(k);
    em.op(format!("arith.addi {base}, {c} : index"))
}

pub fn slice(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let r = x.rank();
    let starts = em
        .const_i64(id, 1)
        .ok_or_else(|| em.err("slice starts must be constant"))?;
    // The ends need not be constant: the sizes come from the inferred output type.
    let axes = em
        .const_i64(id, 3)
        .unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = em.const_i64(id, 4).unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(em.err("slice starts, axes and steps differ in length"));
    }
    let mut offs: Vec<String> = vec!["0".into(); r];
    let mut strides: Vec<String> = vec!["1".into(); r];
    for (j, &a) in axes.iter().enumerate() {
        let a = norm_axis(a, r);
        if steps[j] <= 0 {
            return Err(em.err("slice with a negative step is not lowered yet"));
        }
        strides[a] = steps[j].to_string();
        let d = x.dims()[a].clone();
        let s = starts[j];
        offs[a] = match (d, s) {
            (Dim::Known(n), s) => {
                let n = n as i64;
                let s = if s < 0 { s + n } else { s };
                s.clamp(0, n).to_string()
            }
            (_, s) if s >= 0 => s.to_string(),
            (d, s) => {
                let dv = em.dim_value(&d)?;
                add_offset(em, &dv, s)
            }
        };
    }
    let mut sizes = Vec::new();
    for d in out.shape.dims().unwrap() {
        sizes.push(em.dim_operand(d)?);
    }
    let ssa = em.op(format!(
        "tensor.extract_slice {}[{}] [{}] [{}] : {} to {}",
        x.ssa,
        offs.join(", "),
        sizes.join(", "),
        strides.join(", "),
        x.mlir_type(),
        tensor_type(&out)
    ));
    Ok(Val { ssa, ty: out })
}

pub fn concat(em: &mut Emitter, id: NodeId, axis: i64) -> Result<Val, EmitError> {
    let out = em.out_type(id)?;
    let r = out.shape.rank().unwrap();
    let axis = norm_axis(axis, r);
    let mut acc = em.empty(&out)?;
    let mut off = "0".to_string();
    let t = tensor_type(&out);
    for i in 0..em.g.node(id).inputs().len() {
        let x = em.input(id, i)?;
        let mut offs = vec!["0".to_string(); r];
        offs[axis] = off.clone();
        let mut sizes = Vec::new();
        for d in x.dims().to_vec() {
            sizes.push(em.dim_operand(&d)?);
        }
        let ones = vec!["1"; r];
        let ssa = em.op(format!(
            "tensor.insert_slice {} into {}[{}] [{}] [{}] : {} into {t}",
            x.ssa,
            acc.ssa,
            offs.join(", "),
            sizes.join(", "),
            ones.join(", "),
            x.mlir_type()
        ));
        acc = Val {
            ssa,
            ty: out.clone(),
        };
        off = match x.dims()[axis].clone() {
            Dim::Known(n) => add_offset(em, &off, n as i64),
            d => {
                let dv = em.dim_value(&d)?;
                let base = match off.parse::<i64>() {
                    Ok(n) => em.cidx(n),
                    Err(_) => off.clone(),
                };
                em.op(format!("arith.addi {base}, {dv} : index"))
            }
        };
    }
    Ok(acc)
}

/// `out[i.., j.., k..] = data[i.., idx[j..], k..]`; negative indices count from the end.
pub fn gather(em: &mut Emitter, id: NodeId, axis: i64) -> Result<Val, EmitError> {
    let data = em.input(id, 0)?;
    let idx = em.input(id, 1)?;
    let out = em.out_type(id)?;
    let r = data.rank();
    let q = idx.rank();
    let axis = norm_axis(axis, r);
    let orank = r + q - 1;
    let idx_map = {
        let e: Vec<String> = (axis..axis + q).map(|i| format!("d{i}")).collect();
        super::builder::affine_map(orank, &e)
    };
    let ax_dim = data.dims()[axis].clone();
    let ax_len = em.dim_value(&ax_dim)?;
    let it = elt(idx.ty.dtype);
    let data_ssa = data.ssa.clone();
    let data_t = data.mlir_type();
    let iters = vec!["parallel"; orank];
    em.generic(
        &[(&idx, idx_map)],
        &out,
        identity_map(orank),
        &iters,
        Init::Empty,
        |b, a| {
            let i = b.op(format!("arith.index_cast {} : {it} to index", a[0]));
            // i < 0 ? i + len : i
            let z = b.op("arith.constant 0 : index");
            let neg = b.op(format!("arith.cmpi slt, {i}, {z} : index"));
            let wrapped = b.op(format!("arith.addi {i}, {ax_len} : index"));
            let i = b.op(format!("arith.select {neg}, {wrapped}, {i} : index"));
            let mut coords = Vec::new();
            for d in 0..axis {
                coords.push(b.index(d));
            }
            coords.push(i);
            for d in axis + 1..r {
                coords.push(b.index(d + q - 1));
            }
            Ok(b.op(format!(
                "tensor.extract {data_ssa}[{}] : {data_t}",
                coords.join(", ")
            )))
        },
    )
}

/// `shape` as a tensor (rarely needed: reshapes read their targets at compile time).
pub fn shape_of(
    em: &mut Emitter,
    id: NodeId,
    start: i64,
    end: Option<i64>,
) -> Result<Val, EmitError> {
    let v =
        em.g.node(id)
            .input(0)
            .ok_or_else(|| em.err("input missing"))?;
    let ty =
        em.g.value_type(v)
            .cloned()
            .ok_or_else(|| em.err("input type unknown"))?;
    let dims = ty
        .shape
        .dims()
        .ok_or_else(|| em.err("input rank unknown"))?
        .to_vec();
    let r = dims.len() as i64;
    let clampi = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
    let (s, e) = (clampi(start), clampi(end.unwrap_or(r)));
    let mut elems = Vec::new();
    for d in &dims[s..e.max(s)] {
        let dv = em.dim_value(d)?;
        elems.push(em.op(format!("arith.index_cast {dv} : index to i64")));
    }
    let out = em.out_type(id)?;
    let ssa = em.op(format!(
        "tensor.from_elements {} : {}",
        elems.join(", "),
        tensor_type(&out)
    ));
    Ok(Val { ssa, ty: out })
}

/// The first element of a constant input, or an error naming it (an empty constant too).
fn scalar<T: Copy>(em: &Emitter, v: Option<Vec<T>>, what: &str) -> Result<T, EmitError> {
    v.and_then(|v| v.first().copied())
        .ok_or_else(|| em.err(format!("range {what} must be a constant scalar")))
}

/// `range(start, limit, delta)`: the length comes from the output type; start and delta
/// must be constants.
pub fn range(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let out = em.out_type(id)?;
    let dt = out.dtype;
    let t = elt(dt);
    if dt.is_float() {
        let s = scalar(em, em.const_f32(id, 0), "start")?;
        let d = scalar(em, em.const_f32(id, 2), "delta")?;
        em.generic(
            &[],
            &out,
            identity_map(1),
            &["parallel"],
            Init::Empty,
            |b, _| {
                let i = b.index(0);
                let ii = b.op(format!("arith.index_cast {i} : index to i64"));
                let f = b.op(format!("arith.sitofp {ii} : i64 to {t}"));
                let dd = b.op(format!("arith.constant {} : {t}", float_lit(d)));
                let ss = b.op(format!("arith.constant {} : {t}", float_lit(s)));
                let m = b.op(format!("arith.mulf {f}, {dd} : {t}"));
                Ok(b.op(format!("arith.addf {m}, {ss} : {t}")))
            },
        )
    } else {
        let s = scalar(em, em.const_i64(id, 0), "start")?;
        let d = scalar(em, em.const_i64(id, 2), "delta")?;
        em.generic(
            &[],
            &out,
            identity_map(1),
            &["parallel"],
            Init::Empty,
            |b, _| {
                let i = b.index(0);
                let ii = b.op(format!("arith.index_cast {i} : index to {t}"));
                let dd = b.iconst(d, t);
                let ss = b.iconst(s, t);
                let m = b.op(format!("arith.muli {ii}, {dd} : {t}"));
                Ok(b.op(format!("arith.addi {m}, {ss} : {t}")))
            },
        )
    }
}

/// `expand`: a broadcast to the output type.
pub fn broadcast_to_output(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    em.elementwise(&[&x], &out, |_, a| Ok(a[0].clone()))
}

/// Tile with constant repeats: output index `o` reads input index `o mod n` on every
/// repeated axis (whose input size `n` must be static), as a gather-style
/// `linalg.generic` (`gqa`'s `Tile` of K and V over the head axis).
pub fn tile(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let rank = x.rank();
    let repeats = em
        .const_i64(id, 1)
        .filter(|r| r.len() == rank)
        .ok_or_else(|| em.err("tile needs constant repeats, one per axis"))?;
    let mut sizes = Vec::with_capacity(rank);
    for (d, &r) in repeats.iter().enumerate() {
        sizes.push(match (r, x.dims()[d].known()) {
            (1, _) => None,
            (_, Some(n)) => Some(n),
            (_, None) => {
                return Err(em.err(format!(
                    "tile: axis {d} is repeated but its size is not static"
                )))
            }
        });
    }
    gather_by_index(em, &x, &out, |b, d, o| match sizes[d] {
        None => o,
        Some(n) => {
            let n = b.op(format!("arith.constant {n} : index"));
            b.op(format!("arith.remui {o}, {n} : index"))
        }
    })
}

/// A `linalg.generic` over `out` whose element at output index o is `x[f(o)]`, with
/// `f(b, axis, o_axis)` giving the input index on each axis (a `tensor.extract` in the
/// body: the gather form of Tile and nearest-neighbour Resize).
fn gather_by_index(
    em: &mut Emitter,
    x: &Val,
    out: &TensorType,
    index: impl Fn(&mut Body, usize, String) -> String,
) -> Result<Val, EmitError> {
    let rank = x.rank();
    let (xs, xt) = (x.ssa.clone(), x.mlir_type());
    let iters = vec!["parallel"; rank];
    em.generic(&[], out, identity_map(rank), &iters, Init::Empty, |b, _| {
        let coords: Vec<String> = (0..rank)
            .map(|d| {
                let o = b.index(d);
                index(b, d, o)
            })
            .collect();
        Ok(b.op(format!("tensor.extract {xs}[{}] : {xt}", coords.join(", "))))
    })
}

/// Nearest-neighbour resize with `asymmetric` coordinates and `floor` rounding (what
/// `nn.Upsample(mode="nearest")` exports); other modes are refused by name.
pub fn resize(em: &mut Emitter, id: NodeId, r: &Resize) -> Result<Val, EmitError> {
    if r.mode != "nearest"
        || r.coordinate_transformation_mode != "asymmetric"
        || r.nearest_mode != "floor"
    {
        return Err(em.err(format!(
            "resize mode={} coordinate_transformation_mode={} nearest_mode={} is not lowered (only nearest/asymmetric/floor)",
            r.mode, r.coordinate_transformation_mode, r.nearest_mode
        )));
    }
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let rank = x.rank();
    let od = out.shape.dims().unwrap().to_vec();
    // Per-axis scale: the `scales` input, else output/input sizes.
    let scales: Vec<f32> = match em.const_f32(id, 2) {
        Some(s) if s.len() == rank => s,
        _ => {
            let mut v = Vec::new();
            for (i, d) in od.iter().enumerate() {
                match (d, &x.dims()[i]) {
                    (Dim::Known(o), Dim::Known(n)) => v.push(*o as f32 / *n as f32),
                    (a, b) if a == b => v.push(1.0),
                    _ => return Err(em.err("resize needs constant scales or static sizes")),
                }
            }
            v
        }
    };
    let in_dims: Vec<Option<u64>> = x.dims().iter().map(|d| d.known()).collect();
    gather_by_index(em, &x, &out, |b, d, o| {
        let s = scales[d];
        if s == 1.0 {
            return o;
        }
        let oi = b.op(format!("arith.index_cast {o} : index to i64"));
        let of = b.op(format!("arith.sitofp {oi} : i64 to f32"));
        let sc = b.op(format!("arith.constant {} : f32", float_lit(s)));
        let q = b.op(format!("arith.divf {of}, {sc} : f32"));
        let fl = b.op(format!("math.floor {q} : f32"));
        let ii = b.op(format!("arith.fptosi {fl} : f32 to i64"));
        let idx = b.op(format!("arith.index_cast {ii} : i64 to index"));
        match in_dims[d] {
            Some(n) => {
                let hi = b.op(format!("arith.constant {} : index", n - 1));
                b.op(format!("arith.minsi {idx}, {hi} : index"))
            }
            None => idx,
        }
    })
}

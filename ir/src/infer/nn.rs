//! Linear algebra, normalization and reductions: MatMul, Gemm, MatMulNBits, the norms,
//! Reduce*, ArgMax/ArgMin and RouterTopK.

use super::dims::{broadcast_shapes, check_rank, norm_axes, norm_axis, shape_text, unify};
use super::Cx;
use crate::dtype::DType;
use crate::op::{ArgReduce, Gemm, GroupQueryAttention, MatMulNBits, Norm, Reduce, RouterTopK};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

/// numpy `matmul`: rank-1 operands gain and then lose a unit axis; batch dims broadcast.
pub(crate) fn matmul(cx: &Cx) -> Out {
    matmul_types(cx.ty(0)?, cx.ty(1)?)
}

/// MatMul's output type for `a · b` (the integer and quantized forms read other inputs).
pub(crate) fn matmul_types(a: &TensorType, b: &TensorType) -> Out {
    let (Some(ad), Some(bd)) = (a.shape.dims(), b.shape.dims()) else {
        return Ok(vec![TensorType::unranked(a.dtype)]);
    };
    if ad.is_empty() || bd.is_empty() {
        return Err(format!("inputs must have rank ≥ 1, found {a} and {b}"));
    }
    let (ra, rb) = (ad.len(), bd.len());
    let (m, k1, a_batch) = if ra == 1 {
        (None, &ad[0], &[][..])
    } else {
        (Some(&ad[ra - 2]), &ad[ra - 1], &ad[..ra - 2])
    };
    let (k2, n, b_batch) = if rb == 1 {
        (&bd[0], None, &[][..])
    } else {
        (&bd[rb - 2], Some(&bd[rb - 1]), &bd[..rb - 2])
    };
    unify(k1, k2).map_err(|e| {
        format!(
            "inner dims disagree: {e} ({} · {})",
            shape_text(&a.shape),
            shape_text(&b.shape)
        )
    })?;
    let batch = broadcast_shapes(&[
        &Shape::Ranked(a_batch.to_vec()),
        &Shape::Ranked(b_batch.to_vec()),
    ])?;
    let mut out = batch.dims().map(<[Dim]>::to_vec).unwrap_or_default();
    out.extend(m.cloned());
    out.extend(n.cloned());
    Ok(vec![TensorType::new(a.dtype, Shape::Ranked(out))])
}

/// `alpha · A' · B' + beta · C` with A' = [M, K], B' = [K, N]; C broadcasts to [M, N].
pub(crate) fn gemm(cx: &Cx, g: &Gemm) -> Out {
    let (a, b) = (cx.ty(0)?, cx.ty(1)?);
    check_rank(a, 2, "A")?;
    check_rank(b, 2, "B")?;
    let pair = |t: &TensorType, trans: bool| match t.shape.dims() {
        Some([x, y]) if trans => (y.clone(), x.clone()),
        Some([x, y]) => (x.clone(), y.clone()),
        _ => (Dim::Unknown, Dim::Unknown),
    };
    let (m, ka) = pair(a, g.trans_a);
    let (kb, n) = pair(b, g.trans_b);
    unify(&ka, &kb).map_err(|e| {
        format!(
            "inner dims disagree: {e} (transA = {}, transB = {})",
            g.trans_a, g.trans_b
        )
    })?;
    let out = Shape::Ranked(vec![m, n]);
    if let Some(c) = cx.opt_ty(2) {
        if c.shape.rank().is_some_and(|r| r > 2) {
            return Err(format!("C must have rank ≤ 2, found {c}"));
        }
        let both = broadcast_shapes(&[&c.shape, &out])
            .map_err(|e| format!("C does not broadcast to the output: {e}"))?;
        if let (Some(x), Some(y)) = (both.as_known(), out.as_known()) {
            if x != y {
                return Err(format!(
                    "C {} does not broadcast to {}",
                    shape_text(&c.shape),
                    shape_text(&out)
                ));
            }
        }
    }
    Ok(vec![TensorType::new(a.dtype, out)])
}

/// `A [..., K] → [..., N]` in A's element type.
pub(crate) fn matmul_nbits(cx: &Cx, m: &MatMulNBits) -> Out {
    let (a, b) = (cx.ty(0)?, cx.ty(1)?);
    if m.k <= 0 || m.n <= 0 {
        return Err(format!("K = {} and N = {} must be positive", m.k, m.n));
    }
    if let Some(Dim::Known(n)) = b.shape.dims().and_then(|d| d.first()) {
        if *n != m.n as u64 {
            return Err(format!("B has {n} rows but N is {}", m.n));
        }
    }
    let Some(dims) = a.shape.dims() else {
        return Ok(vec![TensorType::unranked(a.dtype)]);
    };
    let Some((last, lead)) = dims.split_last() else {
        return Err("A is a scalar".into());
    };
    unify(last, &Dim::Known(m.k as u64))
        .map_err(|_| format!("A's last dim is {last} but K is {}", m.k))?;
    let mut out = lead.to_vec();
    out.push(Dim::Known(m.n as u64));
    Ok(vec![TensorType::new(a.dtype, Shape::Ranked(out))])
}

/// Y like X; in training mode also the running mean and variance, shaped like theirs.
pub(crate) fn batch_norm(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    let c = match x.shape.dims() {
        Some(d) if d.len() < 2 => return Err(format!("input must have rank ≥ 2, found {x}")),
        Some(d) => d[1].clone(),
        None => Dim::Unknown,
    };
    let names = ["scale", "bias", "mean", "var"];
    for (i, name) in names.iter().enumerate() {
        let t = cx.ty(i + 1)?;
        if let Some([d]) = t.shape.dims() {
            unify(d, &c).map_err(|e| format!("{name} does not match the channel count: {e}"))?;
        }
    }
    Ok(vec![x.clone(), cx.ty(3)?.clone(), cx.ty(4)?.clone()])
}

/// Y like X; Mean and InvStdDev keep the leading axes and are 1 on the normalized ones.
pub(crate) fn layer_norm(cx: &Cx, n: &Norm) -> Out {
    let x = cx.ty(0)?;
    // stash_type is an ONNX TensorProto element type code.
    let stat_type = match n.stash_type {
        1 => DType::F32,
        10 => DType::F16,
        11 => DType::F64,
        16 => DType::BF16,
        other => return Err(format!("stash_type {other} is not a float type")),
    };
    let stat = match x.shape.dims() {
        Some(d) => {
            let ax = norm_axis(n.axis, d.len())?;
            let mut s = d.to_vec();
            s[ax..].iter_mut().for_each(|d| *d = Dim::Known(1));
            Shape::Ranked(s)
        }
        None => Shape::Unranked,
    };
    let stat = TensorType::new(stat_type, stat);
    Ok(vec![x.clone(), stat.clone(), stat])
}

pub(crate) fn reduce(cx: &Cx, r: &Reduce) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::unranked(x.dtype)]);
    };
    let axes = match (&r.axes, cx.node.input(1)) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => match cx.ints(1) {
            Some(a) => a,
            None => return Ok(vec![reduce_unknown_axes(cx, x, r.keepdims)]),
        },
        (None, None) => Vec::new(),
    };
    let axes = if axes.is_empty() {
        if r.noop_with_empty_axes {
            return Ok(vec![x.clone()]);
        }
        (0..dims.len()).collect()
    } else {
        norm_axes(&axes, dims.len())?
    };
    Ok(vec![TensorType::new(
        x.dtype,
        Shape::Ranked(reduced(dims, &axes, r.keepdims)),
    )])
}

fn reduced(dims: &[Dim], axes: &[usize], keepdims: bool) -> Vec<Dim> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect()
}

/// Axes from a run-time input: with keepdims the rank stays, else the count of axes may
/// still give it.
fn reduce_unknown_axes(cx: &Cx, x: &TensorType, keepdims: bool) -> TensorType {
    let r = x.shape.rank().unwrap_or(0);
    let rank = if keepdims {
        Some(r)
    } else {
        match cx.opt_ty(1).and_then(|t| t.shape.dims()) {
            Some([Dim::Known(k)]) if *k > 0 => r.checked_sub(*k as usize),
            _ => None,
        }
    };
    match rank {
        Some(n) => TensorType::new(x.dtype, Shape::Ranked(vec![Dim::Unknown; n])),
        None => TensorType::unranked(x.dtype),
    }
}

pub(crate) fn arg_reduce(cx: &Cx, a: &ArgReduce) -> Out {
    let x = cx.ty(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::unranked(DType::I64)]);
    };
    let ax = norm_axis(a.axis, dims.len())?;
    Ok(vec![TensorType::new(
        DType::I64,
        Shape::Ranked(reduced(dims, &[ax], a.keepdims)),
    )])
}

/// Scores `[batch, seq]` → i64 indices `[batch, ceil(capacity · seq)]`. The count is
/// computed in f32, as the runtime and backends compute it.
pub(crate) fn router_top_k(cx: &Cx, r: &RouterTopK) -> Out {
    let x = cx.ty(0)?;
    if !(r.capacity > 0.0 && r.capacity <= 1.0) {
        return Err(format!("capacity {} must be in (0, 1]", r.capacity));
    }
    check_rank(x, 2, "router scores")?;
    let (b, k) = match x.shape.dims() {
        Some([b, Dim::Known(s)]) => (b.clone(), Dim::Known(capacity_tokens(r.capacity, *s))),
        Some([b, _]) => (b.clone(), Dim::Unknown),
        _ => (Dim::Unknown, Dim::Unknown),
    };
    Ok(vec![TensorType::new(DType::I64, Shape::Ranked(vec![b, k]))])
}

/// Tokens kept out of `seq` at `capacity`: `min(ceil(capacity · seq), seq)`.
pub fn capacity_tokens(capacity: f32, seq: u64) -> u64 {
    ((capacity * seq as f32).ceil() as u64).min(seq)
}

/// `output [B, S, H·d]` in the query's type; `present_key`/`present_value`
/// `[B, G, total, d]` (the cache length is a runtime value).
pub(crate) fn group_query_attention(cx: &Cx, a: &GroupQueryAttention) -> Out {
    let (h, kv) = (a.num_heads, a.kv_num_heads);
    if h <= 0 || kv <= 0 || h % kv != 0 {
        return Err(format!(
            "num_heads = {h} must be a positive multiple of kv_num_heads = {kv}"
        ));
    }
    let q = cx.ty(0)?;
    for (i, what) in [(5, "seqlens_k"), (6, "total_sequence_length")] {
        cx.ty(i)
            .map_err(|_| format!("{what} (input {i}) is required"))?;
    }
    let packed = cx.opt_ty(1).is_none();
    check_rank(q, 3, "query")?;
    let Some(dims) = q.shape.dims() else {
        let t = TensorType::unranked(q.dtype);
        return Ok(vec![t; cx.n_outputs()]);
    };
    // Head size from the query's hidden size (packed: q, k and v heads side by side).
    let per = if packed { h + 2 * kv } else { h } as u64;
    let d = match &dims[2] {
        Dim::Known(n) if n % per != 0 => {
            return Err(format!(
                "query hidden size {n} is not a multiple of {per} heads"
            ))
        }
        Dim::Known(n) => Dim::Known(n / per),
        _ => Dim::Unknown,
    };
    let hidden = match &d {
        Dim::Known(d) => Dim::Known(d * h as u64),
        _ if !packed => dims[2].clone(),
        _ => Dim::Unknown,
    };
    let mut out = vec![TensorType::new(
        q.dtype,
        Shape::Ranked(vec![dims[0].clone(), dims[1].clone(), hidden]),
    )];
    let cache = cx.opt_ty(3).map_or(q.dtype, |t| t.dtype);
    for _ in 1..cx.n_outputs() {
        out.push(TensorType::new(
            cache,
            Shape::Ranked(vec![
                dims[0].clone(),
                Dim::Known(kv as u64),
                Dim::Unknown,
                d.clone(),
            ]),
        ));
    }
    Ok(out)
}

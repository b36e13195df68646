//! Recognising rotary embedding in the form GroupQueryAttention computes itself:
//! `x·cos + rotate_half(x)·sin` with `rotate_half(x) = Concat(−x[…, d/2:], x[…, :d/2])`
//! (the half-split layout, `rotary_interleaved = 0`) and tables `cos = Cos(Concat(f, f))`,
//! `sin = Sin(Concat(f, f))` of one frequency table `f [.., S, d/2]` whose rows are the
//! positions. The op takes `Cos(f)` and `Sin(f)` as its caches, so the tables must repeat
//! one half (ONNX exports of Llama-style models build them exactly so) and the positions
//! must not come from a graph input (the op numbers tokens `0..S` itself).

use crate::idioms::matcher::small_const;
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Dim, Graph, NodeId, Op, ValueRef};

/// One matched rotary embedding: the head tensor it rotates and the frequency tables
/// (`f` in `Cos(Concat(f, f))`) of its cos and sin factors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub input: ValueRef,
    pub cos_freqs: ValueRef,
    pub sin_freqs: ValueRef,
}

fn binary(g: &Graph, v: ValueRef, k: BinaryOp) -> Option<(ValueRef, ValueRef)> {
    let n = g.node(v.node);
    (n.op == Op::Binary(k)).then_some((n.input(0)?, n.input(1)?))
}

fn last_dim(g: &Graph, v: ValueRef) -> Option<u64> {
    match g.value_type(v)?.shape.dims()?.last()? {
        Dim::Known(n) => Some(*n),
        _ => None,
    }
}

/// A Slice of the last axis with unit steps: `(data, starts, ends)` as constants where known.
fn last_axis_slice(g: &Graph, v: ValueRef) -> Option<(ValueRef, Option<i64>, Option<i64>)> {
    let n = g.node(v.node);
    if n.op != Op::Slice {
        return None;
    }
    let data = n.input(0)?;
    let rank = g.value_type(data)?.shape.rank()? as i64;
    let axes = n.input(3).and_then(|a| small_const(g, a))?;
    if axes.len() != 1 || (axes[0] as i64 != -1 && axes[0] as i64 != rank - 1) {
        return None;
    }
    if let Some(s) = n.input(4) {
        if small_const(g, s)? != [1.0] {
            return None;
        }
    }
    let c = |i: usize| {
        let w = g.const_weight(n.input(i)?)?;
        let v = w.to_i64_vec().ok()?;
        (v.len() == 1).then(|| v[0])
    };
    Some((data, c(1), c(2)))
}

/// `rotate_half(x)`'s source `x`, if `v` is exactly that.
fn rotate_half_source(g: &Graph, v: ValueRef) -> Option<ValueRef> {
    let n = g.node(v.node);
    let Op::Concat(c) = &n.op else { return None };
    let (Some(first), Some(second), 2) = (n.input(0), n.input(1), n.inputs().len()) else {
        return None;
    };
    let x_rank = g.value_type(v)?.shape.rank()? as i64;
    if c.axis != -1 && c.axis != x_rank - 1 {
        return None;
    }
    let neg = g.node(first.node);
    if neg.op != Op::Unary(UnaryOp::Neg) {
        return None;
    }
    let (x1, start_hi, end_hi) = last_axis_slice(g, neg.input(0)?)?;
    let (x2, start_lo, _) = last_axis_slice(g, second)?;
    let d = last_dim(g, x1)?;
    let half = d / 2;
    let hi_ok = end_hi.is_some_and(|e| e >= d as i64)
        && start_hi.is_none_or(|s| s == half as i64)
        && last_dim(g, neg.input(0)?) == Some(half);
    let lo_ok = start_lo == Some(0) && last_dim(g, second) == Some(half);
    (x1 == x2 && d % 2 == 0 && hi_ok && lo_ok).then_some(x1)
}

/// Through Unsqueeze/Reshape/Identity/Cast to `Cos(Concat(f, f))` (or Sin): returns `f`.
fn duplicated_table(g: &Graph, v: ValueRef, want: UnaryOp) -> Result<ValueRef, String> {
    let mut v = v;
    for _ in 0..6 {
        let n = g.node(v.node);
        match &n.op {
            Op::Unsqueeze(_) | Op::Reshape(_) | Op::Unary(UnaryOp::Identity) | Op::Cast(_) => {
                v = n.input(0).ok_or("a layout op without input")?;
            }
            Op::Unary(k) if *k == want => {
                let c = n.input(0).ok_or("Cos/Sin without input")?;
                let cn = g.node(c.node);
                let (Op::Concat(_), Some(a), Some(b), 2) =
                    (&cn.op, cn.input(0), cn.input(1), cn.inputs().len())
                else {
                    return Err(format!(
                        "the rotary table is {} of {}, not of a frequency table concatenated with itself",
                        want.name(),
                        cn.describe(c.node)
                    ));
                };
                if a != b {
                    return Err("the rotary table's two halves are different tensors (GroupQueryAttention's caches hold one half)".into());
                }
                return Ok(a);
            }
            _ => break,
        }
    }
    Err(format!(
        "the rotary {} table is {}, not {}(Concat(f, f)) of a frequency table",
        want.name(),
        g.node(v.node).describe(v.node),
        want.name()
    ))
}

/// True if `v`'s value depends on a graph input's data (reading only its shape is fine).
pub fn reads_input_data(g: &Graph, v: ValueRef) -> bool {
    let mut stack = vec![v.node];
    let mut seen = std::collections::HashSet::<NodeId>::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let n = g.node(id);
        match n.op {
            Op::Input => return true,
            Op::Shape(_) => continue,
            _ => stack.extend(n.inputs().iter().flatten().map(|i| i.node)),
        }
    }
    false
}

/// `Ok(None)`: `v` is not a rotary embedding at all; `Err`: it is one GroupQueryAttention
/// cannot compute (the reason).
pub fn match_rope(g: &Graph, v: ValueRef) -> Result<Option<Rope>, String> {
    let Some((a, b)) = binary(g, v, BinaryOp::Add) else {
        return Ok(None);
    };
    let (Some(ma), Some(mb)) = (binary(g, a, BinaryOp::Mul), binary(g, b, BinaryOp::Mul)) else {
        return Ok(None);
    };
    // The sin term is the product with rotate_half(x).
    let find = |(p, q): (ValueRef, ValueRef)| {
        rotate_half_source(g, p)
            .map(|x| (x, q))
            .or_else(|| rotate_half_source(g, q).map(|x| (x, p)))
    };
    let (x, sin, cos_term) = match (find(ma), find(mb)) {
        (Some((x, s)), None) => (x, s, mb),
        (None, Some((x, s))) => (x, s, ma),
        _ => {
            return Err("the rotary embedding is not x·cos + rotate_half(x)·sin in the half-split layout (interleaved RoPE is not recognised)".into())
        }
    };
    let cos = if cos_term.0 == x {
        cos_term.1
    } else if cos_term.1 == x {
        cos_term.0
    } else {
        return Err(
            "the cos term of the rotary embedding does not multiply the rotated tensor".into(),
        );
    };
    // Tables broadcast over batch and heads: [.., S, d] with ones before.
    for t in [cos, sin] {
        let dims = g
            .value_type(t)
            .and_then(|t| t.shape.dims().map(|d| d.to_vec()))
            .ok_or("the rotary tables have no known rank")?;
        let lead = dims.len().saturating_sub(2);
        if dims.len() < 2 || dims[..lead].iter().any(|d| *d != Dim::Known(1)) {
            return Err(format!(
                "the rotary tables have shape {dims:?}; GroupQueryAttention needs one table for the whole batch ([.., seq, head_dim] with ones before)"
            ));
        }
    }
    let cos_freqs = duplicated_table(g, cos, UnaryOp::Cos)?;
    let sin_freqs = duplicated_table(g, sin, UnaryOp::Sin)?;
    for f in [cos_freqs, sin_freqs] {
        if reads_input_data(g, f) {
            return Err("the rotary positions come from a graph input (position ids); GroupQueryAttention numbers the prompt's tokens 0..S itself".into());
        }
    }
    Ok(Some(Rope {
        input: x,
        cos_freqs,
        sin_freqs,
    }))
}

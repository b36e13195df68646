//! Writing one matched attention [`Core`] as a single `com.microsoft.GroupQueryAttention`
//! node (`op=contrib`): query/key/value are the projection outputs, the rotary caches are
//! `Cos(f)`/`Sin(f)` of the model's own frequency table reshaped to `[S, d/2]`, and the
//! prompt lengths are computed from the query's shape so batch and sequence stay dynamic:
//! `total_sequence_length = int32(S)`, `seqlens_k = Expand(int32(S − 1), [B])` (no past:
//! every sequence is the whole prompt). The readers of the merged heads read the node's
//! output instead; the old core becomes dead and is removed by the caller's DCE.

use super::core::Core;
use crate::pass::PassError;
use compc_ir::op::{Axis0, BinaryOp, Cast, GroupQueryAttention, Reshape, UnaryOp};
use compc_ir::{DType, Dim, Graph, Op, Shape, TensorType, ValueRef, Weight};
use std::collections::HashMap;

/// Values several attentions share: prompt lengths per (batch, seq) dims and rotary
/// caches per frequency table.
#[derive(Default)]
pub struct Shared {
    lengths: HashMap<(Dim, Dim), (ValueRef, ValueRef)>,
    caches: HashMap<(ValueRef, UnaryOp), ValueRef>,
}

fn node(g: &mut Graph, op: Op, inputs: Vec<ValueRef>, dtype: DType, name: String) -> ValueRef {
    let ty = TensorType {
        dtype,
        shape: Shape::Unranked,
    };
    let id = g.add_node(op, inputs.into_iter().map(Some).collect(), vec![ty], name);
    ValueRef::new(id, 0)
}

fn ints(g: &mut Graph, name: String, dims: Vec<u64>, v: &[i64]) -> Result<ValueRef, PassError> {
    let w = Weight::from_i64(name, dims, v).map_err(|e| PassError::Invalid(e.to_string()))?;
    Ok(ValueRef::new(g.add_const(w), 0))
}

/// `(seqlens_k [B] int32, total_sequence_length int32 scalar)` for a prompt shaped like `q`.
fn lengths(
    g: &mut Graph,
    shared: &mut Shared,
    q: ValueRef,
    name: &str,
) -> Result<(ValueRef, ValueRef), PassError> {
    let dims = g
        .value_type(q)
        .and_then(|t| t.shape.dims().map(|d| d.to_vec()))
        .unwrap_or_default();
    // Symbolic dims name one runtime value each, so equal keys mean equal lengths.
    let key = match dims.as_slice() {
        [b @ Dim::Sym(_), s @ Dim::Sym(_), _] => Some((b.clone(), s.clone())),
        _ => None,
    };
    if let Some(v) = key.as_ref().and_then(|k| shared.lengths.get(k)) {
        return Ok(*v);
    }
    let shape = node(
        g,
        Op::Shape(Default::default()),
        vec![q],
        DType::I64,
        format!("{name}_shape"),
    );
    let one = ints(g, format!("{name}_one"), vec![], &[1])?;
    let seq = node(
        g,
        Op::Gather(Axis0 { axis: 0 }),
        vec![shape, one],
        DType::I64,
        format!("{name}_seq"),
    );
    let (zero1, one1) = (
        ints(g, format!("{name}_batch_start"), vec![1], &[0])?,
        ints(g, format!("{name}_batch_end"), vec![1], &[1])?,
    );
    let batch = node(
        g,
        Op::Slice,
        vec![shape, zero1, one1],
        DType::I64,
        format!("{name}_batch"),
    );
    let last = node(
        g,
        Op::Binary(BinaryOp::Sub),
        vec![seq, one],
        DType::I64,
        format!("{name}_last"),
    );
    let cast = |to: DType| Op::Cast(Cast { to, saturate: true });
    let last32 = node(
        g,
        cast(DType::I32),
        vec![last],
        DType::I32,
        format!("{name}_last_i32"),
    );
    let seqlens = node(
        g,
        Op::Expand,
        vec![last32, batch],
        DType::I32,
        format!("{name}_seqlens_k"),
    );
    let total = node(
        g,
        cast(DType::I32),
        vec![seq],
        DType::I32,
        format!("{name}_total_sequence_length"),
    );
    if let Some(k) = key {
        shared.lengths.insert(k, (seqlens, total));
    }
    Ok((seqlens, total))
}

/// `Reshape(Cos(f), [-1, d/2])` (or Sin): one cache row per position.
fn cache(
    g: &mut Graph,
    shared: &mut Shared,
    f: ValueRef,
    k: UnaryOp,
    half: usize,
    name: &str,
) -> Result<ValueRef, PassError> {
    if let Some(v) = shared.caches.get(&(f, k)) {
        return Ok(*v);
    }
    let dtype = g.value_type(f).map_or(DType::F32, |t| t.dtype);
    let table = node(
        g,
        Op::Unary(k),
        vec![f],
        dtype,
        format!("{name}_{}", k.name()),
    );
    let shape = ints(
        g,
        format!("{name}_{}_shape", k.name()),
        vec![2],
        &[-1, half as i64],
    )?;
    let v = node(
        g,
        Op::Reshape(Reshape::default()),
        vec![table, shape],
        dtype,
        format!("{name}_{}_cache", k.name()),
    );
    shared.caches.insert((f, k), v);
    Ok(v)
}

/// Replaces `core` by a GroupQueryAttention node with `kv_heads` KV heads; returns its
/// output.
pub fn emit(
    g: &mut Graph,
    shared: &mut Shared,
    core: &Core,
    kv_heads: usize,
    name: &str,
) -> Result<ValueRef, PassError> {
    let (seqlens, total) = lengths(g, shared, core.q, "gqa_prompt")?;
    let mut inputs = vec![
        Some(core.q),
        Some(core.k),
        Some(core.v),
        None,
        None,
        Some(seqlens),
        Some(total),
    ];
    if let Some(r) = core.rope {
        let half = core.head_dim / 2;
        let c = cache(g, shared, r.cos_freqs, UnaryOp::Cos, half, "gqa_rotary")?;
        let s = cache(g, shared, r.sin_freqs, UnaryOp::Sin, half, "gqa_rotary")?;
        inputs.extend([Some(c), Some(s)]);
    }
    let op = Op::GroupQueryAttention(GroupQueryAttention {
        num_heads: core.heads as i64,
        kv_num_heads: kv_heads as i64,
        scale: core.scale,
        do_rotary: core.rope.is_some(),
        ..Default::default()
    });
    let ty = g
        .value_type(core.merged)
        .cloned()
        .ok_or_else(|| PassError::Invalid(format!("{name}: the merged heads have no type")))?;
    let id = g.add_node(op, inputs, vec![ty], name.to_string());
    let out = ValueRef::new(id, 0);
    g.replace_all_uses(core.merged, out);
    Ok(out)
}

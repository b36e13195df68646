//! The rewrite of structured pruning: every member of a group loses the removed units'
//! slices (weights, biases, constants on the channel), the reshapes that name the head
//! count get the new count, optional compensation folds the removed channels' mean
//! contribution into the consumers' biases, and the graph's types are inferred again.

use super::depgraph::{Axis, Group, GroupKind, Member};
use crate::calib::linalg::transpose;
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::ledger::GraphStats;
use crate::pass::PassError;
use crate::quant::layers::{read_w, Layer, Layout};
use compc_ir::infer::infer_graph;
use compc_ir::op::{BinaryOp, Concat};
use compc_ir::{DType, Graph, NodeId, Op, Shape, TensorType, ValueRef, Weight};
use compc_runtime::Tensor;

/// Indices kept along an axis of `units · width` entries when `removed` units go.
pub fn kept(units: usize, width: usize, removed: &[usize]) -> Vec<usize> {
    (0..units)
        .filter(|u| removed.binary_search(u).is_err())
        .flat_map(|u| u * width..(u + 1) * width)
        .collect()
}

fn invalid(s: String) -> PassError {
    PassError::Invalid(s)
}

/// Replaces input `slot` of `node` with a new constant holding `t`.
pub fn set_const(
    g: &mut Graph,
    node: NodeId,
    slot: usize,
    t: &Tensor,
    name: &str,
) -> Result<(), PassError> {
    let w = t.to_weight(name)?;
    let c = g.add_const(w);
    g.set_input(node, slot, Some(ValueRef::new(c, 0)));
    Ok(())
}

pub fn const_tensor(g: &Graph, v: ValueRef) -> Result<(Weight, Tensor), PassError> {
    let w = g
        .const_weight(v)
        .ok_or_else(|| {
            invalid(format!(
                "{} is not a constant",
                g.node(v.node).describe(v.node)
            ))
        })?
        .clone();
    let t = Tensor::from_weight(&w)?;
    Ok((w, t))
}

/// Keeps `keep` along the last axis of the float constant at input `slot` of `node`.
fn slice_const_last(
    g: &mut Graph,
    node: NodeId,
    slot: usize,
    keep: &[usize],
) -> Result<(), PassError> {
    let v = g
        .node(node)
        .input(slot)
        .ok_or_else(|| invalid(format!("{} lost input {slot}", g.node(node).describe(node))))?;
    let (w, t) = const_tensor(g, v)?;
    let shape = t.shape().to_vec();
    let last = *shape.last().unwrap_or(&1);
    let x = t.f32_cow();
    let mut out = Vec::with_capacity(x.len() / last.max(1) * keep.len());
    for row in x.chunks(last.max(1)) {
        out.extend(keep.iter().map(|&k| row[k]));
    }
    let mut ns = shape.clone();
    if let Some(l) = ns.last_mut() {
        *l = keep.len();
    }
    let nt = Tensor::from_f32_as(w.dtype, ns, out)?;
    set_const(g, node, slot, &nt, &w.name)
}

/// Writes a W-form `rows × cols` matrix as the layer's weight, with its new shape.
pub fn write_resized(
    g: &mut Graph,
    l: &Layer,
    w: Vec<f32>,
    rows: usize,
    cols: usize,
) -> Result<(), PassError> {
    let old = g
        .node(l.node())
        .input(1)
        .and_then(|v| g.const_weight(v))
        .ok_or_else(|| invalid(format!("layer `{}`: its weight is not a constant", l.name)))?;
    let name = old.name.clone();
    let (dims, data) = match l.layout {
        Layout::InOut => (vec![cols, rows], transpose(&w, rows, cols)),
        Layout::OutIn => (vec![rows, cols], w),
        Layout::Conv(_) => {
            return Err(invalid(format!(
                "layer `{}`: structured pruning of convolutions is not supported",
                l.name
            )))
        }
    };
    let t = Tensor::from_f32_as(l.dtype, dims, data)?;
    set_const(g, l.node(), 1, &t, &name)
}

/// Removes the units of one member linear.
pub fn slice_member(g: &mut Graph, l: &Layer, axis: Axis, keep: &[usize]) -> Result<(), PassError> {
    let w = read_w(g, l)?;
    let (rows, cols) = (l.rows, l.cols);
    match axis {
        Axis::Out => {
            let mut out = Vec::with_capacity(keep.len() * cols);
            for &r in keep {
                out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
            }
            write_resized(g, l, out, keep.len(), cols)?;
            if let Some((bnode, bval)) = l.linear.bias {
                let slot = bias_slot(g, l, bnode, bval)?;
                slice_const_last(g, bnode, slot, keep)?;
            }
        }
        Axis::In => {
            let mut out = Vec::with_capacity(rows * keep.len());
            for r in 0..rows {
                out.extend(keep.iter().map(|&c| w[r * cols + c]));
            }
            write_resized(g, l, out, rows, keep.len())?;
        }
    }
    Ok(())
}

/// Sets the element `from_end` places from the end of a Reshape's target shape to `value`.
pub fn set_shape_element(
    g: &mut Graph,
    reshape: NodeId,
    from_end: usize,
    value: i64,
) -> Result<(), PassError> {
    let shape_v = g.node(reshape).input(1).ok_or_else(|| {
        invalid(format!(
            "{} has no shape input",
            g.node(reshape).describe(reshape)
        ))
    })?;
    let name = g.node(reshape).name.clone();
    if let Some(w) = g.const_weight(shape_v) {
        let mut s = w.to_i64_vec().map_err(|e| invalid(e.to_string()))?;
        let n = s.len();
        if from_end > n {
            return Err(invalid(format!(
                "{}: shape too short",
                g.node(reshape).describe(reshape)
            )));
        }
        s[n - from_end] = value;
        let nw = Weight::from_i64(format!("{name}_shape"), vec![n as u64], &s)
            .map_err(|e| invalid(e.to_string()))?;
        let c = g.add_const(nw);
        g.set_input(reshape, 1, Some(ValueRef::new(c, 0)));
        return Ok(());
    }
    // A computed shape: where it is a Concat of pieces, the piece at that position may be a
    // one-element constant (torch.onnx writes `Concat(batch, seq, [heads], [head_dim])`).
    let pnode = g.node(shape_v.node);
    if matches!(pnode.op, Op::Concat(_)) {
        let pieces: Vec<Option<ValueRef>> = pnode.inputs().to_vec();
        let lens: Vec<Option<u64>> = pieces
            .iter()
            .map(|p| p.and_then(|v| g.value_type(v)?.shape.as_known()?.first().copied()))
            .collect();
        if lens.iter().all(|l| l.is_some()) {
            let total: u64 = lens.iter().map(|l| l.unwrap_or(0)).sum();
            let target = total as usize - from_end;
            let mut at = 0usize;
            for (i, l) in lens.iter().enumerate() {
                let l = l.unwrap_or(0) as usize;
                if target >= at && target < at + l {
                    if let Some(p) = pieces[i] {
                        if l == 1 && g.const_weight(p).is_some() {
                            let nw =
                                Weight::from_i64(format!("{name}_shape{i}"), vec![1], &[value])
                                    .map_err(|e| invalid(e.to_string()))?;
                            let c = g.add_const(nw);
                            g.set_input(shape_v.node, i, Some(ValueRef::new(c, 0)));
                            return Ok(());
                        }
                    }
                    break;
                }
                at += l;
            }
        }
    }
    // Otherwise: Concat(Slice(shape, 0, n − k), [value], Slice(shape, n − k + 1, n)).
    let n = g
        .value_type(shape_v)
        .and_then(|t| t.shape.as_known())
        .and_then(|d| d.first().copied())
        .ok_or_else(|| {
            invalid(format!(
                "{}: the length of its computed shape is not known",
                g.node(reshape).describe(reshape)
            ))
        })? as i64;
    let k = from_end as i64;
    let ty = TensorType {
        dtype: DType::I64,
        shape: Shape::Unranked,
    };
    let c64 = |g: &mut Graph, nm: String, v: i64| -> Result<ValueRef, PassError> {
        let w = Weight::from_i64(nm, vec![1], &[v]).map_err(|e| invalid(e.to_string()))?;
        Ok(ValueRef::new(g.add_const(w), 0))
    };
    let zero = c64(g, format!("{name}_s0"), 0)?;
    let head_end = c64(g, format!("{name}_s1"), n - k)?;
    let head = g.add_node(
        Op::Slice,
        vec![Some(shape_v), Some(zero), Some(head_end)],
        vec![ty.clone()],
        format!("{name}_shape_head"),
    );
    let mid = c64(g, format!("{name}_heads"), value)?;
    let mut parts = vec![Some(ValueRef::new(head, 0)), Some(mid)];
    if k > 1 {
        let tail_start = c64(g, format!("{name}_s2"), n - k + 1)?;
        let tail_end = c64(g, format!("{name}_s3"), n)?;
        let tail = g.add_node(
            Op::Slice,
            vec![Some(shape_v), Some(tail_start), Some(tail_end)],
            vec![ty.clone()],
            format!("{name}_shape_tail"),
        );
        parts.push(Some(ValueRef::new(tail, 0)));
    }
    let cat = g.add_node(
        Op::Concat(Concat { axis: 0 }),
        parts,
        vec![ty],
        format!("{name}_shape"),
    );
    g.set_input(reshape, 1, Some(ValueRef::new(cat, 0)));
    Ok(())
}

/// Gives `reshape` its own copy of a computed shape that other nodes read too, so that
/// [`set_shape_element`] then changes this reshape alone: torch.export splits q, k and v
/// into heads with one shared `Concat(batch, seq, [heads], [head_dim])`, and `gqa` gives
/// k and v fewer heads than q. (Structured pruning gives all three the same head count,
/// so it edits a shared shape in place.)
pub fn unshare_shape(g: &mut Graph, reshape: NodeId) {
    let Some(shape_v) = g.node(reshape).input(1) else {
        return;
    };
    if g.const_weight(shape_v).is_some()
        || g.value_users(shape_v).iter().all(|&(u, _)| u == reshape)
    {
        return;
    }
    let node = g.node(shape_v.node);
    let (op, inputs) = (node.op.clone(), node.inputs().to_vec());
    let ty = g.value_type(shape_v).cloned().unwrap_or(TensorType {
        dtype: DType::I64,
        shape: Shape::Unranked,
    });
    let name = format!("{}_shape", g.node(reshape).name);
    let copy = g.add_node(op, inputs, vec![ty], name);
    g.set_input(reshape, 1, Some(ValueRef::new(copy, 0)));
}

/// Adds `delta` (one value per output feature) to the layer's bias, creating a bias Add
/// when it has none.
pub fn add_to_bias(g: &mut Graph, l: &Layer, delta: &[f32]) -> Result<(), PassError> {
    if let Some((bnode, bval)) = l.linear.bias {
        let slot = bias_slot(g, l, bnode, bval)?;
        let (w, t) = const_tensor(g, bval)?;
        let b: Vec<f32> = t.f32_cow().iter().zip(delta).map(|(a, d)| a + d).collect();
        let nt = Tensor::from_f32_as(w.dtype, t.shape().to_vec(), b)?;
        return set_const(g, bnode, slot, &nt, &w.name);
    }
    let out = l.linear.output;
    let ty = g.value_type(out).cloned().unwrap_or(TensorType {
        dtype: l.dtype,
        shape: Shape::Unranked,
    });
    let bt = Tensor::from_f32_as(l.dtype, vec![delta.len()], delta.to_vec())?;
    let bw = bt.to_weight(&format!("{}_compensation", l.name))?;
    let c = g.add_const(bw);
    let users = g.value_users(out);
    let add = g.add_node(
        Op::Binary(BinaryOp::Add),
        vec![Some(out), Some(ValueRef::new(c, 0))],
        vec![ty],
        format!("{}_compensation", l.name),
    );
    for (u, slot) in users {
        g.set_input(u, slot as usize, Some(ValueRef::new(add, 0)));
    }
    for o in g.outputs.iter_mut() {
        if o.value == out {
            o.value = ValueRef::new(add, 0);
        }
    }
    Ok(())
}

/// Indices kept along a member's axis when `removed` units (of `units`) go, ascending.
pub fn kept_member(m: &Member, units: usize, removed: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = (0..units)
        .filter(|u| removed.binary_search(u).is_err())
        .flat_map(|u| m.indices(u, units))
        .collect();
    out.sort_unstable();
    out
}

/// Removes `removed` (sorted unit indices) from every member of `group`.
pub fn apply_group(
    g: &mut Graph,
    idioms: &Idioms,
    layers: &[Option<Layer>],
    group: &Group,
    removed: &[usize],
) -> Result<(), PassError> {
    for m in &group.members {
        let l = layers[m.linear].as_ref().ok_or_else(|| {
            invalid(format!(
                "{}: linear[{}] is not a float layer with a constant weight",
                describe_kind(group.kind),
                m.linear
            ))
        })?;
        let keep = kept_member(m, group.units, removed);
        slice_member(g, l, m.axis, &keep)?;
    }
    for c in &group.consts {
        let keep = kept(group.units, c.width, removed);
        slice_const_last(g, c.reader, c.slot, &keep)?;
    }
    if let GroupKind::Heads(ai) = group.kind {
        let a = &idioms.attention[ai];
        let (h, kv, d) = (
            a.num_heads.unwrap_or(0) as i64,
            a.num_kv_heads.unwrap_or(0) as i64,
            a.head_dim.unwrap_or(0) as i64,
        );
        let k = removed.len() as i64;
        let r = group.heads_per_unit as i64;
        let (nh, nkv) = (h - k * r, kv - k);
        for (i, &(node, from_end)) in group.reshapes.iter().enumerate() {
            let value = match (i, from_end) {
                (0, _) => nh,
                (_, 2) => nkv,
                _ => nh * d,
            };
            set_shape_element(g, node, from_end, value)?;
        }
    }
    Ok(())
}

pub fn describe_kind(k: GroupKind) -> String {
    match k {
        GroupKind::Mlp(i) => format!("mlp[{i}]"),
        GroupKind::Heads(i) => format!("attention[{i}]"),
    }
}

/// The report's line on the parameter count a structured prune left, `parameters a → b
/// (p%)` followed by `more` (empty, or more of the same line), and its `parameter_ratio`
/// measurement.
pub fn report_parameters(
    cx: &mut PassContext,
    before: &GraphStats,
    after: &GraphStats,
    more: &str,
) {
    let ratio = after.parameters as f64 / before.parameters.max(1) as f64;
    cx.note(format!(
        "parameters {} → {} ({:.1}%){more}",
        before.parameters,
        after.parameters,
        100.0 * ratio
    ));
    cx.measured("parameter_ratio", ratio);
}

/// Forgets every computed type (inputs and constants keep theirs) and infers them again.
pub fn reinfer(g: &mut Graph) -> Result<(), PassError> {
    let ids: Vec<NodeId> = g.node_ids().collect();
    for id in ids {
        if matches!(g.node(id).op, Op::Input | Op::Const(_)) {
            continue;
        }
        for t in g.node_mut(id).outputs.iter_mut() {
            t.shape = Shape::Unranked;
        }
    }
    infer_graph(g).map_err(|e| invalid(format!("shape inference after pruning: {e}")))
}

/// Which input of the bias node `bnode` is the layer's bias constant `bval`.
pub fn bias_slot(g: &Graph, l: &Layer, bnode: NodeId, bval: ValueRef) -> Result<usize, PassError> {
    g.node(bnode)
        .inputs()
        .iter()
        .position(|i| *i == Some(bval))
        .ok_or_else(|| invalid(format!("layer `{}`: bias input not found", l.name)))
}

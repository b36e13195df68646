//! Folding per-input-channel scales out of a group of linear layers (AWQ, SmoothQuant):
//! the layers' weights take `W·diag(s)` and the op before them takes `1/s`, so the float
//! function is unchanged. The `1/s` goes into the preceding op only where that is exact:
//!
//! - a norm whose output only these layers read: `γ ← γ/s` (LayerNorm also `β ← β/s`);
//! - a linear whose output channels reach these layers' inputs one to one through
//!   channel-preserving ops (attention's `P·V` for v → o without GQA; the gated product
//!   `act(gate) ⊙ up` for up → down): its output rows and bias divided by `s`, which for
//!   an already quantized layer is just its row scales;
//!
//! anywhere else into an explicit `Mul` on the layers' shared input.

use super::layers::{read_w, write_w, Layer};
use crate::idioms::{Idioms, Norm};
use crate::pass::PassError;
use compc_ir::op::BinaryOp;
use compc_ir::{Graph, NodeId, Op, TensorType, ValueRef};

/// Where the `1/s` of a scaled group goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Prev {
    /// Index into `Idioms::norms`.
    Norm(usize),
    /// Index into the layer list (the preceding linear).
    Linear(usize),
    /// An explicit `Mul` on the input.
    Mul,
}

/// Decides where a group's `1/s` can go. `members` index `layers`; `x` is their input.
pub fn find_prev(
    g: &Graph,
    idioms: &Idioms,
    layers: &[Layer],
    members: &[usize],
    x: ValueRef,
) -> Prev {
    let nodes: Vec<NodeId> = members.iter().map(|&m| layers[m].node()).collect();
    // Readers of only the shape (exporters read sizes off activations) do not see `1/s`.
    let only_group_reads_x = !g.outputs.iter().any(|o| o.value == x)
        && g.value_users(x)
            .iter()
            .all(|(u, _)| nodes.contains(u) || matches!(g.node(*u).op, Op::Shape(_) | Op::Size));
    if only_group_reads_x {
        if let Some(ni) = idioms.norms.iter().position(|n| n.output == x) {
            if idioms.norms[ni].scale.is_some() {
                return Prev::Norm(ni);
            }
        }
    }
    let layer_of = |li: usize| layers.iter().position(|l| l.index == li);
    if let [m] = members {
        let me = layers[*m].index;
        // v → o: P·V keeps V's channels (heads are not shared: no GQA).
        for a in &idioms.attention {
            if a.o != Some(me) {
                continue;
            }
            let no_gqa = a.num_kv_heads.is_none() || a.num_kv_heads == a.num_heads;
            if let (true, Some(v)) = (no_gqa, layer_of(a.v)) {
                if layers[v].rows == layers[*m].cols && !layers[v].is_conv() {
                    return Prev::Linear(v);
                }
            }
        }
        // up → down in a gated MLP: act(gate) ⊙ up is channel-wise in up.
        for mlp in &idioms.mlps {
            if mlp.down != me || mlp.gate.is_none() {
                continue;
            }
            if let Some(u) = layer_of(mlp.up) {
                let up = &layers[u];
                let users = g.value_users(up.linear.output);
                let gated_mul = matches!(users.as_slice(), [(n, _)] if g.node(*n).op == Op::Binary(BinaryOp::Mul));
                if gated_mul && up.rows == layers[*m].cols && !up.is_conv() {
                    return Prev::Linear(u);
                }
            }
        }
    }
    Prev::Mul
}

/// `W ← W·diag(s)` on a W-form matrix (column j times `s[j]`).
pub fn scale_columns(w: &mut [f32], cols: usize, s: &[f32]) {
    for row in w.chunks_mut(cols.max(1)) {
        for (v, f) in row.iter_mut().zip(s) {
            *v *= f;
        }
    }
}

/// A constant of `values` shaped like the constant `like` (same dims when the element
/// counts agree, else 1-D).
fn const_like(
    g: &mut Graph,
    like: ValueRef,
    values: Vec<f32>,
    suffix: &str,
) -> Result<ValueRef, PassError> {
    let (name, dtype, dims) = match g.const_weight(like) {
        Some(w) => (w.name.clone(), w.dtype, w.dims.clone()),
        None => return Err(PassError::Invalid("expected a constant".into())),
    };
    let numel: u64 = dims.iter().product();
    let dims: Vec<usize> = if numel as usize == values.len() {
        dims.iter().map(|&d| d as usize).collect()
    } else {
        vec![values.len()]
    };
    let t = compc_runtime::Tensor::from_f32_as(dtype, dims, values)?;
    let c = g.add_const(t.to_weight(&format!("{name}{suffix}"))?);
    Ok(ValueRef::new(c, 0))
}

/// Values of a constant broadcast to `n` (a scalar repeats).
fn const_values(g: &Graph, v: ValueRef, n: usize) -> Result<Vec<f32>, PassError> {
    let w = g
        .const_weight(v)
        .ok_or_else(|| PassError::Invalid("expected a constant".into()))?;
    let vals = w
        .to_f32_vec()
        .map_err(|e| PassError::Invalid(e.to_string()))?;
    match vals.len() {
        1 => Ok(vec![vals[0]; n]),
        m if m == n => Ok(vals),
        m => Err(PassError::Invalid(format!(
            "norm parameter `{}` has {m} values, the layers read {n} channels",
            w.name
        ))),
    }
}

/// `γ ← γ/s` (and `β ← β/s`) of a norm, in new constants.
pub fn fold_into_norm(g: &mut Graph, norm: &Norm, s: &[f32]) -> Result<(), PassError> {
    let n = s.len();
    for param in [norm.scale, norm.bias].into_iter().flatten() {
        let vals = const_values(g, param, n)?;
        let new: Vec<f32> = vals.iter().zip(s).map(|(v, f)| v / f).collect();
        let c = const_like(g, param, new, "_scaled")?;
        for &n in &norm.nodes {
            g.replace_input(n, param, c);
        }
    }
    Ok(())
}

/// Divides output channel r of a float layer (weight rows and bias) by `s[r]`.
pub fn fold_into_linear_rows(g: &mut Graph, l: &Layer, s: &[f32]) -> Result<(), PassError> {
    let mut w = read_w(g, l)?;
    for (row, f) in w.chunks_mut(l.cols.max(1)).zip(s) {
        row.iter_mut().for_each(|v| *v /= f);
    }
    write_w(g, l, &w)?;
    fold_into_bias(g, l, s)
}

/// Divides the layer's bias by `s`.
pub fn fold_into_bias(g: &mut Graph, l: &Layer, s: &[f32]) -> Result<(), PassError> {
    let Some((reader, _)) = l.linear.bias else {
        return Ok(());
    };
    // The bias as the reader reads it now (an earlier fold may have replaced it): input
    // 2 of Gemm/Conv, the constant operand of a MatMul's bias Add.
    let node = g.node(reader);
    let b = if reader == l.node() {
        node.input(2)
    } else {
        node.inputs()
            .iter()
            .flatten()
            .copied()
            .find(|v| g.const_weight(*v).is_some())
    };
    let Some(b) = b.filter(|v| g.const_weight(*v).is_some()) else {
        return Ok(());
    };
    let vals = const_values(g, b, s.len())?;
    let new: Vec<f32> = vals.iter().zip(s).map(|(v, f)| v / f).collect();
    let c = const_like(g, b, new, "_scaled")?;
    g.replace_input(reader, b, c);
    Ok(())
}

/// Inserts `x · (1/s)` and makes the layers read it.
pub fn insert_mul(
    g: &mut Graph,
    x: ValueRef,
    layers: &[&Layer],
    s: &[f32],
    name: &str,
) -> Result<(), PassError> {
    let ty: TensorType = g
        .value_type(x)
        .cloned()
        .ok_or_else(|| PassError::Invalid(format!("`{name}`: the input has no type")))?;
    let inv: Vec<f32> = s.iter().map(|f| 1.0 / f).collect();
    let t = compc_runtime::Tensor::from_f32_as(ty.dtype, vec![inv.len()], inv)?;
    let c = g.add_const(t.to_weight(&format!("{name}_awq_inv_scale"))?);
    let mul = g.add_node(
        Op::Binary(BinaryOp::Mul),
        vec![Some(x), Some(ValueRef::new(c, 0))],
        vec![ty],
        format!("{name}_awq_scale"),
    );
    for l in layers {
        g.set_input(l.node(), 0, Some(ValueRef::new(mul, 0)));
    }
    Ok(())
}

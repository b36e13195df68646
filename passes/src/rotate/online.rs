//! Rotations inside a block (techniques.md §4.5): the online Hadamard before an MLP's down
//! projection (`z ← z·K` as a `hadamard` op, `B_down ← Kᵀ·B_down`) and the per-head
//! rotation of V and O (`v_h ← v_h·H`, absorbed by o_proj's rows of that head; attention
//! is linear in V per head, so no op is needed).

use super::rotation::Rotation;
use super::weights;
use crate::idioms::{Attention, Idioms};
use crate::pass::PassError;
use compc_ir::op::Hadamard;
use compc_ir::{DType, Graph, Op, TensorType, ValueRef};

fn err(s: impl Into<String>) -> PassError {
    PassError::Invalid(format!("rotate: {}", s.into()))
}

/// What a Hadamard on the input of linear `down` needs: its input width, the Hadamard
/// rotation of that size, and its input value and type.
pub(super) struct DownInput {
    pub width: usize,
    pub rotation: Rotation,
    pub x: ValueRef,
    pub ty: TensorType,
}

pub(super) fn down_input(g: &Graph, idioms: &Idioms, down: usize) -> Result<DownInput, PassError> {
    let l = &idioms.linears[down];
    let name = g.node(l.node).describe(l.node);
    let width = l
        .in_features
        .ok_or_else(|| err(format!("{name}: unknown input width")))? as usize;
    let rotation = Rotation::hadamard(width)
        .ok_or_else(|| err(format!("{name}: no rotation of size {width}")))?;
    let x = g
        .node(l.node)
        .input(0)
        .ok_or_else(|| err(format!("{name}: no input")))?;
    let ty = g
        .value_type(x)
        .cloned()
        .ok_or_else(|| err(format!("{name}: the input has no type")))?;
    Ok(DownInput {
        width,
        rotation,
        x,
        ty,
    })
}

/// The `hadamard` op's second input: the dense `kk × kk` factor of a Hadamard size that is
/// not a power of two (`Rotation::factor_f32`), as a constant.
pub(super) fn hadamard_factor(
    g: &mut Graph,
    kk: usize,
    factor: Vec<f32>,
) -> Result<ValueRef, PassError> {
    let t = compc_runtime::Tensor::from_f32_as(DType::F32, vec![kk, kk], factor)?;
    Ok(ValueRef::new(
        g.add_const(t.to_weight(&format!("hadamard_factor_{kk}"))?),
        0,
    ))
}

/// Inserts the online Hadamard on the input of linear `down` and absorbs its transpose
/// into the weight. Returns how the rotation was built.
pub fn insert_down_hadamard(
    g: &mut Graph,
    idioms: &Idioms,
    down: usize,
    factors: &mut Vec<(usize, ValueRef)>,
) -> Result<String, PassError> {
    let DownInput {
        width: f,
        rotation: k,
        x,
        ty,
    } = down_input(g, idioms, down)?;
    let l = &idioms.linears[down];
    let mut inputs = vec![Some(x)];
    if let Some((kk, fv)) = k.factor_f32() {
        // One constant per factor order, shared by every layer.
        let c = match factors.iter().find(|(n, _)| *n == kk) {
            Some((_, c)) => *c,
            None => {
                let c = hadamard_factor(g, kk, fv)?;
                factors.push((kk, c));
                c
            }
        };
        inputs.push(Some(c));
    }
    let base = g.node(l.node).name.clone();
    let h = g.add_node(
        Op::Hadamard(Hadamard { size: k.s as i64 }),
        inputs,
        vec![ty],
        format!("{base}_online_hadamard"),
    );
    g.set_input(l.node, 0, Some(ValueRef::new(h, 0)));
    let mut b = weights::read_input(g, l.node, 1, "down projection weight")?;
    let cols = b.data.len() / f;
    k.left_mul_t(&mut b.data, cols);
    weights::write_input(g, l.node, 1, &b, "_had")?;
    Ok(k.how)
}

/// `B_v[:, head] ← B_v[:, head]·H` (and its bias), `B_o[head rows] ← Hᵀ·B_o[head rows]`.
pub fn rotate_value_output(
    g: &mut Graph,
    idioms: &Idioms,
    a: &Attention,
) -> Result<String, PassError> {
    let vl = &idioms.linears[a.v];
    let vname = g.node(vl.node).describe(vl.node);
    let (Some(dh), Some(o)) = (a.head_dim, a.o) else {
        return Err(err(format!(
            "attention reading {vname}: unknown head size or no output projection"
        )));
    };
    let dh = dh as usize;
    let ol = &idioms.linears[o];
    let (Some(vout), Some(oin)) = (vl.out_features, ol.in_features) else {
        return Err(err(format!("{vname}: unknown widths")));
    };
    if !(vout as usize).is_multiple_of(dh) || !(oin as usize).is_multiple_of(dh) {
        return Err(err(format!(
            "{vname}: widths {vout}/{oin} are not multiples of the head size {dh}"
        )));
    }
    let h = Rotation::hadamard(dh).ok_or_else(|| err(format!("no rotation of size {dh}")))?;
    let mut bv = weights::read_input(g, vl.node, 1, "value weight")?;
    for slice in bv.data.chunks_mut(dh) {
        h.apply_row(slice);
    }
    weights::write_input(g, vl.node, 1, &bv, "_had")?;
    if let Some((add, bias)) = vl.bias {
        let cur = super::pass::current_const(g, add, bias);
        let mut b = weights::read(g, cur, "value bias")?;
        for slice in b.data.chunks_mut(dh) {
            h.apply_row(slice);
        }
        super::pass::set_const_input(g, add, cur, &b, "_had")?;
    }
    let mut bo = weights::read_input(g, ol.node, 1, "output projection weight")?;
    let cols = bo.data.len() / oin as usize;
    for block in bo.data.chunks_mut(dh * cols) {
        h.left_mul_t(block, cols);
    }
    weights::write_input(g, ol.node, 1, &bo, "_had")?;
    Ok(format!("{} per head of {dh}", h.how))
}

//! `rotate{fold=false}`: the same rotations, written as explicit ops instead of folded
//! into the weights. The residual stream is rotated by `MatMul(·, Q)` after the embedding
//! and after every writer, and un-rotated by `MatMul(·, Qᵀ)` before the readers of every
//! stream norm; the online rotation before each MLP down projection is a `hadamard` op
//! followed by its inverse (a second `hadamard` when the transform is the plain
//! normalized Sylvester matrix, which is symmetric and orthogonal, else `MatMul(·, Kᵀ)`).
//!
//! The graph computes the same function, with the rotations visible: `egraph-opt` then
//! does the folding (its linear-chain rule multiplies `W·Q` and `Qᵀ·B` into single
//! weights, its Hadamard rule cancels `H∘H`), which is how the e-graph's rules are checked
//! against what `rotate` does directly. Norm scales are still folded into the readers
//! first (an RMSNorm commutes with Q only without its scale). The per-head V/O rotation
//! has no op of its own (attention is linear in V per head) and is left out.

use super::online::{down_input, hadamard_factor, DownInput};
use super::rotation::Rotation;
use super::stream::Stream;
use crate::calib::linalg::transpose;
use crate::idioms::Idioms;
use crate::pass::PassError;
use compc_ir::op::Hadamard;
use compc_ir::{DType, Graph, NodeId, Op, ValueRef};
use compc_runtime::Tensor;
use std::collections::BTreeMap;

fn err(s: impl Into<String>) -> PassError {
    PassError::Invalid(format!("rotate: {}", s.into()))
}

/// A constant `n × n` f32 matrix.
fn matrix_const(g: &mut Graph, m: &[f64], n: usize, name: &str) -> Result<ValueRef, PassError> {
    let t = Tensor::from_f32_as(
        DType::F32,
        vec![n, n],
        m.iter().map(|&x| x as f32).collect(),
    )?;
    Ok(ValueRef::new(g.add_const(t.to_weight(name)?), 0))
}

/// `op(v, extra…)` placed after `v`: every former reader of `v` (and graph output) reads
/// the new node instead.
fn insert_after(
    g: &mut Graph,
    v: ValueRef,
    op: Op,
    extra: Vec<Option<ValueRef>>,
    name: String,
) -> Result<ValueRef, PassError> {
    let ty = g
        .value_type(v)
        .cloned()
        .ok_or_else(|| err(format!("{}: no type", g.node(v.node).describe(v.node))))?;
    let users = g.value_users(v);
    let mut inputs = vec![Some(v)];
    inputs.extend(extra);
    let n = g.add_node(op, inputs, vec![ty], name);
    let nv = ValueRef::new(n, 0);
    for (u, slot) in users {
        g.set_input(u, slot as usize, Some(nv));
    }
    for o in g.outputs.iter_mut() {
        if o.value == v {
            o.value = nv;
        }
    }
    Ok(nv)
}

fn node_name(g: &Graph, id: NodeId) -> String {
    let n = &g.node(id).name;
    if n.is_empty() {
        format!("node{}", id.index())
    } else {
        n.clone()
    }
}

/// Explicit stream rotations. Returns how many `MatMul`s by Q or Qᵀ were inserted.
pub fn rotate_stream_explicit(
    g: &mut Graph,
    idioms: &Idioms,
    stream: &Stream,
    q: &Rotation,
) -> Result<usize, PassError> {
    let d = stream.d;
    let qd = q.dense();
    let qc = matrix_const(g, &qd, d, "stream_rotation")?;
    let qt = matrix_const(g, &transpose(&qd, d, d), d, "stream_rotation_t")?;
    let mut inserted = 0;
    let emb = ValueRef::new(stream.embed_gather, 0);
    let name = format!("{}_rotate", node_name(g, stream.embed_gather));
    insert_after(g, emb, Op::MatMul, vec![Some(qc)], name)?;
    inserted += 1;
    for &li in &stream.writers {
        let out = idioms.linears[li].output;
        let name = format!("{}_rotate", node_name(g, idioms.linears[li].node));
        insert_after(g, out, Op::MatMul, vec![Some(qc)], name)?;
        inserted += 1;
    }
    // One un-rotation per norm output, shared by the readers of that output.
    let mut unrotated: BTreeMap<ValueRef, ValueRef> = BTreeMap::new();
    for (_, readers) in &stream.norms {
        for &li in readers {
            let node = idioms.linears[li].node;
            let x = g
                .node(node)
                .input(0)
                .ok_or_else(|| err(format!("{}: no input", g.node(node).describe(node))))?;
            let u = match unrotated.get(&x) {
                Some(&u) => u,
                None => {
                    let name = format!("{}_unrotate", node_name(g, x.node));
                    let n = g.add_node(
                        Op::MatMul,
                        vec![Some(x), Some(qt)],
                        vec![g
                            .value_type(x)
                            .cloned()
                            .ok_or_else(|| err("a stream reader's input has no type"))?],
                        name,
                    );
                    inserted += 1;
                    let u = ValueRef::new(n, 0);
                    unrotated.insert(x, u);
                    u
                }
            };
            g.set_input(node, 0, Some(u));
        }
    }
    Ok(inserted)
}

/// `hadamard` and its inverse on the input of linear `down`. Returns how it was built.
pub fn down_hadamard_pair(
    g: &mut Graph,
    idioms: &Idioms,
    down: usize,
) -> Result<String, PassError> {
    let DownInput {
        width: f,
        rotation: k,
        x,
        ty,
    } = down_input(g, idioms, down)?;
    let down_node = idioms.linears[down].node;
    let base = node_name(g, down_node);
    let factor = match k.factor_f32() {
        Some((kk, fv)) => Some(hadamard_factor(g, kk, fv)?),
        None => None,
    };
    let op = Op::Hadamard(Hadamard { size: k.s as i64 });
    let mut inputs = vec![Some(x)];
    if factor.is_some() {
        inputs.push(factor);
    }
    let h = g.add_node(
        op.clone(),
        inputs,
        vec![ty.clone()],
        format!("{base}_online_hadamard"),
    );
    let hv = ValueRef::new(h, 0);
    let inv = match factor {
        None => g.add_node(
            op,
            vec![Some(hv)],
            vec![ty],
            format!("{base}_online_hadamard_inverse"),
        ),
        Some(_) => {
            let kt = transpose(&k.dense(), f, f);
            let c = matrix_const(g, &kt, f, &format!("{base}_online_hadamard_t"))?;
            g.add_node(
                Op::MatMul,
                vec![Some(hv), Some(c)],
                vec![ty],
                format!("{base}_online_hadamard_inverse"),
            )
        }
    };
    g.set_input(down_node, 0, Some(ValueRef::new(inv, 0)));
    Ok(format!(
        "{} and its inverse as explicit ops{}",
        k.how,
        if factor.is_some() {
            " (the inverse as a MatMul by Kᵀ)"
        } else {
            " (the normalized transform is its own inverse)"
        }
    ))
}

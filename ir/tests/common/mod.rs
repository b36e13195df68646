//! Helpers shared by the shape-inference tests: types written in the text format's
//! spelling, one-node graphs, and the inferred types or error as strings.
//!
//! Each test file uses only some of them, so unused ones are allowed here.
#![allow(dead_code)]

use compc_ir::infer::infer_graph;
use compc_ir::{DType, Dim, Graph, NodeId, Op, Shape, TensorType, ValueRef, Weight};

/// Parses the text-format spelling without the `tensor<>`: `{batch}x?x64xf32`, `*xf32`.
pub fn ty(s: &str) -> TensorType {
    let parts: Vec<&str> = s.split('x').collect();
    let (dt, dims) = parts.split_last().expect("a dtype");
    let dtype: DType = dt.parse().expect("dtype");
    if dims == ["*"] {
        return TensorType::unranked(dtype);
    }
    let dims = dims
        .iter()
        .map(|d| match *d {
            "?" => Dim::Unknown,
            d if d.starts_with('{') => {
                Dim::Sym(d.trim_matches(|c| c == '{' || c == '}').to_string())
            }
            d => Dim::Known(d.parse().expect("dim")),
        })
        .collect();
    TensorType::new(dtype, Shape::Ranked(dims))
}

pub fn input(g: &mut Graph, name: &str, t: &str) -> NodeId {
    g.add_input(name, ty(t))
}

pub fn ints(g: &mut Graph, name: &str, v: &[i64]) -> NodeId {
    g.add_const(Weight::from_i64(name, vec![v.len() as u64], v).unwrap())
}

pub fn scalar_i64(g: &mut Graph, name: &str, v: i64) -> NodeId {
    g.add_const(Weight::from_i64(name, vec![], &[v]).unwrap())
}

/// Inputs given as `Option` so omitted optional inputs can be written as `None`.
pub fn node_opt(g: &mut Graph, op: Op, inputs: &[Option<NodeId>], n_out: usize) -> NodeId {
    let ins = inputs.iter().map(|i| i.map(ValueRef::from)).collect();
    g.add_node(op, ins, vec![TensorType::unranked(DType::F32); n_out], "")
}

pub fn node(g: &mut Graph, op: Op, inputs: &[NodeId], n_out: usize) -> NodeId {
    let ins: Vec<_> = inputs.iter().map(|&i| Some(i)).collect();
    node_opt(g, op, &ins, n_out)
}

pub fn out(g: &Graph, id: NodeId, slot: usize) -> String {
    g.node(id).outputs[slot].to_string()
}

pub fn outs(g: &Graph, id: NodeId) -> Vec<String> {
    g.node(id).outputs.iter().map(|t| t.to_string()).collect()
}

pub fn err_of(g: &mut Graph) -> String {
    infer_graph(g)
        .expect_err("inference should fail")
        .to_string()
}

/// Infers a graph of one `op` over inputs of the given types; its output types.
pub fn infer_op(op: Op, inputs: &[&str], n_out: usize) -> Result<Vec<String>, String> {
    let mut g = Graph::new("t");
    let ins: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| Some(ValueRef::from(g.add_input(format!("in{i}"), ty(t)))))
        .collect();
    let n = g.add_node(op, ins, vec![TensorType::unranked(DType::F32); n_out], "");
    infer_graph(&mut g).map_err(|e| e.to_string())?;
    Ok(g.node(n).outputs.iter().map(|t| t.to_string()).collect())
}

pub fn one(op: Op, inputs: &[&str]) -> Result<String, String> {
    infer_op(op, inputs, 1).map(|mut v| v.remove(0))
}

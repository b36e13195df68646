//! The verifier: structural and type checks run after every pass. Errors name the node
//! (`Node::describe`) or "graph" and say what is wrong.
//!
//! Checks run from the cheapest and most fundamental up: references and counts first (so
//! later checks can index without fear), then acyclicity, then element types and
//! agreement with shape inference.

use crate::dtype::DType;
use crate::graph::{Graph, Node, NodeId};
use crate::infer::{arity, Inferrer};
use crate::op::{BinaryOp, Op};
use crate::shape::{Dim, Shape, TensorType};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
#[error("{node}: {message}")]
pub struct VerifyError {
    /// The node, as `Node::describe` spells it (or "graph" for graph-level problems).
    pub node: String,
    pub message: String,
}

fn graph_err(message: String) -> VerifyError {
    VerifyError {
        node: "graph".into(),
        message,
    }
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    for id in g.node_ids() {
        let node = g.node(id);
        structure(g, id, node).map_err(|message| VerifyError {
            node: node.describe(id),
            message,
        })?;
    }
    graph_inputs(g)?;
    graph_outputs(g)?;
    let order = g.topo_order().map_err(|e| match e {
        crate::graph::GraphError::Cycle(node) => VerifyError {
            node,
            message: "is on a cycle".into(),
        },
        other => graph_err(other.to_string()),
    })?;
    let mut inf = Inferrer::default();
    for id in order {
        let node = g.node(id);
        let err = |message: String| VerifyError {
            node: node.describe(id),
            message,
        };
        dtypes(g, node).map_err(err)?;
        agrees_with_inference(g, id, node, &mut inf)?;
        for (k, body) in node.op.subgraphs().into_iter().enumerate() {
            verify(body.graph()).map_err(|e| VerifyError {
                node: node.describe(id),
                message: format!("body {k}: {}: {}", e.node, e.message),
            })?;
        }
    }
    Ok(())
}

/// References, input/output counts, petgraph edges mirroring the input list, constants.
fn structure(g: &Graph, id: NodeId, node: &Node) -> Result<(), String> {
    let a = arity(&node.op);
    let name = node.op.text_name();
    let n_in = node.inputs().len();
    if !a.accepts_inputs(n_in) {
        return Err(format!(
            "has {n_in} inputs, but `{name}` takes {}",
            a.inputs_text()
        ));
    }
    for i in 0..a.min_inputs {
        if node.input(i).is_none() {
            return Err(format!("input {i} is required but missing"));
        }
    }
    for (i, v) in node.inputs().iter().enumerate() {
        let Some(v) = v else { continue };
        if !g.contains(v.node) {
            return Err(format!(
                "input {i} refers to {}, which does not exist",
                v.node
            ));
        }
        let src = g.node(v.node);
        if v.slot as usize >= src.outputs.len() {
            return Err(format!(
                "input {i} reads output {} of {}, which has {} outputs",
                v.slot,
                src.describe(v.node),
                src.outputs.len()
            ));
        }
    }
    let mut edges = 0;
    for e in g.petgraph().edges_directed(id.0, Direction::Incoming) {
        edges += 1;
        let w = e.weight();
        let want = node.input(w.to_input as usize);
        if want.map(|v| (v.node.0, v.slot)) != Some((e.source(), w.from_slot)) {
            return Err(format!(
                "edge into input {} does not match the input list",
                w.to_input
            ));
        }
    }
    if edges != node.inputs().iter().flatten().count() {
        return Err("input list and graph edges disagree".into());
    }
    let n_out = node.outputs.len();
    if !a.accepts_outputs(n_out) {
        return Err(format!(
            "has {n_out} outputs, but `{name}` has {}",
            a.outputs_text()
        ));
    }
    match &node.op {
        Op::Const(w) => {
            let weight = g
                .weights
                .try_get(*w)
                .ok_or_else(|| format!("weight {w} does not exist"))?;
            let want = TensorType::known(weight.dtype, &weight.dims);
            if node.outputs[0] != want {
                return Err(format!(
                    "output is {} but weight `{}` is {want}",
                    node.outputs[0], weight.name
                ));
            }
        }
        Op::Input if !g.inputs().contains(&id) => {
            return Err("is an input node but not in the graph's input list".into());
        }
        _ => {}
    }
    Ok(())
}

fn graph_inputs(g: &Graph) -> Result<(), VerifyError> {
    let mut seen = HashSet::new();
    for &id in g.inputs() {
        if !g.contains(id) {
            return Err(graph_err(format!(
                "input list names {id}, which does not exist"
            )));
        }
        let node = g.node(id);
        if node.op != Op::Input {
            return Err(VerifyError {
                node: node.describe(id),
                message: "is in the graph's input list but is not an input node".into(),
            });
        }
        if !seen.insert(id) {
            return Err(VerifyError {
                node: node.describe(id),
                message: "appears twice in the graph's input list".into(),
            });
        }
    }
    Ok(())
}

fn graph_outputs(g: &Graph) -> Result<(), VerifyError> {
    let mut names = HashSet::new();
    for (i, o) in g.outputs.iter().enumerate() {
        if o.name.is_empty() {
            return Err(graph_err(format!("output {i} has an empty name")));
        }
        if !names.insert(o.name.as_str()) {
            return Err(graph_err(format!("output name `{}` is used twice", o.name)));
        }
        let v = o.value;
        if !g.contains(v.node) {
            return Err(graph_err(format!(
                "output `{}` refers to {}, which does not exist",
                o.name, v.node
            )));
        }
        let node = g.node(v.node);
        if v.slot as usize >= node.outputs.len() {
            return Err(graph_err(format!(
                "output `{}` reads output {} of {}, which has {} outputs",
                o.name,
                v.slot,
                node.describe(v.node),
                node.outputs.len()
            )));
        }
    }
    Ok(())
}

/// Element-type rules that are cheap to check (ONNX's type constraints, loosened where
/// exporters legitimately mix types).
fn dtypes(g: &Graph, node: &Node) -> Result<(), String> {
    let ty = |i: usize| node.input(i).and_then(|v| g.value_type(v)).map(|t| t.dtype);
    let same = |ins: &[usize]| -> Result<(), String> {
        let present: Vec<(usize, DType)> =
            ins.iter().filter_map(|&i| ty(i).map(|d| (i, d))).collect();
        if let Some(&(i0, d0)) = present.first() {
            if let Some(&(i, d)) = present.iter().find(|(_, d)| *d != d0) {
                return Err(format!(
                    "inputs {i0} and {i} have different element types: {d0} vs {d}"
                ));
            }
        }
        Ok(())
    };
    let int_index = |i: usize, what: &str| -> Result<(), String> {
        match ty(i) {
            Some(DType::I32 | DType::I64) | None => Ok(()),
            Some(d) => Err(format!("{what} (input {i}) must be i32 or i64, found {d}")),
        }
    };
    let all: Vec<usize> = (0..node.inputs().len()).collect();
    match &node.op {
        Op::Binary(BinaryOp::Pow | BinaryOp::PRelu) => Ok(()),
        Op::Binary(k @ (BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)) => {
            for i in 0..2 {
                if let Some(d) = ty(i).filter(|d| *d != DType::Bool) {
                    return Err(format!(
                        "`{}` needs bool inputs, input {i} is {d}",
                        k.name()
                    ));
                }
            }
            Ok(())
        }
        Op::Binary(_) | Op::Variadic(_) | Op::Concat(_) | Op::Einsum(_) | Op::Mod(_) => same(&all),
        Op::MatMul | Op::Gemm(_) => {
            same(&[0, 1])?;
            match ty(0) {
                Some(d) if !(d.is_float() || d.is_int()) => {
                    Err(format!("`{}` needs numbers, found {d}", node.op.name()))
                }
                _ => Ok(()),
            }
        }
        Op::Conv(_) | Op::ConvTranspose(_) => same(&[0, 1, 2]),
        Op::Where => {
            if let Some(d) = ty(0).filter(|d| *d != DType::Bool) {
                return Err(format!("condition (input 0) must be bool, found {d}"));
            }
            same(&[1, 2])
        }
        Op::Gather(_) | Op::GatherElements(_) | Op::GatherNd(_) => int_index(1, "indices"),
        Op::ScatterElements(_) | Op::ScatterNd(_) => {
            int_index(1, "indices")?;
            same(&[0, 2])
        }
        Op::Reshape(_) | Op::Expand | Op::Tile | Op::ConstantOfShape(_) => {
            let i = if matches!(node.op, Op::ConstantOfShape(_)) {
                0
            } else {
                1
            };
            int_index(i, "the shape operand")
        }
        Op::Slice => (1..node.inputs().len()).try_for_each(|i| int_index(i, "slice parameters")),
        Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Reduce(..) | Op::Split(_) => {
            int_index(1, "the axes or sizes operand")
        }
        Op::TopK(_) => int_index(1, "k"),
        Op::Pad(_) => int_index(1, "pads"),
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => match ty(1) {
            Some(d) if !d.is_float() => {
                Err(format!("scale (input 1) must be a float type, found {d}"))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Stored output types must not contradict inference where both are precise.
fn agrees_with_inference(
    g: &Graph,
    id: NodeId,
    node: &Node,
    inf: &mut Inferrer,
) -> Result<(), VerifyError> {
    let inferred = inf.infer(g, id).map_err(|e| VerifyError {
        node: e.node,
        message: format!("shape inference fails: {}", e.message),
    })?;
    let Some(inferred) = inferred else {
        return Ok(());
    };
    for (slot, (stored, want)) in node.outputs.iter().zip(&inferred).enumerate() {
        if !compatible(stored, want) {
            return Err(VerifyError {
                node: node.describe(id),
                message: format!("output {slot} is {stored} but inference gives {want}"),
            });
        }
    }
    Ok(())
}

fn compatible(stored: &TensorType, inferred: &TensorType) -> bool {
    if stored.dtype != inferred.dtype {
        return false;
    }
    match (&stored.shape, &inferred.shape) {
        (Shape::Ranked(a), Shape::Ranked(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Dim::Known(p), Dim::Known(q)) => p == q,
                    _ => true,
                })
        }
        _ => true,
    }
}

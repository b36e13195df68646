//! Shared by the backend tests: the frontend's model builders plus graph comparison.
#![allow(dead_code)]

#[path = "../../../../frontends/onnx/tests/common/mod.rs"]
mod build;
pub use build::*;

use compc_ir::{Graph, Op, ValueRef};
use std::collections::HashMap;

/// One line per node in topological order: op, attributes, which earlier lines (and
/// slots) it reads, output types; constants by name, type and bytes. Two graphs with the
/// same signature compute the same function with the same weights.
pub fn signature(g: &Graph) -> Vec<String> {
    let order = g.topo_order().expect("acyclic");
    let pos: HashMap<_, _> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let refer = |v: &Option<ValueRef>| match v {
        Some(v) => format!("{}.{}", pos[&v.node], v.slot),
        None => "-".into(),
    };
    let mut lines: Vec<String> = order
        .iter()
        .map(|&id| {
            let n = g.node(id);
            match &n.op {
                Op::Const(w) => {
                    let w = g.weights.get(*w);
                    format!(
                        "const {} {} {:?} {:016x}",
                        w.name,
                        w.dtype,
                        w.dims,
                        w.content_hash()
                    )
                }
                Op::Input => format!("input {} {}", n.name, n.outputs[0]),
                op => format!(
                    "{} {:?} ({}) -> {}",
                    op.text_name(),
                    op.attrs(),
                    n.inputs().iter().map(refer).collect::<Vec<_>>().join(", "),
                    n.outputs.len()
                ),
            }
        })
        .collect();
    for o in &g.outputs {
        lines.push(format!("output {} = {}", o.name, refer(&Some(o.value))));
    }
    lines
}

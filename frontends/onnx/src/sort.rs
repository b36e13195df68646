//! Node order. ONNX requires nodes to be topologically sorted, but files in the wild are
//! not always, so the order is recomputed; cycles and reads of undefined tensors are
//! refused with the node and tensor named.

use crate::error::ImportError;
use onnx_protobuf::NodeProto;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// How a node is named in messages: `` `MatMul` node "fc1" `` (or `#index` when unnamed).
pub fn describe(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("`{}` node #{index}", n.op_type)
    } else {
        format!("`{}` node \"{}\"", n.op_type, n.name)
    }
}

/// Indices of `nodes` in a topological order that keeps the file's order where it can.
/// `defined` holds the names graph inputs and initializers provide.
pub fn topo_order(nodes: &[NodeProto], defined: &HashSet<&str>) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for out in n.output.iter().filter(|o| !o.is_empty()) {
            if defined.contains(out.as_str()) {
                return Err(ImportError::Node(format!(
                    "{} writes `{out}`, which is already a graph input or initializer",
                    describe(n, i)
                )));
            }
            if let Some(&other) = producer.get(out.as_str()) {
                return Err(ImportError::Node(format!(
                    "{} writes `{out}`, which {} writes too",
                    describe(n, i),
                    describe(&nodes[other], other)
                )));
            }
            producer.insert(out, i);
        }
    }

    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut pending = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if defined.contains(inp.as_str()) {
                continue;
            }
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    users[p].push(i);
                    pending[i] += 1;
                }
                None => {
                    return Err(ImportError::Node(format!(
                        "{} reads `{inp}`, which no node, graph input or initializer defines",
                        describe(n, i)
                    )))
                }
            }
        }
    }

    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| pending[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|&i| pending[i] > 0).unwrap_or(0);
        return Err(ImportError::Node(format!(
            "the graph has a cycle through {}",
            describe(&nodes[stuck], stuck)
        )));
    }
    Ok(order)
}

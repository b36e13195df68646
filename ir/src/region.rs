//! Regions: a set of nodes cut out of a graph as a standalone `Graph` (the values it reads
//! from outside become its inputs, the values read outside become its outputs), and the
//! splice that puts a replacement region back. This is how other forms of the IR are
//! reached without going through ONNX: the e-graph optimizer turns a pure region into an
//! `egg::RecExpr` and back, and the MLIR backend lowers a region to a `func.func`; both
//! hand back a `Graph` with the same signature for `splice`.

use crate::graph::{Graph, GraphOutput, NodeId, ValueRef};
use crate::op::Op;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("the region is empty")]
    Empty,
    #[error("{0} is not in the graph")]
    Missing(String),
    #[error("the region contains graph input {0}; inputs stay outside regions")]
    ContainsInput(String),
    #[error("replacement has {got} {what}, the region has {want}")]
    Signature {
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("replacement {what} {index} is {got}, the region's is {want}")]
    Type {
        what: &'static str,
        index: usize,
        got: String,
        want: String,
    },
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
}

/// A cut-out region. `graph`'s inputs stand for `inputs` (outer values) in order; its
/// outputs replace `outputs` (outer values) in order.
#[derive(Clone, Debug)]
pub struct Region {
    pub graph: Graph,
    pub inputs: Vec<ValueRef>,
    pub outputs: Vec<ValueRef>,
    pub nodes: BTreeSet<NodeId>,
}

/// Cuts `nodes` out of `g` (which is not changed). Constants read by the region are copied
/// into it (weights are shared, not copied), so a region is self-contained.
pub fn extract(g: &Graph, nodes: &BTreeSet<NodeId>) -> Result<Region, RegionError> {
    if nodes.is_empty() {
        return Err(RegionError::Empty);
    }
    for &id in nodes {
        if !g.contains(id) {
            return Err(RegionError::Missing(id.to_string()));
        }
        if matches!(g.node(id).op, Op::Input) {
            return Err(RegionError::ContainsInput(g.node(id).describe(id)));
        }
    }
    let mut r = Graph::new(format!("{}_region", g.name));
    r.opsets = g.opsets.clone();
    let mut map: HashMap<ValueRef, ValueRef> = HashMap::new();
    let mut inputs = Vec::new();
    let mut weight_map = BTreeMap::new();
    for id in g.topo_order()?.into_iter().filter(|id| nodes.contains(id)) {
        let node = g.node(id);
        let mut ins = Vec::with_capacity(node.inputs().len());
        for v in node.inputs() {
            let Some(v) = *v else {
                ins.push(None);
                continue;
            };
            if let Some(m) = map.get(&v) {
                ins.push(Some(*m));
                continue;
            }
            // Read from outside the region: a constant is copied in, anything else
            // becomes a region input.
            let inner = match g.node(v.node).op {
                Op::Const(w) => {
                    let rw = *weight_map
                        .entry(w)
                        .or_insert_with(|| r.weights.add(g.weights.get(w).clone()));
                    ValueRef::new(r.add_const_ref(rw), 0)
                }
                _ => {
                    let ty = g
                        .value_type(v)
                        .cloned()
                        .ok_or_else(|| RegionError::Missing(format!("{v:?}")))?;
                    inputs.push(v);
                    ValueRef::new(r.add_input(format!("in{}", inputs.len() - 1), ty), 0)
                }
            };
            map.insert(v, inner);
            ins.push(Some(inner));
        }
        let op = match &node.op {
            Op::Const(w) => {
                let rw = *weight_map
                    .entry(*w)
                    .or_insert_with(|| r.weights.add(g.weights.get(*w).clone()));
                Op::Const(rw)
            }
            other => other.clone(),
        };
        let nid = r.add_node(op, ins, node.outputs.clone(), node.name.clone());
        for s in 0..node.outputs.len() as u32 {
            map.insert(ValueRef::new(id, s), ValueRef::new(nid, s));
        }
    }
    // Outputs: values of the region read by nodes outside it or by graph outputs.
    let mut outputs = Vec::new();
    for &id in nodes {
        for s in 0..g.node(id).outputs.len() as u32 {
            let v = ValueRef::new(id, s);
            let outside = g.value_users(v).iter().any(|(u, _)| !nodes.contains(u))
                || g.outputs.iter().any(|o| o.value == v);
            if outside {
                outputs.push(v);
            }
        }
    }
    outputs.sort();
    for (i, v) in outputs.iter().enumerate() {
        r.outputs.push(GraphOutput {
            name: format!("out{i}"),
            value: map[v],
        });
    }
    Ok(Region {
        graph: r,
        inputs,
        outputs,
        nodes: nodes.clone(),
    })
}

/// Replaces `region` in `g` by `replacement`, a graph with the region's signature: its
/// inputs are bound to the region's outer inputs, readers of the region's outputs read the
/// replacement's, and the region's nodes are removed.
pub fn splice(g: &mut Graph, region: &Region, replacement: &Graph) -> Result<(), RegionError> {
    let sig = |what, got, want| RegionError::Signature { what, got, want };
    if replacement.inputs().len() != region.inputs.len() {
        return Err(sig(
            "inputs",
            replacement.inputs().len(),
            region.inputs.len(),
        ));
    }
    if replacement.outputs.len() != region.outputs.len() {
        return Err(sig(
            "outputs",
            replacement.outputs.len(),
            region.outputs.len(),
        ));
    }
    for (i, (&rin, outer)) in replacement.inputs().iter().zip(&region.inputs).enumerate() {
        let got = &replacement.node(rin).outputs[0];
        let want = g
            .value_type(*outer)
            .ok_or_else(|| RegionError::Missing(format!("{outer:?}")))?;
        if got.dtype != want.dtype || got.shape.rank() != want.shape.rank() {
            return Err(RegionError::Type {
                what: "input",
                index: i,
                got: got.to_string(),
                want: want.to_string(),
            });
        }
    }
    let mut map: HashMap<ValueRef, ValueRef> = HashMap::new();
    for (&rin, outer) in replacement.inputs().iter().zip(&region.inputs) {
        map.insert(ValueRef::new(rin, 0), *outer);
    }
    let mut weight_map = BTreeMap::new();
    for id in replacement.topo_order()? {
        let node = replacement.node(id);
        if matches!(node.op, Op::Input) {
            continue;
        }
        let ins: Vec<_> = node.inputs().iter().map(|v| v.map(|v| map[&v])).collect();
        let op = match &node.op {
            Op::Const(w) => Op::Const(
                *weight_map
                    .entry(*w)
                    .or_insert_with(|| g.weights.add(replacement.weights.get(*w).clone())),
            ),
            other => other.clone(),
        };
        let nid = g.add_node(op, ins, node.outputs.clone(), node.name.clone());
        for s in 0..node.outputs.len() as u32 {
            map.insert(ValueRef::new(id, s), ValueRef::new(nid, s));
        }
    }
    for (o, outer) in replacement.outputs.iter().zip(&region.outputs) {
        let new = map[&o.value];
        g.replace_all_uses(*outer, new);
    }
    // Remove the old nodes, readers first.
    let order: Vec<NodeId> = g
        .topo_order()?
        .into_iter()
        .filter(|id| region.nodes.contains(id))
        .collect();
    for id in order.into_iter().rev() {
        g.remove_node(id)?;
    }
    Ok(())
}

/// Maximal connected sets of pure, non-source ops: the candidates for regions. Constants
/// are not members (extraction copies them in).
pub fn pure_regions(g: &Graph) -> Result<Vec<BTreeSet<NodeId>>, RegionError> {
    let member = |id: NodeId| {
        let op = &g.node(id).op;
        op.is_pure() && !op.is_source()
    };
    let mut comp: HashMap<NodeId, usize> = HashMap::new();
    let mut sets: Vec<BTreeSet<NodeId>> = Vec::new();
    for id in g.topo_order()? {
        if !member(id) {
            continue;
        }
        // Join the sets of every member producer; merge them if there are several.
        let mut joined: BTreeSet<usize> = g
            .node(id)
            .inputs()
            .iter()
            .flatten()
            .filter_map(|v| comp.get(&v.node).copied())
            .collect();
        let target = match joined.pop_first() {
            Some(t) => t,
            None => {
                sets.push(BTreeSet::new());
                sets.len() - 1
            }
        };
        for other in joined {
            let moved = std::mem::take(&mut sets[other]);
            for n in &moved {
                comp.insert(*n, target);
            }
            sets[target].extend(moved);
        }
        sets[target].insert(id);
        comp.insert(id, target);
    }
    Ok(sets.into_iter().filter(|s| !s.is_empty()).collect())
}

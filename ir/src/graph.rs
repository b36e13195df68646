//! The graph: nodes with typed outputs on a petgraph `StableDiGraph` (indices stay valid
//! when nodes are removed), behind compc's own `NodeId`/`ValueRef`. Each node keeps its
//! ordered input list; the petgraph edges mirror it so petgraph's algorithms apply. All
//! changes to inputs go through `Graph` methods, which keep the two in step.

use crate::op::Op;
use crate::shape::TensorType;
use crate::weights::{Weight, WeightId, WeightStore};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0.index())
    }
}

/// One output (`slot`) of one node: what an edge carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueRef {
    pub node: NodeId,
    pub slot: u32,
}

impl ValueRef {
    pub fn new(node: NodeId, slot: u32) -> Self {
        ValueRef { node, slot }
    }
}

impl From<NodeId> for ValueRef {
    fn from(node: NodeId) -> Self {
        ValueRef { node, slot: 0 }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    /// Ordered inputs; `None` is an omitted optional input (ONNX's empty name).
    inputs: Vec<Option<ValueRef>>,
    /// One type per output slot.
    pub outputs: Vec<TensorType>,
    /// Name from the source model (ONNX node name, or the input's name for `Op::Input`);
    /// used in messages and kept on export. May be empty.
    pub name: String,
}

impl Node {
    pub fn inputs(&self) -> &[Option<ValueRef>] {
        &self.inputs
    }

    /// Input `i` if present.
    pub fn input(&self, i: usize) -> Option<ValueRef> {
        self.inputs.get(i).copied().flatten()
    }

    /// Describes the node for error messages: `n12 (matmul "/layers.0/MatMul")`.
    pub fn describe(&self, id: NodeId) -> String {
        if self.name.is_empty() {
            format!("{id} ({})", self.op.text_name())
        } else {
            format!("{id} ({} \"{}\")", self.op.text_name(), self.name)
        }
    }
}

/// Edge weight: which output slot of the source feeds which input of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from_slot: u32,
    pub to_input: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphOutput {
    pub name: String,
    pub value: ValueRef,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("the graph has a cycle through {0}")]
    Cycle(String),
    #[error("{node} cannot be removed: its output is still used by {user}")]
    StillUsed { node: String, user: String },
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    graph: StableDiGraph<Node, Edge>,
    inputs: Vec<NodeId>,
    pub outputs: Vec<GraphOutput>,
    pub weights: WeightStore,
    /// Operator set imports: domain ("" for the default ONNX domain) → version.
    pub opsets: BTreeMap<String, i64>,
    /// Free-form model metadata kept from the source (producer name, doc strings).
    pub metadata: BTreeMap<String, String>,
    /// For each linear node a quantizer rewrote: the float weight it rounded, stored as
    /// the layer stored it before (for a MatMul `[in, out]`). Compensating the
    /// quantization error (fold-affine) needs the float twin of every quantized layer, and
    /// the weights are still in the store anyway, so keeping their ids costs nothing.
    /// Not part of the function: never printed or exported. A node id can be reused after
    /// its node is removed, so readers check that the node is still that layer.
    pub float_originals: BTreeMap<NodeId, WeightId>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    // ---- building ----

    /// Adds a graph input (appended to the input list).
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> NodeId {
        let id = self.add_node_raw(Node {
            op: Op::Input,
            inputs: vec![],
            outputs: vec![ty],
            name: name.into(),
        });
        self.inputs.push(id);
        id
    }

    /// Adds a weight to the store and a `Const` node that reads it.
    pub fn add_const(&mut self, w: Weight) -> NodeId {
        let ty = TensorType::known(w.dtype, &w.dims);
        let name = w.name.clone();
        let wid = self.weights.add(w);
        self.add_node_raw(Node {
            op: Op::Const(wid),
            inputs: vec![],
            outputs: vec![ty],
            name,
        })
    }

    /// Adds a `Const` node for a weight already in the store.
    pub fn add_const_ref(&mut self, wid: WeightId) -> NodeId {
        let w = self.weights.get(wid);
        let ty = TensorType::known(w.dtype, &w.dims);
        let name = w.name.clone();
        self.add_node_raw(Node {
            op: Op::Const(wid),
            inputs: vec![],
            outputs: vec![ty],
            name,
        })
    }

    /// Adds a node. Every input must refer to an existing node of this graph (a broken
    /// reference is a bug in the caller, so it panics rather than corrupting the graph);
    /// slot ranges and types are the verifier's job.
    pub fn add_node(
        &mut self,
        op: Op,
        inputs: Vec<Option<ValueRef>>,
        outputs: Vec<TensorType>,
        name: impl Into<String>,
    ) -> NodeId {
        for v in inputs.iter().flatten() {
            assert!(
                self.graph.contains_node(v.node.0),
                "input {v:?} is not in the graph"
            );
        }
        let id = self.add_node_raw(Node {
            op,
            inputs: inputs.clone(),
            outputs,
            name: name.into(),
        });
        for (i, v) in inputs.iter().enumerate() {
            if let Some(v) = v {
                self.graph.add_edge(
                    v.node.0,
                    id.0,
                    Edge {
                        from_slot: v.slot,
                        to_input: i as u32,
                    },
                );
            }
        }
        id
    }

    fn add_node_raw(&mut self, node: Node) -> NodeId {
        NodeId(self.graph.add_node(node))
    }

    // ---- reading ----

    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id.0]
    }

    /// Mutable access to op, output types and name. Inputs change only through
    /// `set_input`/`set_inputs`/`replace_all_uses`, which keep edges in step.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.graph.contains_node(id.0)
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.graph.node_indices().map(NodeId)
    }

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn value_type(&self, v: ValueRef) -> Option<&TensorType> {
        self.graph
            .node_weight(v.node.0)?
            .outputs
            .get(v.slot as usize)
    }

    /// The weight behind a value, if the value is produced by a `Const` node.
    pub fn const_weight(&self, v: ValueRef) -> Option<&Weight> {
        match self.graph.node_weight(v.node.0)?.op {
            Op::Const(w) => Some(self.weights.get(w)),
            _ => None,
        }
    }

    /// Nodes reading any output of `id`, with the input position, sorted, deduplicated.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, u32)> {
        let mut v: Vec<_> = self
            .graph
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| (NodeId(e.target()), e.weight().to_input))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Nodes reading the value `v`, with the input position.
    pub fn value_users(&self, v: ValueRef) -> Vec<(NodeId, u32)> {
        let mut out: Vec<_> = self
            .graph
            .edges_directed(v.node.0, Direction::Outgoing)
            .filter(|e| e.weight().from_slot == v.slot)
            .map(|e| (NodeId(e.target()), e.weight().to_input))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// True if some node or a graph output reads `v`.
    pub fn is_used(&self, v: ValueRef) -> bool {
        !self.value_users(v).is_empty() || self.outputs.iter().any(|o| o.value == v)
    }

    /// Nodes in a deterministic topological order: among nodes whose inputs are ready, the
    /// one added first comes first. Printing then parsing keeps the order, because a parsed
    /// graph's insertion order already is the printed order.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let mut indeg: BTreeMap<NodeIndex<u32>, usize> = BTreeMap::new();
        for n in self.graph.node_indices() {
            indeg.insert(n, self.graph.edges_directed(n, Direction::Incoming).count());
        }
        let mut ready: BinaryHeap<Reverse<NodeIndex<u32>>> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| Reverse(n))
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(NodeId(n));
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .find(|(n, &d)| d > 0 && !order.contains(&NodeId(**n)))
                .map(|(&n, _)| self.node(NodeId(n)).describe(NodeId(n)))
                .unwrap_or_default();
            return Err(GraphError::Cycle(stuck));
        }
        Ok(order)
    }

    // ---- changing ----

    /// Sets input `idx` of `id` (growing the list with `None` if needed).
    pub fn set_input(&mut self, id: NodeId, idx: usize, v: Option<ValueRef>) {
        if let Some(v) = v {
            assert!(
                self.graph.contains_node(v.node.0),
                "input {v:?} is not in the graph"
            );
        }
        let old: Vec<_> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .filter(|e| e.weight().to_input == idx as u32)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.graph.remove_edge(e);
        }
        let node = &mut self.graph[id.0];
        if node.inputs.len() <= idx {
            node.inputs.resize(idx + 1, None);
        }
        node.inputs[idx] = v;
        if let Some(v) = v {
            self.graph.add_edge(
                v.node.0,
                id.0,
                Edge {
                    from_slot: v.slot,
                    to_input: idx as u32,
                },
            );
        }
    }

    /// Replaces the whole input list of `id`.
    pub fn set_inputs(&mut self, id: NodeId, inputs: Vec<Option<ValueRef>>) {
        let old: Vec<_> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.graph.remove_edge(e);
        }
        self.graph[id.0].inputs = Vec::new();
        for (i, v) in inputs.into_iter().enumerate() {
            self.set_input(id, i, v);
        }
    }

    /// The input slots of `id` that read `v`.
    pub fn input_slots_reading(&self, id: NodeId, v: ValueRef) -> Vec<usize> {
        self.node(id)
            .inputs()
            .iter()
            .enumerate()
            .filter(|(_, i)| **i == Some(v))
            .map(|(i, _)| i)
            .collect()
    }

    /// Makes `id` read `new` in every input slot where it reads `old` (other readers of
    /// `old` are left alone; see [`Graph::replace_all_uses`]).
    pub fn replace_input(&mut self, id: NodeId, old: ValueRef, new: ValueRef) {
        for i in self.input_slots_reading(id, old) {
            self.set_input(id, i, Some(new));
        }
    }

    /// Makes every reader of `old` (nodes and graph outputs) read `new` instead.
    pub fn replace_all_uses(&mut self, old: ValueRef, new: ValueRef) {
        for (user, idx) in self.value_users(old) {
            self.set_input(user, idx as usize, Some(new));
        }
        for o in &mut self.outputs {
            if o.value == old {
                o.value = new;
            }
        }
    }

    /// Removes a node nothing reads any more. Graph inputs are removed from the input list.
    pub fn remove_node(&mut self, id: NodeId) -> Result<Node, GraphError> {
        if let Some((user, _)) = self.users(id).first() {
            return Err(GraphError::StillUsed {
                node: self.node(id).describe(id),
                user: self.node(*user).describe(*user),
            });
        }
        if let Some(o) = self.outputs.iter().find(|o| o.value.node == id) {
            return Err(GraphError::StillUsed {
                node: self.node(id).describe(id),
                user: format!("graph output `{}`", o.name),
            });
        }
        self.inputs.retain(|&i| i != id);
        Ok(self.graph.remove_node(id.0).expect("node exists"))
    }

    /// Read-only access to the petgraph graph, for its algorithms (dominators, SCCs, ...).
    pub fn petgraph(&self) -> &StableDiGraph<Node, Edge> {
        &self.graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{BinaryOp, Op};
    use crate::DType;

    #[test]
    fn replace_input_rewires_only_that_node_and_keeps_the_edges_in_step() {
        let mut g = Graph::new("t");
        let ty = TensorType::unranked(DType::F32);
        let (a, b) = (g.add_input("a", ty.clone()), g.add_input("b", ty.clone()));
        let (va, vb) = (ValueRef::new(a, 0), ValueRef::new(b, 0));
        let square = g.add_node(
            Op::Binary(BinaryOp::Mul),
            vec![Some(va), Some(va)],
            vec![ty.clone()],
            "sq",
        );
        let other = g.add_node(
            Op::Binary(BinaryOp::Add),
            vec![Some(va), Some(vb)],
            vec![ty],
            "add",
        );
        assert_eq!(g.input_slots_reading(square, va), [0, 1]);
        g.replace_input(square, va, vb);
        assert_eq!(g.node(square).inputs(), [Some(vb), Some(vb)]);
        assert_eq!(g.node(other).inputs(), [Some(va), Some(vb)]);
        // The edge list agrees: `a` is read only by `other` now.
        assert_eq!(g.value_users(va), [(other, 0)]);
        assert!(g.input_slots_reading(square, va).is_empty());
    }
}

//! Writes the graph's nodes as `NodeProto`s in topological order, naming values as it
//! goes: graph inputs and outputs keep their names, weights become initializers named by
//! the weight, other values `<node>_out<i>`.

use crate::attrs;
use crate::error::ExportError;
use crate::names::{base_name, Names};
use crate::types::value_info;
use compc_ir::op::COMPC_DOMAIN;
use compc_ir::{Attrs, Graph, NodeId, Op, ValueRef, Weight, WeightId};
use onnx_protobuf::{NodeProto, ValueInfoProto};
use std::collections::{BTreeSet, HashMap};

/// Where an initializer's bytes come from: a graph weight, or a tensor the exporter made
/// (axes inputs, lowered constants).
pub enum InitSrc {
    Graph(WeightId),
    Made(Weight),
}

pub struct Init {
    pub name: String,
    pub src: InitSrc,
}

impl Init {
    pub fn weight<'a>(&'a self, g: &'a Graph) -> &'a Weight {
        match &self.src {
            InitSrc::Graph(id) => g.weights.get(*id),
            InitSrc::Made(w) => w,
        }
    }
}

pub struct Emitter<'g> {
    pub g: &'g Graph,
    pub opset: i64,
    tensors: Names,
    node_names: Names,
    values: HashMap<ValueRef, String>,
    weights: HashMap<WeightId, String>,
    pub inits: Vec<Init>,
    pub nodes: Vec<NodeProto>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    /// Non-default domains the written nodes use.
    pub domains: BTreeSet<String>,
    /// Shared constants the lowering made, by a key of its choosing.
    pub made: HashMap<String, String>,
}

impl<'g> Emitter<'g> {
    pub fn new(g: &'g Graph, opset: i64) -> Self {
        Emitter {
            g,
            opset,
            tensors: Names::default(),
            node_names: Names::default(),
            values: HashMap::new(),
            weights: HashMap::new(),
            inits: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            domains: BTreeSet::new(),
            made: HashMap::new(),
        }
    }

    pub fn run(&mut self) -> Result<(), ExportError> {
        let g = self.g;
        for &id in g.inputs() {
            let n = g.node(id);
            if n.name.is_empty() || !self.tensors.reserve(&n.name) {
                return Err(ExportError::Graph(format!(
                    "graph input {} needs a unique, non-empty name",
                    n.describe(id)
                )));
            }
            let ty = n.outputs.first().ok_or_else(|| {
                ExportError::Graph(format!("graph input {} has no type", n.describe(id)))
            })?;
            self.values.insert(ValueRef::new(id, 0), n.name.clone());
            self.inputs.push(value_info(&n.name, ty));
        }
        // Graph outputs name the values they read, unless that value is a graph input, a
        // weight or another output's: then an Identity node gives it the second name.
        let mut identities = Vec::new();
        for o in &g.outputs {
            let is_op = g.contains(o.value.node) && !g.node(o.value.node).op.is_source();
            let same_input = self.values.get(&o.value) == Some(&o.name);
            if !same_input && (o.name.is_empty() || !self.tensors.reserve(&o.name)) {
                return Err(ExportError::Graph(format!(
                    "graph output `{}` needs a unique, non-empty name",
                    o.name
                )));
            }
            if is_op && !self.values.contains_key(&o.value) {
                self.values.insert(o.value, o.name.clone());
            } else if !same_input {
                identities.push((o.value, o.name.clone()));
            }
            let ty = g.value_type(o.value).ok_or_else(|| {
                ExportError::Graph(format!("graph output `{}` reads a missing value", o.name))
            })?;
            self.outputs.push(value_info(&o.name, ty));
        }

        let order = g
            .topo_order()
            .map_err(|e| ExportError::Graph(e.to_string()))?;
        for (index, id) in order.into_iter().enumerate() {
            if !g.node(id).op.is_source() {
                crate::forms::emit_node(self, id, index)?;
            }
        }
        for (v, name) in identities {
            let src = self.value_name(v)?;
            self.push_node("", "Identity", "", vec![src], vec![name], Attrs::new(), 0);
        }
        Ok(())
    }

    /// The ONNX name of a value, creating the initializer of a weight on first read.
    pub fn value_name(&mut self, v: ValueRef) -> Result<String, ExportError> {
        if let Some(n) = self.values.get(&v) {
            return Ok(n.clone());
        }
        let g = self.g;
        if !g.contains(v.node) {
            return Err(ExportError::Graph(format!(
                "a node reads missing node {}",
                v.node
            )));
        }
        let node = g.node(v.node);
        match node.op {
            Op::Const(wid) => {
                let name = match self.weights.get(&wid) {
                    Some(n) => n.clone(),
                    None => {
                        let w = g.weights.try_get(wid).ok_or_else(|| {
                            ExportError::Graph(format!(
                                "{} refers to missing weight {wid}",
                                node.describe(v.node)
                            ))
                        })?;
                        let base = if w.name.is_empty() {
                            wid.to_string()
                        } else {
                            w.name.clone()
                        };
                        let name = self.tensors.claim(&base);
                        self.weights.insert(wid, name.clone());
                        self.inits.push(Init {
                            name: name.clone(),
                            src: InitSrc::Graph(wid),
                        });
                        name
                    }
                };
                self.values.insert(v, name.clone());
                Ok(name)
            }
            _ => Err(ExportError::Graph(format!(
                "{} output {} is read before it is written",
                node.describe(v.node),
                v.slot
            ))),
        }
    }

    /// Names for every output slot of an op node.
    pub fn output_names(&mut self, id: NodeId, index: usize) -> Vec<String> {
        let n = self.g.node(id);
        let base = base_name(&n.name, n.op.name(), index);
        (0..n.outputs.len())
            .map(|slot| {
                let v = ValueRef::new(id, slot as u32);
                if let Some(name) = self.values.get(&v) {
                    return name.clone();
                }
                let name = self.tensors.claim(&format!("{base}_out{slot}"));
                self.values.insert(v, name.clone());
                name
            })
            .collect()
    }

    /// Input names of an op node: `None` is "", trailing ones dropped.
    pub fn input_names(&mut self, id: NodeId) -> Result<Vec<String>, ExportError> {
        let ins: Vec<_> = self.g.node(id).inputs().to_vec();
        let mut names = Vec::with_capacity(ins.len());
        for v in ins {
            names.push(match v {
                Some(v) => self.value_name(v)?,
                None => String::new(),
            });
        }
        while names.last().is_some_and(String::is_empty) {
            names.pop();
        }
        Ok(names)
    }

    /// A fresh tensor name for an intermediate the lowering makes.
    pub fn fresh(&mut self, base: &str) -> String {
        self.tensors.claim(base)
    }

    /// Adds an initializer the exporter made; returns its name.
    pub fn add_made(&mut self, base: &str, w: Weight) -> String {
        let name = self.tensors.claim(base);
        self.inits.push(Init {
            name: name.clone(),
            src: InitSrc::Made(w),
        });
        name
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push_node(
        &mut self,
        domain: &str,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Attrs,
        index: usize,
    ) {
        if !domain.is_empty() {
            debug_assert_ne!(domain, COMPC_DOMAIN, "compc's own ops are lowered first");
            self.domains.insert(domain.to_string());
        }
        let name = self.node_names.claim(&base_name(name, op_type, index));
        self.nodes.push(NodeProto {
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            name,
            input: inputs,
            output: outputs,
            attribute: attrs::to_protos(&attrs),
            ..Default::default()
        });
    }
}

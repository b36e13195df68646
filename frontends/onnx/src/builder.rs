//! Builds the IR graph from a `GraphProto`: graph inputs, initializers (one lazily created
//! `Const` node per initializer, shared by all readers), nodes in topological order, then
//! graph outputs. Values no `value_info` describes get a placeholder type that shape
//! inference replaces.

use crate::error::ImportError;
use crate::external::ExternalFiles;
use crate::sort;
use crate::tensor;
use crate::types::tensor_type;
use compc_ir::{DType, Graph, GraphOutput, Op, TensorType, ValueRef, Weight};
use onnx_protobuf::GraphProto;
use std::collections::{HashMap, HashSet};

pub struct Builder {
    pub g: Graph,
    pub ext: ExternalFiles,
    /// Tensor names already bound to IR values.
    values: HashMap<String, ValueRef>,
    /// Initializers and `Constant` outputs not read yet: their `Const` node is created on
    /// first use, so a constant read only as `axes` leaves no node behind.
    pending: HashMap<String, Weight>,
    /// Types from `value_info` and graph outputs, for node outputs.
    types: HashMap<String, TensorType>,
    /// Model-local functions (domain, name): nodes calling them are refused.
    pub functions: HashSet<(String, String)>,
    /// The model's default-domain opset: older forms are rewritten (`legacy.rs`).
    pub opset: i64,
    /// Counter for names of values the importer makes up.
    fresh: usize,
    /// Building a control-flow body: its inputs may be untyped (their types come from the
    /// node that runs it).
    pub subgraph: bool,
    /// Outer values a body reads, added as its last inputs.
    pub captures: Vec<String>,
    pub ir_version: i64,
}

/// The type of a value nothing describes until shape inference runs.
pub fn placeholder() -> TensorType {
    TensorType::unranked(DType::F32)
}

impl Builder {
    pub fn new(name: &str, ext: ExternalFiles, functions: HashSet<(String, String)>) -> Self {
        Builder {
            g: Graph::new(name),
            ext,
            values: HashMap::new(),
            pending: HashMap::new(),
            types: HashMap::new(),
            functions,
            opset: crate::NEWEST_OPSET,
            fresh: 0,
            subgraph: false,
            captures: Vec::new(),
            ir_version: 0,
        }
    }

    /// Fills the graph from `gp`. `ir_version` decides what an initializer that is also a
    /// graph input means: before IR 4 every initializer had to be listed as an input, so
    /// it is a constant; from IR 4 on it is an input whose initializer is only a default.
    pub fn build(&mut self, mut gp: GraphProto, ir_version: i64) -> Result<(), ImportError> {
        if !gp.sparse_initializer.is_empty() {
            return Err(ImportError::Model(format!(
                "sparse initializer `{}` is not supported",
                gp.sparse_initializer[0]
                    .values
                    .as_ref()
                    .map(|v| v.name.as_str())
                    .unwrap_or("")
            )));
        }
        let mut init_names = HashSet::new();
        for t in &gp.initializer {
            if !init_names.insert(t.name.clone()) {
                return Err(ImportError::tensor(
                    &t.name,
                    "two initializers have this name",
                ));
            }
        }
        let inputs_are_defaults = ir_version >= 4;
        self.ir_version = ir_version;

        let mut input_names = HashSet::new();
        for vi in &gp.input {
            if !input_names.insert(vi.name.clone()) {
                return Err(ImportError::Model(format!(
                    "graph input `{}` is listed twice",
                    vi.name
                )));
            }
            if init_names.contains(&vi.name) && !inputs_are_defaults {
                continue;
            }
            let ty = match tensor_type(vi) {
                Ok(Some(t)) => t,
                // A body's inputs get their types from the node that runs it.
                _ if self.subgraph => placeholder(),
                Ok(None) => {
                    return Err(ImportError::Model(format!(
                        "graph input `{}` has no type",
                        vi.name
                    )))
                }
                Err(e) => {
                    return Err(ImportError::Model(format!(
                        "graph input `{}`: {e}",
                        vi.name
                    )))
                }
            };
            let id = self.g.add_input(vi.name.clone(), ty);
            self.values.insert(vi.name.clone(), ValueRef::new(id, 0));
        }
        for name in std::mem::take(&mut self.captures) {
            if !input_names.insert(name.clone()) {
                return Err(ImportError::Model(format!(
                    "captured value `{name}` is also a body input"
                )));
            }
            let id = self.g.add_input(name.clone(), placeholder());
            self.values.insert(name, ValueRef::new(id, 0));
        }

        for mut t in std::mem::take(&mut gp.initializer) {
            if self.values.contains_key(&t.name) {
                continue;
            }
            let name = t.name.clone();
            let w = tensor::weight(&mut t, &name, &mut self.ext)?;
            self.pending.insert(name, w);
        }

        for vi in &gp.value_info {
            // A value_info compc cannot read only costs precision: inference fills it in.
            if let Ok(Some(ty)) = tensor_type(vi) {
                self.types.insert(vi.name.clone(), ty);
            }
        }
        for vi in &gp.output {
            let ty = tensor_type(vi)
                .map_err(|e| ImportError::Model(format!("graph output `{}`: {e}", vi.name)))?;
            if let Some(ty) = ty {
                self.types.insert(vi.name.clone(), ty);
            }
        }

        let order = {
            let defined: HashSet<&str> = self
                .values
                .keys()
                .chain(self.pending.keys())
                .map(String::as_str)
                .collect();
            sort::topo_order(&gp.node, &defined)?
        };
        let mut nodes: Vec<_> = std::mem::take(&mut gp.node).into_iter().map(Some).collect();
        for i in order {
            if let Some(mut n) = nodes[i].take() {
                self.add_node(&mut n, i)?;
            }
        }

        for vi in &gp.output {
            let value = self.value(&vi.name).ok_or_else(|| {
                ImportError::Model(format!(
                    "graph output `{}` is not produced by any node, input or initializer",
                    vi.name
                ))
            })?;
            self.g.outputs.push(GraphOutput {
                name: vi.name.clone(),
                value,
            });
        }
        Ok(())
    }

    /// The IR value bound to a tensor name, creating the `Const` node of a pending constant.
    pub fn value(&mut self, name: &str) -> Option<ValueRef> {
        if let Some(v) = self.values.get(name) {
            return Some(*v);
        }
        let w = self.pending.remove(name)?;
        let v = ValueRef::new(self.g.add_const(w), 0);
        self.values.insert(name.to_string(), v);
        Some(v)
    }

    /// The values of a constant integer tensor (initializer or `Constant` output), for
    /// `axes`/`split` inputs. `None` when the tensor is computed or is a graph input.
    pub fn const_ints(&self, name: &str) -> Option<Result<Vec<i64>, String>> {
        let w = match self.pending.get(name) {
            Some(w) => w,
            None => self.g.const_weight(*self.values.get(name)?)?,
        };
        if !matches!(w.dtype, DType::I64 | DType::I32) {
            return None;
        }
        Some(w.to_i64_vec().map_err(|e| e.to_string()))
    }

    /// The values of a small constant float tensor (initializer or `Constant` output).
    pub fn const_floats(&self, name: &str) -> Option<Vec<f32>> {
        let w = match self.pending.get(name) {
            Some(w) => w,
            None => self.g.const_weight(*self.values.get(name)?)?,
        };
        if w.numel() > 64 {
            return None;
        }
        w.to_f32_vec().ok()
    }

    /// A tensor name no value of the model has, starting with `base`.
    pub fn fresh_name(&mut self, base: &str) -> String {
        loop {
            self.fresh += 1;
            let name = format!("{base}#{}", self.fresh);
            let taken = self.values.contains_key(&name)
                || self.pending.contains_key(&name)
                || self.types.contains_key(&name);
            if !taken {
                return name;
            }
        }
    }

    pub fn add_pending(&mut self, name: String, w: Weight) {
        self.pending.insert(name, w);
    }

    pub fn bind(&mut self, name: String, v: ValueRef) {
        self.values.insert(name, v);
    }

    pub fn type_of(&self, name: &str) -> TensorType {
        self.types.get(name).cloned().unwrap_or_else(placeholder)
    }

    /// Adds node `name` computing `op` over `inputs`, with one output per name in
    /// `outputs` (trailing empty names, ONNX's omitted optional outputs, are dropped), and
    /// binds each non-empty output name to its value.
    pub fn add_node_binding(
        &mut self,
        op: Op,
        inputs: Vec<Option<ValueRef>>,
        mut outputs: Vec<String>,
        name: String,
    ) {
        while outputs.last().is_some_and(String::is_empty) {
            outputs.pop();
        }
        let types = outputs.iter().map(|o| self.type_of(o)).collect();
        let id = self.g.add_node(op, inputs, types, name);
        for (slot, output) in outputs.into_iter().enumerate() {
            if !output.is_empty() {
                self.bind(output, ValueRef::new(id, slot as u32));
            }
        }
    }
}

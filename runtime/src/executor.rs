//! The calibration executor: plans a graph once (topological order, last use of every
//! value) and runs it many times. Each run frees an intermediate right after its last
//! reader, skips nodes neither an output nor a tap needs, and hands tapped values to a
//! callback as soon as they exist, so streaming calibration never holds every
//! activation. Weights are converted to tensors on first use and kept across runs.

use crate::error::{Result, RuntimeError};
use crate::ops::eval_op;
use crate::tensor::Tensor;
use compc_ir::{Dim, Graph, NodeId, Op, Shape, ValueRef};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A value during a run: a caller's input (borrowed) or a computed tensor or weight.
enum Val<'a> {
    Borrowed(&'a Tensor),
    Shared(Arc<Tensor>),
}

impl Val<'_> {
    fn get(&self) -> &Tensor {
        match self {
            Val::Borrowed(t) => t,
            Val::Shared(t) => t,
        }
    }
}

pub struct Executor<'g> {
    g: &'g Graph,
    order: Vec<NodeId>,
    /// Position in `order` after which a value is no longer read (`usize::MAX`: a graph
    /// output, kept to the end).
    last_use: HashMap<ValueRef, usize>,
    consts: HashMap<NodeId, OnceLock<Arc<Tensor>>>,
    peak_live: AtomicUsize,
}

impl<'g> Executor<'g> {
    pub fn new(g: &'g Graph) -> Result<Self> {
        let order = g
            .topo_order()
            .map_err(|e| RuntimeError::Graph(e.to_string()))?;
        let mut last_use = HashMap::new();
        let mut consts = HashMap::new();
        for (pos, &id) in order.iter().enumerate() {
            let node = g.node(id);
            for slot in 0..node.outputs.len() {
                last_use.insert(ValueRef::new(id, slot as u32), pos);
            }
            for v in node.inputs().iter().flatten() {
                let e = last_use.entry(*v).or_insert(pos);
                *e = (*e).max(pos);
            }
            if let Op::Const(_) = node.op {
                consts.insert(id, OnceLock::new());
            }
        }
        for o in &g.outputs {
            last_use.insert(o.value, usize::MAX);
        }
        Ok(Executor {
            g,
            order,
            last_use,
            consts,
            peak_live: AtomicUsize::new(0),
        })
    }

    pub fn graph(&self) -> &'g Graph {
        self.g
    }

    /// Most computed or input values (weights not counted) alive at once in the last run.
    pub fn peak_live_values(&self) -> usize {
        self.peak_live.load(Ordering::Relaxed)
    }

    /// Runs the graph and returns its outputs in order, by name.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        self.run_with_taps(inputs, &[], &mut |_, _| {})
    }

    /// Checks given inputs against the graph's declared input types. A symbolic dim takes
    /// any size, but one symbol must get the same size in every input.
    fn bind_inputs<'a>(
        &self,
        inputs: &'a [(String, Tensor)],
    ) -> Result<HashMap<NodeId, &'a Tensor>> {
        let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
        for (n, t) in inputs {
            by_name.insert(n.as_str(), t);
        }
        let names: Vec<&str> = self
            .g
            .inputs()
            .iter()
            .map(|&i| self.g.node(i).name.as_str())
            .collect();
        if let Some((n, _)) = inputs.iter().find(|(n, _)| !names.contains(&n.as_str())) {
            return Err(RuntimeError::Input {
                name: n.clone(),
                msg: format!("the graph has no such input (it has: {})", names.join(", ")),
            });
        }
        let mut syms: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut bound = HashMap::new();
        for &id in self.g.inputs() {
            let node = self.g.node(id);
            let name = node.name.as_str();
            let err = |msg: String| RuntimeError::Input {
                name: name.to_string(),
                msg,
            };
            let Some(&t) = by_name.get(name) else {
                return Err(err("missing (no tensor of that name was given)".into()));
            };
            let Some(ty) = node.outputs.first() else {
                return Err(err("the input node declares no type".into()));
            };
            if t.dtype() != ty.dtype {
                return Err(err(format!(
                    "expected element type {}, got {}",
                    ty.dtype,
                    t.dtype()
                )));
            }
            if let Shape::Ranked(dims) = &ty.shape {
                if dims.len() != t.rank() {
                    return Err(err(format!(
                        "expected shape {ty}, got rank {} shape {:?}",
                        t.rank(),
                        t.shape()
                    )));
                }
                for (i, (d, &n)) in dims.iter().zip(t.shape()).enumerate() {
                    match d {
                        Dim::Known(k) if *k != n as u64 => {
                            return Err(err(format!(
                                "expected {ty}, got shape {:?} (dim {i} is {n}, not {k})",
                                t.shape()
                            )));
                        }
                        Dim::Sym(s) => match syms.get(s.as_str()) {
                            Some(&(m, other)) if m != n => {
                                return Err(err(format!(
                                    "dim {i} `{s}` is {n} here but {m} in input `{other}`"
                                )));
                            }
                            _ => {
                                syms.insert(s.as_str(), (n, name));
                            }
                        },
                        _ => {}
                    }
                }
            }
            bound.insert(id, t);
        }
        Ok(bound)
    }

    /// Nodes some graph output or tap depends on.
    fn needed(&self, taps: &[ValueRef]) -> HashSet<NodeId> {
        let mut seen = HashSet::new();
        let mut stack: Vec<NodeId> = self
            .g
            .outputs
            .iter()
            .map(|o| o.value.node)
            .chain(taps.iter().map(|t| t.node))
            .collect();
        while let Some(id) = stack.pop() {
            if !self.g.contains(id) || !seen.insert(id) {
                continue;
            }
            stack.extend(self.g.node(id).inputs().iter().flatten().map(|v| v.node));
        }
        seen
    }

    fn weight(&self, id: NodeId, desc: &str) -> Result<Arc<Tensor>> {
        let Op::Const(wid) = self.g.node(id).op else {
            return Err(RuntimeError::Graph(format!("{desc} is not a constant")));
        };
        let cell = self
            .consts
            .get(&id)
            .ok_or_else(|| RuntimeError::Graph(format!("{desc} was not planned")))?;
        if let Some(t) = cell.get() {
            return Ok(t.clone());
        }
        let w = self
            .g
            .weights
            .try_get(wid)
            .ok_or_else(|| RuntimeError::Node {
                node: desc.to_string(),
                msg: format!("weight {wid} is not in the store"),
            })?;
        let t = Tensor::from_weight(w).map_err(|e| RuntimeError::Node {
            node: desc.to_string(),
            msg: e.to_string(),
        })?;
        Ok(cell.get_or_init(|| Arc::new(t)).clone())
    }

    /// Runs the graph, calling `on_tap` for each value in `taps` as soon as it is computed.
    pub fn run_with_taps(
        &self,
        inputs: &[(String, Tensor)],
        taps: &[ValueRef],
        on_tap: &mut dyn FnMut(ValueRef, &Tensor),
    ) -> Result<Vec<(String, Tensor)>> {
        for t in taps {
            let ok =
                self.g.contains(t.node) && (t.slot as usize) < self.g.node(t.node).outputs.len();
            if !ok {
                return Err(RuntimeError::Graph(format!(
                    "tap {}:{} is not a value of the graph",
                    t.node, t.slot
                )));
            }
        }
        let bound = self.bind_inputs(inputs)?;
        let needed = self.needed(taps);
        let tapped: HashSet<ValueRef> = taps.iter().copied().collect();
        let mut values: HashMap<ValueRef, Val> = HashMap::new();
        let (mut live, mut peak) = (0usize, 0usize);
        for (pos, &id) in self.order.iter().enumerate() {
            let node = self.g.node(id);
            if needed.contains(&id) {
                let desc = node.describe(id);
                let outs: Vec<Val> = match &node.op {
                    Op::Input => match bound.get(&id) {
                        Some(t) => vec![Val::Borrowed(t)],
                        None => {
                            return Err(RuntimeError::Graph(format!("{desc} is not a graph input")))
                        }
                    },
                    Op::Const(_) => vec![Val::Shared(self.weight(id, &desc)?)],
                    op => {
                        let mut args: Vec<Option<&Tensor>> =
                            Vec::with_capacity(node.inputs().len());
                        for v in node.inputs() {
                            match v {
                                None => args.push(None),
                                Some(v) => match values.get(v) {
                                    Some(t) => args.push(Some(t.get())),
                                    None => {
                                        return Err(RuntimeError::Node {
                                            node: desc,
                                            msg: format!(
                                                "input {}:{} was not computed",
                                                v.node, v.slot
                                            ),
                                        })
                                    }
                                },
                            }
                        }
                        let res =
                            eval_op(op, &args, node.outputs.len()).map_err(|e| e.at_node(&desc))?;
                        if res.len() < node.outputs.len() {
                            return Err(RuntimeError::Node {
                                node: desc,
                                msg: format!(
                                    "produced {} outputs, the node declares {}",
                                    res.len(),
                                    node.outputs.len()
                                ),
                            });
                        }
                        res.into_iter()
                            .take(node.outputs.len())
                            .map(|t| Val::Shared(Arc::new(t)))
                            .collect()
                    }
                };
                let counted = !matches!(node.op, Op::Const(_));
                for (slot, val) in outs.into_iter().enumerate() {
                    let v = ValueRef::new(id, slot as u32);
                    if tapped.contains(&v) {
                        on_tap(v, val.get());
                    }
                    values.insert(v, val);
                    live += counted as usize;
                }
                peak = peak.max(live);
            }
            // Free every value whose last reader was this position (also unread ones).
            let mut free = |v: ValueRef, values: &mut HashMap<ValueRef, Val>| {
                if self.last_use.get(&v) == Some(&pos)
                    && values.remove(&v).is_some()
                    && !matches!(self.g.node(v.node).op, Op::Const(_))
                {
                    live -= 1;
                }
            };
            for v in node.inputs().iter().flatten() {
                free(*v, &mut values);
            }
            for slot in 0..node.outputs.len() {
                free(ValueRef::new(id, slot as u32), &mut values);
            }
        }
        self.peak_live.store(peak, Ordering::Relaxed);
        let outputs = &self.g.outputs;
        let mut out = Vec::with_capacity(outputs.len());
        for (i, o) in outputs.iter().enumerate() {
            let again = outputs[i + 1..].iter().any(|p| p.value == o.value);
            let t = match (again, values.remove(&o.value)) {
                (_, None) => {
                    return Err(RuntimeError::Graph(format!(
                        "output `{}` was not computed",
                        o.name
                    )))
                }
                (true, Some(v)) => {
                    let t = v.get().clone();
                    values.insert(o.value, v);
                    t
                }
                (false, Some(Val::Borrowed(t))) => t.clone(),
                (false, Some(Val::Shared(a))) => {
                    Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone())
                }
            };
            out.push((o.name.clone(), t));
        }
        Ok(out)
    }
}

/// Runs a graph once on named inputs; returns the graph outputs in order, by name.
pub fn run(g: &Graph, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    Executor::new(g)?.run(inputs)
}

//! The calibration executor: plans a graph once (topological order, last use of every
//! value) and runs it many times. Each run frees an intermediate right after its last
//! reader, skips nodes neither an output nor a tap needs, and hands tapped values to a
//! callback as soon as they exist, so streaming calibration never holds every
//! activation. Weights are converted to tensors on first use and kept across runs.

use crate::error::{Result, RuntimeError};
use crate::ops::eval_op;
use crate::tensor::Tensor;
use crate::value::Value;
use compc_ir::{DType, Dim, Graph, NodeId, Op, Shape, ValueRef};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A value during a run: a caller's input (borrowed) or a computed tensor or weight, or a
/// sequence or optional (never a tensor: tensors are always one of the first two).
enum Val<'a> {
    Borrowed(&'a Tensor),
    Shared(Arc<Tensor>),
    BorrowedOther(&'a Value),
    Other(Arc<Value>),
}

impl Val<'_> {
    fn arg(&self) -> Arg<'_> {
        match self {
            Val::Borrowed(t) => Arg::Tensor(t),
            Val::Shared(t) => Arg::Tensor(t),
            Val::BorrowedOther(v) => Arg::Other(v),
            Val::Other(v) => Arg::Other(v),
        }
    }

    fn from_value(v: Value) -> Val<'static> {
        match v {
            Value::Tensor(t) => Val::Shared(Arc::new(t)),
            other => Val::Other(Arc::new(other)),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Val::Borrowed(t) => Value::Tensor(t.clone()),
            Val::Shared(a) => Value::Tensor(Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone())),
            Val::BorrowedOther(v) => v.clone(),
            Val::Other(a) => Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()),
        }
    }

    fn to_value(&self) -> Value {
        match self.arg() {
            Arg::Tensor(t) => Value::Tensor(t.clone()),
            Arg::Other(v) => v.clone(),
        }
    }
}

/// A node's input as the kernels of sequence and control-flow ops see it.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Tensor(&'a Tensor),
    /// A sequence or optional.
    Other(&'a Value),
}

impl<'a> Arg<'a> {
    pub fn from_value(v: &'a Value) -> Arg<'a> {
        match v {
            Value::Tensor(t) => Arg::Tensor(t),
            other => Arg::Other(other),
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            Arg::Tensor(t) => Value::Tensor(t.clone()),
            Arg::Other(v) => v.clone(),
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

    /// Runs a graph whose inputs or outputs may be sequences or optionals.
    pub fn run_values(&self, inputs: &[(String, Value)]) -> Result<Vec<(String, Value)>> {
        let args: Vec<(&str, Arg)> = inputs
            .iter()
            .map(|(n, v)| (n.as_str(), Arg::from_value(v)))
            .collect();
        self.run_inner(&args, &[], &mut |_, _| {})
    }

    /// Checks given inputs against the graph's declared input types. A symbolic dim takes
    /// any size, but one symbol must get the same size in every input. A sequence or
    /// optional is checked for its element type only.
    fn bind_inputs<'a>(&self, inputs: &[(&str, Arg<'a>)]) -> Result<HashMap<NodeId, Arg<'a>>> {
        let mut by_name: HashMap<&str, Arg<'a>> = HashMap::new();
        for (n, t) in inputs {
            by_name.insert(n, *t);
        }
        let names: Vec<&str> = self
            .g
            .inputs()
            .iter()
            .map(|&i| self.g.node(i).name.as_str())
            .collect();
        if let Some((n, _)) = inputs.iter().find(|(n, _)| !names.contains(n)) {
            return Err(RuntimeError::Input {
                name: n.to_string(),
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
            let Some(&arg) = by_name.get(name) else {
                return Err(err("missing (no tensor of that name was given)".into()));
            };
            let Some(ty) = node.outputs.first() else {
                return Err(err("the input node declares no type".into()));
            };
            let t = match arg {
                Arg::Tensor(t) => t,
                Arg::Other(v) => {
                    if let Some(d) = v.dtype() {
                        if d != ty.dtype {
                            return Err(err(format!(
                                "expected element type {}, got {} of {d}",
                                ty.dtype,
                                v.kind()
                            )));
                        }
                    }
                    bound.insert(id, arg);
                    continue;
                }
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
            bound.insert(id, arg);
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
        let args: Vec<(&str, Arg)> = inputs
            .iter()
            .map(|(n, t)| (n.as_str(), Arg::Tensor(t)))
            .collect();
        self.run_inner(&args, taps, on_tap)?
            .into_iter()
            .map(|(name, v)| match v {
                Value::Tensor(t) => Ok((name, t)),
                other => Err(RuntimeError::Graph(format!(
                    "output `{name}` is {}, not a tensor (run it with run_values)",
                    other.kind()
                ))),
            })
            .collect()
    }

    fn run_inner(
        &self,
        inputs: &[(&str, Arg)],
        taps: &[ValueRef],
        on_tap: &mut dyn FnMut(ValueRef, &Tensor),
    ) -> Result<Vec<(String, Value)>> {
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
                        Some(Arg::Tensor(t)) => vec![Val::Borrowed(t)],
                        Some(Arg::Other(v)) => vec![Val::BorrowedOther(v)],
                        None => {
                            return Err(RuntimeError::Graph(format!("{desc} is not a graph input")))
                        }
                    },
                    Op::Const(_) => vec![Val::Shared(self.weight(id, &desc)?)],
                    op => {
                        let mut args: Vec<Option<Arg>> = Vec::with_capacity(node.inputs().len());
                        for v in node.inputs() {
                            match v {
                                None => args.push(None),
                                Some(v) => match values.get(v) {
                                    Some(t) => args.push(Some(t.arg())),
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
                        // Identity also passes sequences and optionals through, and a few ops
                        // (casts) take or make strings.
                        let passes_other = args.iter().any(|a| matches!(a, Some(Arg::Other(_))))
                            || matches!(op, Op::Cast(c) if c.to == DType::Str);
                        let res: Vec<Val> = if op.handles_non_tensors() || passes_other {
                            crate::control::eval(op, &args, node.outputs.len())
                                .map_err(|e| e.at_node(&desc))?
                                .into_iter()
                                .map(Val::from_value)
                                .collect()
                        } else {
                            let mut tensors: Vec<Option<&Tensor>> = Vec::with_capacity(args.len());
                            for (i, a) in args.iter().enumerate() {
                                tensors.push(match a {
                                    None => None,
                                    Some(Arg::Tensor(t)) => Some(*t),
                                    Some(Arg::Other(v)) => {
                                        return Err(RuntimeError::Node {
                                            node: desc,
                                            msg: format!(
                                                "input {i} is {}; this op takes tensors",
                                                v.kind()
                                            ),
                                        })
                                    }
                                });
                            }
                            eval_op(op, &tensors, node.outputs.len())
                                .map_err(|e| e.at_node(&desc))?
                                .into_iter()
                                .map(|t| Val::Shared(Arc::new(t)))
                                .collect()
                        };
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
                        res.into_iter().take(node.outputs.len()).collect()
                    }
                };
                let counted = !matches!(node.op, Op::Const(_));
                for (slot, val) in outs.into_iter().enumerate() {
                    let v = ValueRef::new(id, slot as u32);
                    if tapped.contains(&v) {
                        if let Arg::Tensor(t) = val.arg() {
                            on_tap(v, t);
                        }
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
            let v = match (again, values.remove(&o.value)) {
                (_, None) => {
                    return Err(RuntimeError::Graph(format!(
                        "output `{}` was not computed",
                        o.name
                    )))
                }
                (true, Some(v)) => {
                    let t = v.to_value();
                    values.insert(o.value, v);
                    t
                }
                (false, Some(v)) => v.into_value(),
            };
            out.push((o.name.clone(), v));
        }
        Ok(out)
    }
}

/// Runs a graph once on named inputs; returns the graph outputs in order, by name.
pub fn run(g: &Graph, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    Executor::new(g)?.run(inputs)
}

/// Like [`run`], for graphs whose inputs or outputs may be sequences or optionals.
pub fn run_values(g: &Graph, inputs: &[(String, Value)]) -> Result<Vec<(String, Value)>> {
    Executor::new(g)?.run_values(inputs)
}

//! E-class data: the value's type (shapes are what most rules check) and, for small
//! constants, the value itself. Constant folding is the analysis: an op whose children are
//! all known constants is evaluated with the reference runtime, and `modify` puts the
//! result into the class as a weight leaf, so extraction can pick it when it is cheaper.
//!
//! The weight table lives here too: every weight leaf is an index into it, equal contents
//! share one entry (that is constant CSE), and rules that compute new weights (scale
//! folding, Conv+BN, matrix chains) add theirs through it.

use super::language::ENode;
use crate::const_fold::never_fold;
use compc_ir::{DType, Dim, Graph, Op, Shape, TensorType, Weight};
use compc_runtime::{eval_op, Tensor};
use egg::{DidMerge, Id};
use std::collections::HashMap;
use std::sync::Arc;

pub type EG = egg::EGraph<ENode, TensorAnalysis>;

/// Constants up to this many elements are kept as values in the class data (and may be
/// folded); larger weights are read from the table when a rule needs them.
pub const KONST_LIMIT: usize = 1 << 14;

#[derive(Clone, Debug, Default)]
pub struct Data {
    pub ty: Option<TensorType>,
    pub konst: Option<Arc<Tensor>>,
}

#[derive(Default)]
pub struct TensorAnalysis {
    pub weights: Vec<Weight>,
    by_content: HashMap<(DType, Vec<u64>, u64), Vec<u32>>,
    /// The type of the next new e-class: set by whoever adds a node whose type it knows
    /// (conversion, a rule's right-hand side), so `make` need not infer it.
    pending: Option<TensorType>,
    /// Results of rules that computed a weight, by a key naming the rule and its
    /// operands, so a match seen again in a later iteration costs nothing.
    pub memo: HashMap<String, Id>,
    /// Weights created by folding, for their names.
    folded: usize,
    /// The graph's default-domain opset: rules that write an op form that needs a newer
    /// one check it.
    pub opset: i64,
}

/// How much a type says: known dims count most, then named ones.
fn precision(t: &TensorType) -> usize {
    match &t.shape {
        Shape::Unranked => 0,
        Shape::Ranked(d) => {
            1 + d
                .iter()
                .map(|d| match d {
                    Dim::Known(_) => 3,
                    Dim::Sym(_) => 2,
                    Dim::Unknown => 1,
                })
                .sum::<usize>()
        }
    }
}

fn tensor_type(t: &Tensor) -> TensorType {
    let dims: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    TensorType::known(t.dtype(), &dims)
}

impl TensorAnalysis {
    pub fn new(opset: i64) -> Self {
        TensorAnalysis {
            opset,
            ..Default::default()
        }
    }

    /// Adds a weight, or finds an equal one already in the table.
    pub fn add_weight(&mut self, w: Weight) -> u32 {
        let key = (w.dtype, w.dims.clone(), w.content_hash());
        if let Some(cands) = self.by_content.get(&key) {
            for &c in cands {
                let old = &self.weights[c as usize];
                let same = match (old.bytes(), w.bytes()) {
                    (Ok(a), Ok(b)) => a == b,
                    // Weights known by hash only are equal only if they are the same one.
                    _ => old.name == w.name,
                };
                if same {
                    return c;
                }
            }
        }
        let id = self.weights.len() as u32;
        self.weights.push(w);
        self.by_content.entry(key).or_default().push(id);
        id
    }

    pub fn add_tensor(&mut self, name: &str, t: &Tensor) -> Option<u32> {
        let w = t.to_weight(name).ok()?;
        Some(self.add_weight(w))
    }
}

/// Adds `node` with its type known; an existing class is refined with it.
pub fn add_typed(eg: &mut EG, node: ENode, ty: Option<TensorType>) -> Id {
    eg.analysis.pending = ty.clone();
    let id = eg.add(node);
    eg.analysis.pending = None;
    if let Some(t) = ty {
        let data = &mut eg[id].data;
        if data
            .ty
            .as_ref()
            .is_none_or(|old| precision(&t) > precision(old))
        {
            data.ty = Some(t);
        }
    }
    id
}

/// Adds a weight leaf for `t` (named `name`), or `None` if it cannot be stored.
pub fn add_const(eg: &mut EG, name: &str, t: &Tensor) -> Option<Id> {
    let w = eg.analysis.add_tensor(name, t)?;
    Some(eg.add(ENode::Weight(w)))
}

pub fn ty(eg: &EG, id: Id) -> Option<&TensorType> {
    eg[id].data.ty.as_ref()
}

/// The class's weight leaf, if it has one.
pub fn weight_of(eg: &EG, id: Id) -> Option<u32> {
    eg[id].nodes.iter().find_map(|n| match n {
        ENode::Weight(w) => Some(*w),
        _ => None,
    })
}

/// The class's constant value, small or not (large weights are decoded on demand).
pub fn const_of(eg: &EG, id: Id) -> Option<Arc<Tensor>> {
    if let Some(k) = &eg[id].data.konst {
        return Some(k.clone());
    }
    let w = weight_of(eg, id)?;
    Tensor::from_weight(&eg.analysis.weights[w as usize])
        .ok()
        .map(Arc::new)
}

/// True if the class is a constant (a weight leaf or a folded value).
pub fn is_const(eg: &EG, id: Id) -> bool {
    eg[id].data.konst.is_some() || weight_of(eg, id).is_some()
}

/// Evaluates `op` on constant children, if it may be folded and the result is small.
fn fold(op: &Op, kids: &[Option<Arc<Tensor>>], absent: &[bool]) -> Option<Arc<Tensor>> {
    if never_fold(op) {
        return None;
    }
    let mut ins: Vec<Option<&Tensor>> = Vec::with_capacity(kids.len());
    for (k, &a) in kids.iter().zip(absent) {
        match (k, a) {
            (_, true) => ins.push(None),
            (Some(t), false) => ins.push(Some(t)),
            (None, false) => return None,
        }
    }
    let out = eval_op(op, &ins, 1).ok()?.into_iter().next()?;
    (out.numel() <= KONST_LIMIT && out.dtype() != DType::Str).then(|| Arc::new(out))
}

/// `Shape`/`Size` of a fully known shape need no evaluation.
fn fold_from_type(op: &Op, input: Option<&TensorType>) -> Option<Arc<Tensor>> {
    let dims: Vec<i64> = input?.shape.as_known()?.iter().map(|&d| d as i64).collect();
    match op {
        Op::Shape(s) => {
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (start, end) = (clamp(s.start), clamp(s.end.unwrap_or(r)));
            let v = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
            Some(Arc::new(Tensor::from_i64(vec![v.len()], v)))
        }
        Op::Size => Some(Arc::new(Tensor::scalar_i64(dims.iter().product()))),
        _ => None,
    }
}

/// `Gather(Shape(x), i)` where the gathered dims of x are known: the dims, though the
/// rest of x's shape is symbolic (exporters compute head sizes this way).
fn fold_shape_gather(eg: &EG, op: &Op, children: &[Id]) -> Option<Arc<Tensor>> {
    let Op::Gather(g) = op else { return None };
    if g.axis != 0 || children.len() != 2 {
        return None;
    }
    let idx = eg[eg.find(children[1])].data.konst.clone()?;
    if !matches!(idx.dtype(), DType::I64 | DType::I32) || idx.rank() > 1 {
        return None;
    }
    let dims = eg[eg.find(children[0])]
        .nodes
        .iter()
        .find_map(|n| match n {
            ENode::Op(k, c) => match (k.op(), c.first()) {
                (Op::Shape(s), Some(&x)) => {
                    let d = eg[eg.find(x)].data.ty.as_ref()?.shape.dims()?.to_vec();
                    let r = d.len() as i64;
                    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                    let (start, end) = (clamp(s.start), clamp(s.end.unwrap_or(r)));
                    Some(d.get(start..end.max(start))?.to_vec())
                }
                _ => None,
            },
            _ => None,
        })?;
    let n = dims.len() as i64;
    let mut out = Vec::new();
    for i in idx.to_i64_vec() {
        let i = if i < 0 { i + n } else { i };
        let d = dims.get(usize::try_from(i).ok()?)?.known()?;
        out.push(i64::try_from(d).ok()?);
    }
    let shape = idx.shape().to_vec();
    Some(Arc::new(Tensor::from_i64(shape, out)))
}

/// What inference needs of one child: its type, its value if constant, whether absent.
pub type Kid = (Option<TensorType>, Option<Arc<Tensor>>, bool);

/// Output type of `op` from its children's types and constant values, by the IR's shape
/// inference on a one-node graph.
pub fn infer(op: &Op, kids: &[Kid]) -> Option<TensorType> {
    let mut g = Graph::new("infer");
    let mut ins = Vec::with_capacity(kids.len());
    for (i, (t, k, absent)) in kids.iter().enumerate() {
        if *absent {
            ins.push(None);
        } else if let Some(k) = k {
            let w = k.to_weight(&format!("c{i}")).ok()?;
            ins.push(Some(g.add_const(w).into()));
        } else {
            ins.push(Some(g.add_input(format!("x{i}"), t.clone()?).into()));
        }
    }
    let id = g.add_node(op.clone(), ins, vec![TensorType::unranked(DType::F32)], "");
    compc_ir::infer::infer_node(&g, id)
        .ok()
        .flatten()?
        .into_iter()
        .next()
}

impl egg::Analysis<ENode> for TensorAnalysis {
    type Data = Data;

    fn make(eg: &mut EG, enode: &ENode, _id: Id) -> Data {
        match enode {
            ENode::Input(_) => Data {
                ty: eg.analysis.pending.take(),
                konst: None,
            },
            ENode::Absent => Data::default(),
            ENode::Weight(w) => {
                let w = &eg.analysis.weights[*w as usize];
                let ty = TensorType::known(w.dtype, &w.dims);
                let konst = (w.numel() <= KONST_LIMIT as u64 && !w.is_missing())
                    .then(|| Tensor::from_weight(w).ok().map(Arc::new))
                    .flatten();
                Data {
                    ty: Some(ty),
                    konst,
                }
            }
            ENode::Op(k, children) => {
                let op = k.op();
                let kids: Vec<Kid> = children
                    .iter()
                    .map(|&c| {
                        let c = eg.find(c);
                        let absent = eg[c].nodes.iter().any(|n| matches!(n, ENode::Absent));
                        (eg[c].data.ty.clone(), eg[c].data.konst.clone(), absent)
                    })
                    .collect();
                let pending = eg.analysis.pending.take();
                let konst = {
                    let vals: Vec<_> = kids.iter().map(|k| k.1.clone()).collect();
                    let absent: Vec<_> = kids.iter().map(|k| k.2).collect();
                    fold(op, &vals, &absent)
                        .or_else(|| fold_from_type(op, kids.first().and_then(|k| k.0.as_ref())))
                        .or_else(|| fold_shape_gather(eg, op, children))
                };
                let ty = match (&konst, pending) {
                    (Some(k), _) => Some(tensor_type(k)),
                    (None, Some(t)) => Some(t),
                    (None, None) => infer(op, &kids),
                };
                Data { ty, konst }
            }
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        let mut a_changed = false;
        let mut b_changed = false;
        match (&a.ty, b.ty) {
            (None, Some(t)) => {
                a.ty = Some(t);
                a_changed = true;
            }
            (Some(old), Some(t)) => {
                let (p, q) = (precision(old), precision(&t));
                if q > p {
                    a.ty = Some(t);
                    a_changed = true;
                } else if p > q {
                    b_changed = true;
                }
            }
            (Some(_), None) => b_changed = true,
            (None, None) => {}
        }
        match (&a.konst, b.konst) {
            (None, Some(k)) => {
                a.konst = Some(k);
                a_changed = true;
            }
            (Some(_), None) => b_changed = true,
            _ => {}
        }
        DidMerge(a_changed, b_changed)
    }

    fn modify(eg: &mut EG, id: Id) {
        let Some(k) = eg[id].data.konst.clone() else {
            return;
        };
        if weight_of(eg, id).is_some() {
            return;
        }
        eg.analysis.folded += 1;
        let name = format!("egraph_folded_{}", eg.analysis.folded);
        if let Some(leaf) = add_const(eg, &name, &k) {
            eg.union(id, leaf);
        }
    }
}

//! Extraction: the cost of an e-node is `ir::cost` (FLOPs + bytes moved, symbolic dims at
//! a configured size) plus a small per-node overhead, and a weight leaf costs its bytes.
//! The extracted graph is a DAG, so costs are summed over the *set* of classes an
//! alternative needs — a weight or a shared subexpression read twice is paid once. egg's
//! own extractor sums over the tree, which counts a residual stream once per layer that
//! reads it and drowns small differences in huge numbers.
//!
//! The search is the greedy DAG heuristic: each class keeps its best node and the bitset of
//! classes that node needs; passes repeat until no choice changes. Beyond
//! [`DAG_CLASS_LIMIT`] classes the sets would be too large, and tree costs are used.

use super::analysis::EG;
use super::language::ENode;
use compc_ir::cost::{node_cost, Concrete};
use compc_ir::{DType, Dim, Graph, Op, TensorType};
use egg::Id;
use std::collections::{BTreeSet, HashMap};

/// What one op node costs beyond its FLOPs and bytes (dispatch, a kernel launch): makes
/// "fewer nodes" win between otherwise equal alternatives.
pub const NODE_OVERHEAD: f64 = 64.0;

/// Above this many classes extraction sums tree costs instead of class sets (the sets
/// take classes²/8 bytes: 18 MB at this limit).
pub const DAG_CLASS_LIMIT: usize = 12_000;

const MAX_PASSES: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct CostModel {
    /// The size a symbolic or unknown dim is costed at.
    pub sym_dim: u64,
}

impl CostModel {
    fn concrete(&self, t: &TensorType) -> Option<(DType, Vec<u64>)> {
        let dims = t.shape.dims()?;
        Some((
            t.dtype,
            dims.iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    _ => self.sym_dim,
                })
                .collect(),
        ))
    }

    /// FLOPs and bytes of `op` with these input and output types (unranked values count
    /// as scalars).
    pub fn op_cost(&self, op: &Op, ins: &[Option<&TensorType>], out: &[&TensorType]) -> (f64, f64) {
        let scalar = |t: &TensorType| (t.dtype, Vec::new());
        let ins: Vec<Option<(DType, Vec<u64>)>> = ins
            .iter()
            .map(|t| t.map(|t| self.concrete(t).unwrap_or_else(|| scalar(t))))
            .collect();
        let outs: Vec<(DType, Vec<u64>)> = out
            .iter()
            .map(|t| self.concrete(t).unwrap_or_else(|| scalar(t)))
            .collect();
        let ins_c: Vec<Option<Concrete>> = ins
            .iter()
            .map(|t| t.as_ref().map(|(d, s)| (*d, s.as_slice())))
            .collect();
        let outs_c: Vec<Concrete> = outs.iter().map(|(d, s)| (*d, s.as_slice())).collect();
        let c = node_cost(op, &ins_c, &outs_c);
        (c.flops as f64, c.bytes as f64)
    }

    /// Own cost of one e-node of class `class`.
    pub fn enode(&self, eg: &EG, class: Id, n: &ENode) -> f64 {
        match n {
            ENode::Input(_) | ENode::Absent => 0.0,
            ENode::Weight(w) => eg.analysis.weights[*w as usize].byte_len() as f64,
            ENode::Op(k, children) => {
                let Some(out) = eg[class].data.ty.as_ref() else {
                    // A node whose type is unknown cannot be written back: never pick it.
                    return f64::INFINITY;
                };
                let ins: Vec<Option<&TensorType>> = children
                    .iter()
                    .map(|&c| {
                        let c = eg.find(c);
                        if eg[c].nodes.iter().any(|n| matches!(n, ENode::Absent)) {
                            None
                        } else {
                            eg[c].data.ty.as_ref()
                        }
                    })
                    .collect();
                let (f, b) = self.op_cost(k.op(), &ins, &[out]);
                f + b + NODE_OVERHEAD
            }
        }
    }

    /// The same model over a graph (op nodes plus each weight once), to compare a region
    /// before and after.
    pub fn graph(&self, g: &Graph) -> (f64, f64) {
        let mut flops = 0.0;
        let mut total = 0.0;
        let mut seen = BTreeSet::new();
        for id in g.node_ids() {
            let node = g.node(id);
            match &node.op {
                Op::Input => {}
                Op::Const(w) => {
                    if seen.insert(*w) {
                        total += g.weights.get(*w).byte_len() as f64;
                    }
                }
                op => {
                    let ins: Vec<Option<&TensorType>> = node
                        .inputs()
                        .iter()
                        .map(|v| v.and_then(|v| g.value_type(v)))
                        .collect();
                    let outs: Vec<&TensorType> = node.outputs.iter().collect();
                    let (f, b) = self.op_cost(op, &ins, &outs);
                    flops += f;
                    total += f + b + NODE_OVERHEAD;
                }
            }
        }
        (flops, total)
    }
}

/// The chosen node of every class reachable from `roots`, or `None` if some root has no
/// finite, acyclic choice.
pub fn extract(eg: &EG, roots: &[Id], model: &CostModel) -> Option<HashMap<Id, ENode>> {
    let classes: Vec<Id> = {
        let mut v: Vec<Id> = eg.classes().map(|c| c.id).collect();
        v.sort();
        v
    };
    let index: HashMap<Id, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    // Per class: its nodes with their own cost and child class indices.
    let nodes: Vec<Vec<(f64, Vec<usize>)>> = classes
        .iter()
        .map(|&c| {
            eg[c]
                .nodes
                .iter()
                .map(|n| {
                    let kids = n.children().iter().map(|&k| index[&eg.find(k)]).collect();
                    (model.enode(eg, c, n), kids)
                })
                .collect()
        })
        .collect();
    let best = if classes.len() <= DAG_CLASS_LIMIT {
        dag_choices(&nodes)
    } else {
        tree_choices(&nodes)
    };
    let mut out = HashMap::new();
    let mut stack: Vec<usize> = roots.iter().map(|r| index[&eg.find(*r)]).collect();
    while let Some(ci) = stack.pop() {
        let id = classes[ci];
        if out.contains_key(&id) {
            continue;
        }
        let ni = best[ci]?;
        let node = eg[id].nodes[ni].clone();
        stack.extend(nodes[ci][ni].1.iter().copied());
        out.insert(id, node);
    }
    Some(out)
}

use egg::Language;

struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, o: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            let mut b = bits;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let t = b.trailing_zeros() as usize;
                b &= b - 1;
                Some(w * 64 + t)
            })
        })
    }
}

/// Greedy DAG extraction over class sets.
fn dag_choices(nodes: &[Vec<(f64, Vec<usize>)>]) -> Vec<Option<usize>> {
    let n = nodes.len();
    let mut best: Vec<Option<usize>> = vec![None; n];
    let mut sets: Vec<Option<BitSet>> = (0..n).map(|_| None).collect();
    let own = |best: &[Option<usize>], c: usize| -> f64 { best[c].map_or(0.0, |b| nodes[c][b].0) };
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for c in 0..n {
            let mut pick: Option<(usize, f64, BitSet)> = None;
            for (ni, (cost, kids)) in nodes[c].iter().enumerate() {
                if !cost.is_finite() || kids.iter().any(|&k| sets[k].is_none()) {
                    continue;
                }
                let mut set = BitSet::new(n);
                for &k in kids {
                    if let Some(s) = &sets[k] {
                        set.union_with(s);
                    }
                }
                if set.contains(c) {
                    // The node needs its own class: a cycle.
                    continue;
                }
                // A class of one node has no choice to make: skip summing its set.
                let total = if nodes[c].len() == 1 {
                    0.0
                } else {
                    cost + set.ones().map(|d| own(&best, d)).sum::<f64>()
                };
                if pick.as_ref().is_none_or(|(_, t, _)| total < *t) {
                    set.insert(c);
                    pick = Some((ni, total, set));
                }
            }
            if let Some((ni, _, set)) = pick {
                let grew = sets[c].as_ref().is_none_or(|s| s.0 != set.0);
                if best[c] != Some(ni) || grew {
                    changed = true;
                }
                best[c] = Some(ni);
                sets[c] = Some(set);
            }
        }
        if !changed {
            break;
        }
    }
    best
}

/// Tree-cost extraction (each child's cost added per use), for very large e-graphs.
fn tree_choices(nodes: &[Vec<(f64, Vec<usize>)>]) -> Vec<Option<usize>> {
    let n = nodes.len();
    let mut cost: Vec<f64> = vec![f64::INFINITY; n];
    let mut best: Vec<Option<usize>> = vec![None; n];
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for c in 0..n {
            for (ni, (own, kids)) in nodes[c].iter().enumerate() {
                let total = own + kids.iter().map(|&k| cost[k]).sum::<f64>();
                if total < cost[c] {
                    cost[c] = total;
                    best[c] = Some(ni);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best
}

//! Rewrite rules, one file per family. Every rule runs one way and its right-hand side is
//! never worse than its left under the cost model (no blanket commutativity or
//! associativity: they blow the e-graph up without making anything cheaper). Where the
//! IR leaves an operand order open (`Mul(x, c)` and `Mul(c, x)`), a rule matches both.
//!
//! A rule is a pair of functions: `find` looks at one e-class, read-only, and returns its
//! matches; `build` adds the right-hand side of one match and returns its class, which
//! the driver unions with the matched class. egg's `Runner` drives them through
//! [`rewrite`], which wraps the pair as a searcher and an applier: the search reports the
//! classes with matches, the applier finds them again (the e-graph has only grown since)
//! and builds.

pub mod bias;
pub mod conv_bn;
pub mod fused;
pub mod identity;
pub mod linear;
pub mod quant;
pub mod scalar;
pub mod scale;
pub mod shape;

use super::analysis::{const_of, ty, TensorAnalysis, EG};
use super::language::ENode;
use compc_ir::{DType, Dim, Op, Shape, TensorType};
use compc_runtime::Tensor;
use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use std::sync::Arc;

pub type Rw = Rewrite<ENode, TensorAnalysis>;

/// One rule: `find` (read-only) and `build` (adds the right-hand side).
pub struct FnRule<M> {
    pub find: fn(&EG, Id) -> Vec<M>,
    pub build: fn(&mut EG, Id, M) -> Option<Id>,
}

struct Adapter<M>(Arc<FnRule<M>>);

impl<M: 'static> Searcher<ENode, TensorAnalysis> for Adapter<M> {
    fn search_eclass_with_limit(
        &self,
        eg: &EG,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, ENode>> {
        if limit == 0 || (self.0.find)(eg, eclass).is_empty() {
            return None;
        }
        Some(SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl<M: 'static> Applier<ENode, TensorAnalysis> for Adapter<M> {
    fn apply_one(
        &self,
        eg: &mut EG,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<ENode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let matches = (self.0.find)(eg, eclass);
        let mut changed = Vec::new();
        for m in matches {
            if let Some(new) = (self.0.build)(eg, eclass, m) {
                if eg.union(eclass, new) {
                    changed.push(eg.find(eclass));
                }
            }
        }
        changed
    }
}

/// Wraps a rule for egg's `Runner`.
pub fn rewrite<M: Send + Sync + 'static>(
    name: &str,
    find: fn(&EG, Id) -> Vec<M>,
    build: fn(&mut EG, Id, M) -> Option<Id>,
) -> Rw {
    let r = Arc::new(FnRule { find, build });
    Rewrite::new(name, Adapter(r.clone()), Adapter(r)).expect("a rule binds no variables")
}

/// The right-hand side of a rule whose result is an existing class.
pub fn same(_: &mut EG, _: Id, x: Id) -> Option<Id> {
    Some(x)
}

/// Every rule of every family.
pub fn all() -> Vec<Rw> {
    let mut v = Vec::new();
    v.extend(shape::rules());
    v.extend(identity::rules());
    v.extend(quant::rules());
    v.extend(scale::rules());
    v.extend(scalar::rules());
    v.extend(linear::rules());
    v.extend(conv_bn::rules());
    v.extend(bias::rules());
    v.extend(fused::rules());
    v
}

/// Names of the rule families, as the `rules` option takes them.
pub const FAMILIES: &[&str] = &[
    "shape", "identity", "quant", "scale", "scalar", "linear", "conv-bn", "bias", "fused",
];

/// The rules of the named families.
pub fn families(names: &[&str]) -> Vec<Rw> {
    let mut v = Vec::new();
    for n in names {
        v.extend(match *n {
            "shape" => shape::rules(),
            "identity" => identity::rules(),
            "quant" => quant::rules(),
            "scale" => scale::rules(),
            "scalar" => scalar::rules(),
            "linear" => linear::rules(),
            "conv-bn" => conv_bn::rules(),
            "bias" => bias::rules(),
            "fused" => fused::rules(),
            _ => vec![],
        });
    }
    v
}

// ---- matching helpers ----

/// The op e-nodes of a class with their children.
pub fn ops(eg: &EG, id: Id) -> impl Iterator<Item = (&Op, &[Id])> {
    eg[id].nodes.iter().filter_map(|n| match n {
        ENode::Op(k, c) => Some((k.op(), c.as_slice())),
        _ => None,
    })
}

/// The children of the class's nodes whose op satisfies `pred`.
pub fn ops_where(eg: &EG, id: Id, pred: impl Fn(&Op) -> bool) -> Vec<(Op, Vec<Id>)> {
    ops(eg, id)
        .filter(|(op, _)| pred(op))
        .map(|(op, c)| (op.clone(), c.iter().map(|&c| eg.find(c)).collect()))
        .collect()
}

/// Child `i` if present (not an omitted optional input).
pub fn child(eg: &EG, c: &[Id], i: usize) -> Option<Id> {
    let id = eg.find(*c.get(i)?);
    (!is_absent(eg, id)).then_some(id)
}

pub fn is_absent(eg: &EG, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, ENode::Absent))
}

/// The small constant value of a class (folded values and weights up to the analysis's
/// limit).
pub fn konst(eg: &EG, id: Id) -> Option<Arc<Tensor>> {
    eg[id].data.konst.clone()
}

/// True if every element of the small constant `id` equals `v`.
pub fn all_equal(eg: &EG, id: Id, v: f64) -> bool {
    konst(eg, id).is_some_and(|t| t.numel() > 0 && t.to_f64_vec().iter().all(|&x| x == v))
}

/// A constant with one distinct value: its value (any shape).
pub fn uniform(eg: &EG, id: Id) -> Option<f64> {
    let t = konst(eg, id)?;
    let v = t.to_f64_vec();
    let first = *v.first()?;
    v.iter().all(|&x| x == first).then_some(first)
}

/// An integer constant's values.
pub fn ints(eg: &EG, id: Id) -> Option<Vec<i64>> {
    let t = konst(eg, id)?;
    matches!(t.dtype(), DType::I64 | DType::I32).then(|| t.to_i64_vec())
}

/// A weight of any size as f32 values with its dims, if it is a float constant.
pub fn f32_const(eg: &EG, id: Id) -> Option<(Vec<usize>, Vec<f32>)> {
    let t = const_of(eg, id)?;
    (t.dtype() == DType::F32).then(|| (t.shape().to_vec(), t.to_f32_vec()))
}

/// Dims of a ranked type.
pub fn dims(eg: &EG, id: Id) -> Option<&[Dim]> {
    ty(eg, id)?.shape.dims()
}

pub fn rank(eg: &EG, id: Id) -> Option<usize> {
    dims(eg, id).map(|d| d.len())
}

/// Two types that are provably the same: same element type, same rank, and every dim
/// known or named and equal (two unknown dims prove nothing).
pub fn same_type(a: &TensorType, b: &TensorType) -> bool {
    match (&a.shape, &b.shape) {
        (Shape::Ranked(x), Shape::Ranked(y)) => {
            a.dtype == b.dtype
                && x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| p == q && *p != Dim::Unknown)
        }
        _ => false,
    }
}

/// True if classes `a` and `b` provably have the same type.
pub fn same_ty(eg: &EG, a: Id, b: Id) -> bool {
    match (ty(eg, a), ty(eg, b)) {
        (Some(x), Some(y)) => same_type(x, y),
        _ => false,
    }
}

/// True if broadcasting a constant of shape `c` against a value of type `x` leaves the
/// value's shape as it is: `c` has no more axes and each of its dims is 1 or equals the
/// value's (known) dim.
pub fn broadcast_keeps(x: &TensorType, c: &[usize]) -> bool {
    let Some(d) = x.shape.dims() else {
        return false;
    };
    if c.len() > d.len() {
        return false;
    }
    let off = d.len() - c.len();
    c.iter()
        .enumerate()
        .all(|(i, &n)| n == 1 || d[off + i] == Dim::Known(n as u64))
}

/// For a constant of shape `c` broadcast against a value of rank `r`: `Some(n)` if it
/// varies along the last axis only (every other dim 1), with `n` its length there
/// (1 for a scalar-like constant).
pub fn last_axis_only(c: &[usize], r: usize) -> Option<usize> {
    if c.len() > r {
        return None;
    }
    match c.split_last() {
        None => Some(1),
        Some((&n, rest)) => rest.iter().all(|&d| d == 1).then_some(n),
    }
}

/// Normalizes an axis against a rank.
pub fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

/// f32 tensor from f64 values (rounded once).
pub fn tensor_f32(shape: Vec<usize>, v: impl IntoIterator<Item = f64>) -> Tensor {
    Tensor::from_f32(shape, v.into_iter().map(|x| x as f32).collect())
}

/// The class's type, for a rule's root node that takes the matched class's place.
pub fn root_ty(eg: &EG, id: Id) -> Option<TensorType> {
    ty(eg, id).cloned()
}

/// The binary op `kind`'s operands in both orders where the IR allows it: for `Mul`/`Add`
/// `(a, b)` and `(b, a)`; for the others only `(a, b)`.
pub fn operands(op: &Op, c: &[Id]) -> Vec<(Id, Id)> {
    use compc_ir::op::BinaryOp;
    if c.len() != 2 {
        return vec![];
    }
    match op {
        Op::Binary(BinaryOp::Mul | BinaryOp::Add) => vec![(c[0], c[1]), (c[1], c[0])],
        _ => vec![(c[0], c[1])],
    }
}

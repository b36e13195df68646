//! Symbolic values of small integer tensors (rank ≤ 1). Exporters compute shapes at run
//! time (`Shape → Gather → Unsqueeze → Concat → Reshape`); following the elements of those
//! little tensors as numbers or dim symbols lets `Reshape`, `Expand` and friends keep
//! `{batch}` and `{seq}` instead of losing every dim.

use super::dims::slice_range;
use crate::dtype::DType;
use crate::graph::{Graph, Node, ValueRef};
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::shape::{Dim, TensorType};
use crate::weights::{decode_to_i64, Weight};

/// Values longer than this are not followed: shape tensors are short, and reading big
/// constants is what the side table must never do.
pub(crate) const MAX_ELEMS: usize = 64;

/// One element: a number (may be negative, e.g. Reshape's -1), a dim symbol, or unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Num(i64),
    Sym(String),
    Unknown,
}

impl Elem {
    pub(crate) fn from_dim(d: &Dim) -> Elem {
        match d {
            Dim::Known(n) => i64::try_from(*n).map(Elem::Num).unwrap_or(Elem::Unknown),
            Dim::Sym(s) => Elem::Sym(s.clone()),
            Dim::Unknown => Elem::Unknown,
        }
    }

    /// The element as a dim; `None` for a negative number.
    pub(crate) fn to_dim(&self) -> Option<Dim> {
        match self {
            Elem::Num(n) => u64::try_from(*n).ok().map(Dim::Known),
            Elem::Sym(s) => Some(Dim::Sym(s.clone())),
            Elem::Unknown => Some(Dim::Unknown),
        }
    }
}

/// A scalar or 1-D integer tensor whose elements are (partly) known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SymValue {
    pub scalar: bool,
    pub elems: Vec<Elem>,
}

impl SymValue {
    fn vector(elems: Vec<Elem>) -> SymValue {
        SymValue {
            scalar: false,
            elems,
        }
    }

    /// All elements as numbers, if every one is known.
    pub(crate) fn nums(&self) -> Option<Vec<i64>> {
        self.elems
            .iter()
            .map(|e| match e {
                Elem::Num(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

/// The weight behind a value, looked up without trusting the ids (a malformed graph
/// must give an error or nothing, never a panic).
pub(crate) fn weight_of(g: &Graph, v: ValueRef) -> Option<&Weight> {
    if !g.contains(v.node) || v.slot != 0 {
        return None;
    }
    match g.node(v.node).op {
        Op::Const(w) => g.weights.try_get(w),
        _ => None,
    }
}

/// Elements of a small constant weight, if it is a rank ≤ 1 integer/bool tensor.
pub(crate) fn const_value(w: &Weight) -> Option<SymValue> {
    if w.dims.len() > 1
        || w.numel() > MAX_ELEMS as u64
        || !(w.dtype.is_int() || w.dtype == DType::Bool)
    {
        return None;
    }
    let v = w.to_i64_vec().ok()?;
    Some(SymValue {
        scalar: w.dims.is_empty(),
        elems: v.into_iter().map(Elem::Num).collect(),
    })
}

/// Ops whose value `eval` can compute; inputs of other ops are never looked at, so
/// asking for the value of a big tensor costs nothing.
pub(crate) fn follows(op: &Op) -> bool {
    match op {
        Op::Const(_)
        | Op::Shape(_)
        | Op::Size
        | Op::Slice
        | Op::Concat(_)
        | Op::Unsqueeze(_)
        | Op::Squeeze(_)
        | Op::CastLike
        | Op::Reshape(_)
        | Op::Where
        | Op::ConstantOfShape(_) => true,
        Op::Gather(a) => a.axis == 0 || a.axis == -1,
        Op::Cast(c) => c.to.is_int(),
        Op::Unary(k) => matches!(k, UnaryOp::Identity | UnaryOp::Neg),
        Op::Binary(k) => matches!(
            k,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Equal
        ),
        _ => false,
    }
}

/// Computes the value of output 0 of `node` from its inputs' values and types.
pub(crate) fn eval(
    g: &Graph,
    node: &Node,
    vals: &[Option<SymValue>],
    tys: &[Option<&TensorType>],
) -> Option<SymValue> {
    let val = |i: usize| vals.get(i).and_then(|v| v.as_ref());
    let nums = |i: usize| val(i).and_then(SymValue::nums);
    match &node.op {
        Op::Const(w) => const_value(g.weights.try_get(*w)?),
        Op::Shape(s) => {
            let dims = tys.first().copied().flatten()?.shape.dims()?;
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (clamp(s.start), clamp(s.end.unwrap_or(r)));
            let picked = dims.get(a..b.max(a))?;
            Some(SymValue::vector(
                picked.iter().map(Elem::from_dim).collect(),
            ))
        }
        Op::Size => {
            let dims = tys.first().copied().flatten()?.shape.dims()?;
            let d = super::dims::product(dims);
            Some(SymValue {
                scalar: true,
                elems: vec![Elem::from_dim(&d)],
            })
        }
        Op::Gather(a) if a.axis == 0 || a.axis == -1 => {
            let data = val(0)?;
            let idx = val(1)?;
            if data.scalar {
                return None;
            }
            let n = data.elems.len() as i64;
            let mut out = Vec::with_capacity(idx.elems.len());
            for e in &idx.elems {
                let Elem::Num(i) = e else { return None };
                let i = if *i < 0 { i + n } else { *i };
                out.push(data.elems.get(usize::try_from(i).ok()?)?.clone());
            }
            Some(SymValue {
                scalar: idx.scalar,
                elems: out,
            })
        }
        Op::Slice => {
            let data = val(0)?;
            let (starts, ends) = (nums(1)?, nums(2)?);
            let axes = if node.input(3).is_some() {
                nums(3)?
            } else {
                vec![0]
            };
            let steps = if node.input(4).is_some() {
                nums(4)?
            } else {
                vec![1]
            };
            if data.scalar || starts.len() != 1 || ends.len() != 1 || steps.len() != 1 {
                return None;
            }
            if axes != [0] && axes != [-1] {
                return None;
            }
            let (s, len) =
                slice_range(data.elems.len() as i64, starts[0], ends[0], steps[0]).ok()?;
            let elems = (0..len)
                .map(|k| data.elems.get((s + k * steps[0]) as usize).cloned())
                .collect::<Option<Vec<_>>>()?;
            Some(SymValue::vector(elems))
        }
        Op::Concat(_) => {
            let mut elems = Vec::new();
            for i in 0..node.inputs().len() {
                match val(i) {
                    Some(v) if v.scalar => return None,
                    Some(v) => elems.extend(v.elems.iter().cloned()),
                    // A part computed at run time still has a known length: the other
                    // parts keep their place (`[batch, seq, ?, 64]`).
                    None => {
                        let n = unknown_len(tys.get(i).copied().flatten()?)?;
                        elems.extend(std::iter::repeat_n(Elem::Unknown, n));
                    }
                }
            }
            (elems.len() <= MAX_ELEMS).then(|| SymValue::vector(elems))
        }
        Op::Unsqueeze(ax) => {
            let unknown = SymValue {
                scalar: true,
                elems: vec![Elem::Unknown],
            };
            let v = match val(0) {
                Some(v) => v,
                None if tys.first().copied().flatten()?.shape.rank() == Some(0) => &unknown,
                None => return None,
            };
            let axes = match &ax.axes {
                Some(a) => a.clone(),
                None => nums(1)?,
            };
            (v.scalar && (axes == [0] || axes == [-1])).then(|| SymValue::vector(v.elems.clone()))
        }
        Op::Squeeze(_) => {
            let v = val(0)?;
            (!v.scalar && v.elems.len() == 1).then(|| SymValue {
                scalar: true,
                elems: v.elems.clone(),
            })
        }
        Op::Cast(c) if c.to.is_int() => val(0).cloned(),
        Op::CastLike => {
            let to = tys.get(1).copied().flatten()?.dtype;
            to.is_int().then(|| val(0).cloned()).flatten()
        }
        Op::Unary(UnaryOp::Identity) => val(0).cloned(),
        Op::Unary(UnaryOp::Neg) => map_elems(val(0)?, |e| match e {
            Elem::Num(n) => n.checked_neg().map_or(Elem::Unknown, Elem::Num),
            _ => Elem::Unknown,
        }),
        Op::Reshape(_) => {
            let v = val(0)?;
            let target = nums(1)?;
            match target.as_slice() {
                [] if v.elems.len() == 1 => Some(SymValue {
                    scalar: true,
                    elems: v.elems.clone(),
                }),
                [n] if *n == -1 || *n == v.elems.len() as i64 => {
                    Some(SymValue::vector(v.elems.clone()))
                }
                _ => None,
            }
        }
        Op::Binary(k) => {
            let f: fn(&Elem, &Elem) -> Elem = match k {
                BinaryOp::Add => add,
                BinaryOp::Sub => sub,
                BinaryOp::Mul => mul,
                BinaryOp::Div => div,
                BinaryOp::Equal => equal,
                _ => return None,
            };
            zip(val(0)?, val(1)?, f)
        }
        Op::Where => {
            let (c, x, y) = (val(0)?, val(1)?, val(2)?);
            let n = c.elems.len().max(x.elems.len()).max(y.elems.len());
            let (c2, x2, y2) = (
                broadcast_to(c, n)?,
                broadcast_to(x, n)?,
                broadcast_to(y, n)?,
            );
            let elems = (0..n)
                .map(|i| match &c2[i] {
                    Elem::Num(0) => y2[i].clone(),
                    Elem::Num(_) => x2[i].clone(),
                    _ if x2[i] == y2[i] => x2[i].clone(),
                    _ => Elem::Unknown,
                })
                .collect();
            Some(SymValue {
                scalar: c.scalar && x.scalar && y.scalar,
                elems,
            })
        }
        Op::ConstantOfShape(c) => {
            let shape = nums(0)?;
            let [n] = shape.as_slice() else { return None };
            let n = usize::try_from(*n).ok().filter(|n| *n <= MAX_ELEMS)?;
            let lit = c.value.as_ref()?;
            let width = lit.dtype.bits() / 8;
            if !lit.dtype.is_int()
                || lit.dtype.is_packed()
                || width == 0
                || lit.bytes.len() != width
            {
                return None;
            }
            let v = *decode_to_i64(lit.dtype, &lit.bytes, 1).ok()?.first()?;
            Some(SymValue::vector(vec![Elem::Num(v); n]))
        }
        _ => None,
    }
}

/// Length of a 1-D value whose elements are not known.
fn unknown_len(t: &TensorType) -> Option<usize> {
    match t.shape.dims()? {
        [Dim::Known(n)] => usize::try_from(*n).ok().filter(|n| *n <= MAX_ELEMS),
        _ => None,
    }
}

fn map_elems(v: &SymValue, f: impl Fn(&Elem) -> Elem) -> Option<SymValue> {
    Some(SymValue {
        scalar: v.scalar,
        elems: v.elems.iter().map(f).collect(),
    })
}

fn broadcast_to(v: &SymValue, n: usize) -> Option<Vec<Elem>> {
    match v.elems.len() {
        1 => Some(vec![v.elems[0].clone(); n]),
        m if m == n => Some(v.elems.clone()),
        _ => None,
    }
}

/// Element-wise on two values with broadcasting of single elements.
fn zip(a: &SymValue, b: &SymValue, f: impl Fn(&Elem, &Elem) -> Elem) -> Option<SymValue> {
    let n = a.elems.len().max(b.elems.len());
    let (xa, xb) = (broadcast_to(a, n)?, broadcast_to(b, n)?);
    Some(SymValue {
        scalar: a.scalar && b.scalar,
        elems: xa.iter().zip(&xb).map(|(x, y)| f(x, y)).collect(),
    })
}

fn num(v: Option<i64>) -> Elem {
    v.map_or(Elem::Unknown, Elem::Num)
}

fn add(a: &Elem, b: &Elem) -> Elem {
    match (a, b) {
        (Elem::Num(x), Elem::Num(y)) => num(x.checked_add(*y)),
        (s @ Elem::Sym(_), Elem::Num(0)) | (Elem::Num(0), s @ Elem::Sym(_)) => s.clone(),
        _ => Elem::Unknown,
    }
}

fn sub(a: &Elem, b: &Elem) -> Elem {
    match (a, b) {
        (Elem::Num(x), Elem::Num(y)) => num(x.checked_sub(*y)),
        (s @ Elem::Sym(_), Elem::Num(0)) => s.clone(),
        (Elem::Sym(x), Elem::Sym(y)) if x == y => Elem::Num(0),
        _ => Elem::Unknown,
    }
}

fn mul(a: &Elem, b: &Elem) -> Elem {
    match (a, b) {
        (Elem::Num(x), Elem::Num(y)) => num(x.checked_mul(*y)),
        (Elem::Num(0), _) | (_, Elem::Num(0)) => Elem::Num(0),
        (s @ Elem::Sym(_), Elem::Num(1)) | (Elem::Num(1), s @ Elem::Sym(_)) => s.clone(),
        _ => Elem::Unknown,
    }
}

/// Integer division truncating toward zero, as onnxruntime computes it.
fn div(a: &Elem, b: &Elem) -> Elem {
    match (a, b) {
        (Elem::Num(x), Elem::Num(y)) => num(x.checked_div(*y)),
        (s @ Elem::Sym(_), Elem::Num(1)) => s.clone(),
        (Elem::Sym(x), Elem::Sym(y)) if x == y => Elem::Num(1),
        _ => Elem::Unknown,
    }
}

fn equal(a: &Elem, b: &Elem) -> Elem {
    match (a, b) {
        (Elem::Num(x), Elem::Num(y)) => Elem::Num((x == y) as i64),
        (Elem::Sym(x), Elem::Sym(y)) if x == y => Elem::Num(1),
        // A dim is never negative, so it never equals the -1 exporters compare against.
        (Elem::Sym(_), Elem::Num(n)) | (Elem::Num(n), Elem::Sym(_)) if *n < 0 => Elem::Num(0),
        _ => Elem::Unknown,
    }
}

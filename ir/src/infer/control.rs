//! Control flow, sequences and optionals. A body's input types come from the node's
//! inputs (`refine_bodies`, which `infer_graph` runs before the node's rule), then the
//! body is inferred and its outputs give the node's. Loop-carried values may change shape
//! from one iteration to the next, so only their element type is taken from the initial
//! value (unless the body declares a shape).

use super::Cx;
use crate::dtype::DType;
use crate::graph::{Graph, NodeId};
use crate::op::{LoopOp, Op, OptionalOp, ScanOp, SequenceEmpty};
use crate::shape::{Dim, Shape, TensorType};

type Out = Result<Vec<TensorType>, String>;

fn unranked(d: DType) -> TensorType {
    TensorType::unranked(d)
}

/// The types of a body's outputs.
fn body_outputs(g: &Graph) -> Vec<TensorType> {
    g.outputs
        .iter()
        .map(|o| {
            g.value_type(o.value)
                .cloned()
                .unwrap_or_else(|| unranked(DType::F32))
        })
        .collect()
}

/// A type both `a` and `b` fit: dims they agree on, unknown elsewhere.
fn join(a: &TensorType, b: &TensorType) -> TensorType {
    let shape = match (a.shape.dims(), b.shape.dims()) {
        (Some(x), Some(y)) if x.len() == y.len() => Shape::Ranked(
            x.iter()
                .zip(y)
                .map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown })
                .collect(),
        ),
        _ => Shape::Unranked,
    };
    TensorType::new(a.dtype, shape)
}

pub(crate) fn if_(cx: &Cx, i: &crate::op::IfOp) -> Out {
    let t = body_outputs(i.then_branch.graph());
    let e = body_outputs(i.else_branch.graph());
    if t.len() != e.len() {
        return Err(format!(
            "the branches have {} and {} outputs",
            t.len(),
            e.len()
        ));
    }
    if t.len() < cx.n_outputs() {
        return Err(format!(
            "the branches have {} outputs, the node {}",
            t.len(),
            cx.n_outputs()
        ));
    }
    t.iter()
        .zip(&e)
        .enumerate()
        .map(|(k, (a, b))| {
            if a.dtype != b.dtype {
                Err(format!(
                    "output {k} is {} in one branch and {} in the other",
                    a.dtype, b.dtype
                ))
            } else {
                Ok(join(a, b))
            }
        })
        .collect()
}

/// Number of loop-carried values of a Loop node.
pub(crate) fn loop_carried(n_inputs: usize, l: &LoopOp) -> Result<usize, String> {
    n_inputs
        .checked_sub(2 + l.captures.max(0) as usize)
        .ok_or_else(|| format!("has too few inputs for {} captures", l.captures))
}

pub(crate) fn loop_(cx: &Cx, l: &LoopOp) -> Out {
    let n = loop_carried(cx.n_inputs(), l)?;
    let outs = body_outputs(l.body.graph());
    if outs.len() < 1 + n {
        return Err(format!(
            "the body has {} outputs for a condition and {n} loop-carried values",
            outs.len()
        ));
    }
    let mut res = Vec::with_capacity(outs.len() - 1);
    for j in 0..n {
        let init = cx.ty(2 + j)?;
        res.push(join(&outs[1 + j], init));
    }
    for t in &outs[1 + n..] {
        res.push(match t.shape.dims() {
            Some(d) => {
                let mut dims = vec![Dim::Unknown];
                dims.extend(d.iter().cloned());
                TensorType::new(t.dtype, Shape::Ranked(dims))
            }
            None => unranked(t.dtype),
        });
    }
    Ok(res)
}

/// (states, scanned inputs) of a Scan node.
pub(crate) fn scan_counts(n_inputs: usize, s: &ScanOp) -> Result<(usize, usize), String> {
    let m = usize::try_from(s.num_scan_inputs).map_err(|_| "num_scan_inputs is negative")?;
    let n = n_inputs
        .checked_sub(m + s.captures.max(0) as usize)
        .ok_or("has fewer inputs than num_scan_inputs and captures")?;
    Ok((n, m))
}

pub(crate) fn scan(cx: &Cx, s: &ScanOp) -> Out {
    let (n, _) = scan_counts(cx.n_inputs(), s)?;
    let outs = body_outputs(s.body.graph());
    if outs.len() < n {
        return Err(format!(
            "the body has {} outputs for {n} states",
            outs.len()
        ));
    }
    let mut res: Vec<TensorType> = outs[..n].to_vec();
    for (k, t) in outs[n..].iter().enumerate() {
        let axis = s
            .scan_output_axes
            .as_ref()
            .and_then(|a| a.get(k))
            .copied()
            .unwrap_or(0);
        res.push(match t.shape.dims() {
            Some(d) => {
                let r = d.len() as i64 + 1;
                let a = if axis < 0 { axis + r } else { axis };
                if !(0..r).contains(&a) {
                    return Err(format!("scan output axis {axis} is out of range"));
                }
                let mut dims = d.to_vec();
                dims.insert(a as usize, Dim::Unknown);
                TensorType::new(t.dtype, Shape::Ranked(dims))
            }
            None => unranked(t.dtype),
        });
    }
    Ok(res)
}

pub(crate) fn sequence_map(cx: &Cx, m: &crate::op::SequenceMapOp) -> Out {
    let _ = cx;
    Ok(body_outputs(m.body.graph())
        .into_iter()
        .map(|t| unranked(t.dtype))
        .collect())
}

/// Sequence and optional ops: element types only.
pub(crate) fn sequence_op(cx: &Cx) -> Out {
    let op = &cx.node.op;
    Ok(vec![match op {
        Op::SequenceEmpty(SequenceEmpty { dtype }) => unranked(dtype.unwrap_or(DType::F32)),
        Op::SequenceLength => TensorType::new(DType::I64, Shape::scalar()),
        Op::OptionalHasElement => TensorType::new(DType::Bool, Shape::scalar()),
        Op::Optional(OptionalOp { elem_type, .. }) => match cx.opt_ty(0) {
            Some(t) => t.clone(),
            None => unranked(elem_type.unwrap_or(DType::F32)),
        },
        // Sequence in, sequence or element out: the element type is what is known.
        _ => unranked(cx.ty(0)?.dtype),
    }])
}

/// Strings of the input's rank; the number left after removing stopwords is unknown.
pub(crate) fn string_normalizer(cx: &Cx) -> Out {
    let x = cx.ty(0)?;
    Ok(vec![match x.shape.dims() {
        Some(d) if d.len() == 1 => TensorType::new(DType::Str, Shape::Ranked(vec![Dim::Unknown])),
        Some(d) if d.len() == 2 => {
            TensorType::new(DType::Str, Shape::Ranked(vec![d[0].clone(), Dim::Unknown]))
        }
        Some(_) => return Err(format!("input must be [C] or [1, C], found {x}")),
        None => unranked(DType::Str),
    }])
}

/// Sets the input types of the bodies of node `id` from its inputs and infers the bodies.
pub(crate) fn refine_bodies(g: &mut Graph, id: NodeId) -> Result<(), String> {
    let node = g.node(id);
    if node.op.subgraphs().is_empty() {
        return Ok(());
    }
    let ins: Vec<Option<TensorType>> = node
        .inputs()
        .iter()
        .map(|v| v.and_then(|v| g.value_type(v).cloned()))
        .collect();
    let mut op = node.op.clone();
    let n_in = ins.len();
    // The type each body input should have: `Some(exact)` or, for values that may change
    // between iterations, only the element type.
    let mut wanted: Vec<Vec<Want>> = Vec::new();
    match &op {
        Op::If(_) => {
            let caps: Vec<Want> = ins
                .get(1..)
                .unwrap_or(&[])
                .iter()
                .map(|t| Want::exact(t.clone()))
                .collect();
            wanted.push(caps.clone());
            wanted.push(caps);
        }
        Op::Loop(l) => {
            let n = loop_carried(n_in, l)?;
            let mut w = vec![
                Want::Exact(TensorType::new(DType::I64, Shape::scalar())),
                Want::Exact(TensorType::new(DType::Bool, Shape::scalar())),
            ];
            w.extend(ins[2..2 + n].iter().map(|t| Want::elem(t.as_ref())));
            w.extend(ins[2 + n..].iter().map(|t| Want::exact(t.clone())));
            wanted.push(w);
        }
        Op::Scan(s) => {
            let (n, m) = scan_counts(n_in, s)?;
            let mut w: Vec<Want> = ins[..n].iter().map(|t| Want::elem(t.as_ref())).collect();
            for (k, t) in ins[n..n + m].iter().enumerate() {
                let axis = s
                    .scan_input_axes
                    .as_ref()
                    .and_then(|a| a.get(k))
                    .copied()
                    .unwrap_or(0);
                w.push(
                    match t.as_ref().and_then(|t| t.shape.dims().map(|d| (t, d))) {
                        Some((t, d)) => {
                            let r = d.len() as i64;
                            let a = if axis < 0 { axis + r } else { axis };
                            if !(0..r).contains(&a) {
                                return Err(format!("scan input axis {axis} is out of range"));
                            }
                            let mut dims = d.to_vec();
                            dims.remove(a as usize);
                            Want::Exact(TensorType::new(t.dtype, Shape::Ranked(dims)))
                        }
                        None => Want::elem(t.as_ref()),
                    },
                );
            }
            w.extend(ins[n + m..].iter().map(|t| Want::exact(t.clone())));
            wanted.push(w);
        }
        Op::SequenceMap(_) => {
            wanted.push(ins.iter().map(|t| Want::elem(t.as_ref())).collect());
        }
        _ => {}
    }
    for (body, want) in op.subgraphs_mut().into_iter().zip(wanted) {
        let b = body.graph_mut();
        let inputs = b.inputs().to_vec();
        if inputs.len() != want.len() {
            return Err(format!(
                "a body has {} inputs where {} are expected",
                inputs.len(),
                want.len()
            ));
        }
        for (bi, w) in inputs.into_iter().zip(want) {
            let node = b.node_mut(bi);
            let Some(declared) = node.outputs.first_mut() else {
                continue;
            };
            match w {
                Want::Exact(t) => *declared = t,
                Want::Elem(d) => declared.dtype = d,
                Want::Nothing => {}
            }
        }
        super::infer_graph(b).map_err(|e| format!("in a body: {e}"))?;
    }
    g.node_mut(id).op = op;
    Ok(())
}

#[derive(Clone)]
enum Want {
    Exact(TensorType),
    Elem(DType),
    Nothing,
}

impl Want {
    fn exact(t: Option<TensorType>) -> Want {
        t.map_or(Want::Nothing, Want::Exact)
    }
    fn elem(t: Option<&TensorType>) -> Want {
        t.map_or(Want::Nothing, |t| Want::Elem(t.dtype))
    }
}

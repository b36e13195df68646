//! `const-fold`: evaluates nodes whose inputs are all constants with the reference
//! runtime and replaces them by their result; `Shape`/`Size` of fully known shapes fold
//! without evaluating anything. Quantization ops are never folded: folding
//! `DequantizeLinear(int4 weight)` would silently undo quantization.

use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::{DType, Graph, NodeId, Op, TensorType, ValueRef, Weight};
use compc_runtime::{eval_op, Tensor};

pub struct ConstFold;

/// Results larger than this are not materialized: folding `Expand`/`Tile` of a small
/// constant into a huge one would make the model bigger, not smaller.
const MAX_FOLDED_ELEMENTS: u64 = 1 << 16;

/// Ops never evaluated at compile time, here and in the e-graph's constant analysis:
/// folding `DequantizeLinear(int4 weight)` would silently undo quantization.
pub fn never_fold(op: &Op) -> bool {
    matches!(
        op,
        Op::Input
            | Op::Const(_)
            | Op::Custom(_)
            | Op::QuantizeLinear(_)
            | Op::DequantizeLinear(_)
            | Op::DynamicQuantizeLinear
            | Op::MatMulNBits(_)
    )
}

/// Values of `Shape`/`Size` whose input shape is fully known.
fn fold_from_type(op: &Op, input: &TensorType) -> Option<Vec<i64>> {
    let dims: Vec<i64> = input.shape.as_known()?.iter().map(|&d| d as i64).collect();
    match op {
        Op::Shape(s) => {
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(s.start);
            let end = clamp(s.end.unwrap_or(r));
            Some(dims.get(start..end.max(start)).unwrap_or(&[]).to_vec())
        }
        Op::Size => Some(vec![dims.iter().product()]),
        _ => None,
    }
}

/// Node `id`'s inputs as tensors, when every one it has is a loaded constant.
fn constant_inputs(g: &Graph, id: NodeId) -> Result<Option<Vec<Option<Tensor>>>, PassError> {
    let mut inputs = Vec::with_capacity(g.node(id).inputs().len());
    for v in g.node(id).inputs() {
        match v {
            None => inputs.push(None),
            Some(v) => match g.const_weight(*v) {
                Some(w) if !w.is_missing() => inputs.push(Some(Tensor::from_weight(w)?)),
                _ => return Ok(None),
            },
        }
    }
    Ok(Some(inputs))
}

fn evaluate(g: &Graph, id: NodeId) -> Result<Option<Vec<Tensor>>, PassError> {
    let node = g.node(id);
    if never_fold(&node.op) {
        return Ok(None);
    }
    if let (Some(v), Some(ty)) = (node.input(0), node.input(0).and_then(|v| g.value_type(v))) {
        if let Some(values) = fold_from_type(&node.op, ty) {
            let t = match node.op {
                Op::Size => Tensor::from_i64(vec![], values),
                _ => Tensor::from_i64(vec![values.len()], values),
            };
            let _ = v;
            return Ok(Some(vec![t]));
        }
    }
    let Some(inputs) = constant_inputs(g, id)? else {
        return Ok(None);
    };
    if node
        .outputs
        .iter()
        .any(|t| t.shape.numel().is_none_or(|n| n > MAX_FOLDED_ELEMENTS))
    {
        return Ok(None);
    }
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(|t| t.as_ref()).collect();
    Ok(Some(eval_op(&node.op, &refs, node.outputs.len())?))
}

/// Points every read of node `id`'s results at constants holding `results`, named
/// `base` (or `base_slot` for several results); unread results and strings are skipped.
fn replace_by_constants(
    g: &mut Graph,
    id: NodeId,
    results: Vec<Tensor>,
    base: &str,
) -> Result<(), PassError> {
    let n = results.len();
    for (slot, t) in results.into_iter().enumerate() {
        let v = ValueRef::new(id, slot as u32);
        if !g.is_used(v) {
            continue;
        }
        let name = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{slot}")
        };
        let w: Weight = t.to_weight(&name)?;
        if w.dtype == DType::Str {
            continue;
        }
        let c = g.add_const(w);
        g.replace_all_uses(v, ValueRef::new(c, 0));
    }
    Ok(())
}

/// Replaces every DequantizeLinear of constants by its float result, whatever its size
/// (the pass itself never folds quantization ops). For the native backends, which
/// compute in float: the weights become constants again, which the clean-up before
/// lowering folds further. Returns how many were folded; the codes are left for `dce`.
pub fn fold_dequantized_weights(g: &mut Graph) -> Result<usize, PassError> {
    let mut folded = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        if !matches!(node.op, Op::DequantizeLinear(_)) {
            continue;
        }
        let Some(inputs) = constant_inputs(g, id)? else {
            continue;
        };
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
        let results = eval_op(&node.op, &refs, 1)?;
        let base = format!("{}_dequantized", node.name);
        replace_by_constants(g, id, results, &base)?;
        folded += 1;
    }
    Ok(folded)
}

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let mut folded = 0;
        for id in g.topo_order()? {
            let Some(results) = evaluate(g, id)? else {
                continue;
            };
            let base = if g.node(id).name.is_empty() {
                format!("folded_{}", id.index())
            } else {
                g.node(id).name.clone()
            };
            replace_by_constants(g, id, results, &base)?;
            folded += 1;
        }
        let removed = remove_dead_nodes(g)?;
        cx.touch(folded);
        if folded > 0 {
            cx.note(format!(
                "folded {folded} nodes into constants ({removed} nodes removed)"
            ));
        }
        Ok(Changed::from_bool(folded > 0))
    }
}

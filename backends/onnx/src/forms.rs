//! One IR node to ONNX, in the form the target opset uses: axes/split as attribute or as
//! a constant input, RMS normalization as `RMSNormalization` (23+) or the contrib
//! `SimplifiedLayerNormalization` that onnxruntime implements, compc's own ops lowered.

use crate::emit::Emitter;
use crate::error::ExportError;
use crate::lower;
use compc_ir::op::ReduceOp;
use compc_ir::{Attr, Attrs, NodeId, Op, Weight};

pub fn emit_node(em: &mut Emitter<'_>, id: NodeId, index: usize) -> Result<(), ExportError> {
    let g = em.g;
    let n = g.node(id);
    let desc = n.describe(id);
    if let Op::Hadamard(h) = &n.op {
        // The Kronecker factor is baked into the exported matrix, not an initializer.
        let x = match n.input(0) {
            Some(v) => vec![em.value_name(v)?],
            None => vec![],
        };
        let outputs = em.output_names(id, index);
        return lower::hadamard(em, id, index, h.size, x, outputs);
    }
    let mut inputs = em.input_names(id)?;
    let outputs = em.output_names(id, index);
    let mut attrs = n.op.attrs();
    let (domain, op_type) = match &n.op {
        op if op.handles_non_tensors() => {
            return Err(ExportError::Node(format!(
                "{desc}: control flow, sequence and optional ops are not exportable to ONNX yet"
            )))
        }
        Op::RouterTopK(_) => {
            return Err(ExportError::Node(format!(
                "{desc}: router_top_k is not exportable to ONNX yet"
            )))
        }
        Op::RmsNorm(_) if em.opset >= 23 => ("", "RMSNormalization"),
        Op::RmsNorm(_) => ("", "SimplifiedLayerNormalization"),
        Op::Reduce(k, _) => {
            let since = if *k == ReduceOp::Sum { 13 } else { 18 };
            move_form(
                em,
                &desc,
                &n.name,
                index,
                &mut attrs,
                &mut inputs,
                "axes",
                since,
            )?;
            ("", k.onnx_type())
        }
        // Both moved `axes` from an attribute to an input at opset 13.
        Op::Squeeze(_) | Op::Unsqueeze(_) => {
            move_form(
                em,
                &desc,
                &n.name,
                index,
                &mut attrs,
                &mut inputs,
                "axes",
                13,
            )?;
            n.op.onnx_op().unwrap_or(("", ""))
        }
        Op::Split(_) => {
            move_form(
                em,
                &desc,
                &n.name,
                index,
                &mut attrs,
                &mut inputs,
                "split",
                13,
            )?;
            if em.opset >= 18 {
                // Opset 18 wants the parts given one way or another.
                if inputs.len() < 2 && !attrs.contains_key("num_outputs") {
                    attrs.insert("num_outputs".into(), Attr::Int(outputs.len() as i64));
                }
            } else {
                // Before 18 equal parts are implied by the number of outputs.
                attrs.remove("num_outputs");
            }
            ("", "Split")
        }
        Op::Softmax(a) | Op::LogSoftmax(a) | Op::Hardmax(a) if em.opset < 13 => {
            // Before opset 13 these flatten to 2-D at `axis`, which equals the per-axis
            // form only for the last axis.
            let rank = n
                .input(0)
                .and_then(|v| g.value_type(v))
                .and_then(|t| t.shape.rank());
            let last = matches!(rank, Some(r) if a.axis == -1 || a.axis == r as i64 - 1);
            if !last {
                return Err(ExportError::Opset(format!(
                    "{desc}: before opset 13 only a softmax over the last axis of a ranked \
                     input can be written; use opset 13 or newer"
                )));
            }
            n.op.onnx_op().unwrap_or(("", ""))
        }
        op => op
            .onnx_op()
            .ok_or_else(|| ExportError::Node(format!("{desc}: this op has no ONNX form")))?,
    };
    let (domain, op_type) = (domain.to_string(), op_type.to_string());
    em.push_node(&domain, &op_type, &n.name, inputs, outputs, attrs, index);
    Ok(())
}

/// Puts a list attribute where the target opset wants it: kept as the attribute before
/// `since`, else moved into a constant int64 input at position 1.
#[allow(clippy::too_many_arguments)]
fn move_form(
    em: &mut Emitter<'_>,
    desc: &str,
    node_name: &str,
    index: usize,
    attrs: &mut Attrs,
    inputs: &mut Vec<String>,
    attr: &str,
    since: i64,
) -> Result<(), ExportError> {
    let computed = inputs.get(1).is_some_and(|s| !s.is_empty());
    if em.opset < since {
        if computed {
            return Err(ExportError::Opset(format!(
                "{desc}: opset {} needs `{attr}` as an attribute, but it is computed; \
                 use opset {since} or newer",
                em.opset
            )));
        }
        return Ok(());
    }
    let Some(a) = attrs.remove(attr) else {
        return Ok(());
    };
    let Attr::Ints(values) = a else {
        return Err(ExportError::Node(format!(
            "{desc}: `{attr}` must be a list of integers, found {}",
            a.kind()
        )));
    };
    if computed {
        return Err(ExportError::Node(format!(
            "{desc}: `{attr}` is given both as an attribute and as an input"
        )));
    }
    let base = format!(
        "{}_{attr}",
        crate::names::base_name(node_name, "node", index)
    );
    let w = Weight::from_i64(base.clone(), vec![values.len() as u64], &values)?;
    let name = em.add_made(&base, w);
    if inputs.is_empty() {
        inputs.push(String::new());
    }
    inputs.truncate(1);
    inputs.push(name);
    Ok(())
}

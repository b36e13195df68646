//! The opset to write: the one asked for, else the graph's own (or 17), raised to what the
//! graph's contents need (4-bit types, blocked quantization, computed axes, ...).

use crate::error::ExportError;
use crate::types::is_int4;
use compc_ir::op::{BinaryOp, ReduceOp, UnaryOp};
use compc_ir::{Graph, Op};

pub const OLDEST: i64 = 11;
pub const NEWEST: i64 = 23;
pub const DEFAULT: i64 = 17;

/// The IR version each opset shipped with (ONNX's release table); runtimes check it.
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        _ => 11,
    }
}

/// The oldest opset that can express the graph, and why.
fn required(g: &Graph) -> (i64, String) {
    let mut best = (OLDEST, String::new());
    let mut need = |v: i64, why: String| {
        if v > best.0 {
            best = (v, why);
        }
    };
    for (_, w) in g.weights.iter() {
        if is_int4(w.dtype) {
            need(21, format!("weight `{}` is {}", w.name, w.dtype));
        }
    }
    for id in g.node_ids() {
        let n = g.node(id);
        let d = || n.describe(id);
        if n.outputs.iter().any(|t| is_int4(t.dtype)) {
            need(21, format!("{} has 4-bit outputs", d()));
        }
        let has_input1 = n.input(1).is_some();
        match &n.op {
            Op::QuantizeLinear(q) if q.block_size > 0 || q.output_dtype.is_some() => {
                need(21, format!("{} uses blocked or typed quantization", d()))
            }
            Op::DequantizeLinear(q) if q.block_size > 0 => {
                need(21, format!("{} uses blocked quantization", d()))
            }
            Op::Gelu(_) => need(20, format!("{} is Gelu", d())),
            Op::LayerNorm(_) => need(17, format!("{} is LayerNormalization", d())),
            Op::GroupNorm(_) => need(18, format!("{} is GroupNormalization", d())),
            Op::Trilu(_) => need(14, format!("{} is Trilu", d())),
            Op::CastLike => need(15, format!("{} is CastLike", d())),
            Op::Einsum(_) | Op::Celu(_) => need(12, format!("{} is new in opset 12", d())),
            Op::Unary(UnaryOp::HardSwish) => need(14, format!("{} is HardSwish", d())),
            Op::Unary(UnaryOp::Mish) => need(18, format!("{} is Mish", d())),
            Op::Binary(BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor) => {
                need(18, format!("{} is a bitwise op", d()))
            }
            Op::ScatterNd(s) if s.reduction != "none" => {
                need(16, format!("{} uses `reduction`", d()))
            }
            Op::ScatterElements(s) if s.reduction != "none" => {
                let v = if matches!(s.reduction.as_str(), "max" | "min") {
                    18
                } else {
                    16
                };
                need(v, format!("{} uses `reduction`", d()))
            }
            Op::Reduce(k, r) => {
                let since = if *k == ReduceOp::Sum { 13 } else { 18 };
                if has_input1 && r.axes.is_none() {
                    need(since, format!("{} takes its axes as an input", d()));
                }
                if r.noop_with_empty_axes {
                    need(since, format!("{} uses noop_with_empty_axes", d()));
                }
            }
            Op::Squeeze(a) | Op::Unsqueeze(a) if has_input1 && a.axes.is_none() => {
                need(13, format!("{} takes its axes as an input", d()))
            }
            Op::Split(s) if has_input1 && s.split.is_none() => {
                need(13, format!("{} takes its sizes as an input", d()))
            }
            Op::Cast(c) if !c.saturate => need(19, format!("{} sets `saturate`", d())),
            _ => {}
        }
    }
    best
}

/// The default-domain opset to write.
pub fn target_opset(g: &Graph, asked: Option<i64>) -> Result<i64, ExportError> {
    let (need, why) = required(g);
    let opset = match asked {
        Some(v) if v < need => {
            return Err(ExportError::Opset(format!(
                "opset {v} cannot express the graph: {why}, which needs opset {need}"
            )))
        }
        Some(v) => v,
        None => g.opsets.get("").copied().unwrap_or(DEFAULT).max(need),
    };
    if !(OLDEST..=NEWEST).contains(&opset) {
        return Err(ExportError::Opset(format!(
            "opset {opset} is outside the range compc writes ({OLDEST} to {NEWEST})"
        )));
    }
    Ok(opset)
}

//! Opsets older than 13 brought to the form the IR speaks (opset 13 and later), so every
//! later stage sees one spelling: attributes that became inputs are moved into constant
//! inputs, renamed or folded ops get their new name, and ops whose meaning changed get an
//! equivalent expression. An old form that has no such equivalent is refused rather than
//! read with the newer meaning: a wrong answer is worse than none.
//!
//! What is not rewritten here was unchanged in meaning (attributes that no longer exist,
//! such as `consumed_inputs` or `broadcast`, are refused later as unknown attributes).

use crate::builder::Builder;
use crate::error::ImportError;
use compc_ir::op::{Axis, Flatten, Reshape, ShapeOf};
use compc_ir::{DType, Op, ValueRef, Weight};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto};
use protobuf::EnumOrUnknown;

/// What the rewrite did with a node.
pub enum Legacy {
    /// The node (possibly rewritten) goes on through the ordinary import.
    Continue,
    /// The node was imported as an expression of other ops; nothing is left to do.
    Done,
}

fn take_attr(n: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name == name)?;
    Some(n.attribute.remove(i))
}

fn set_attr(n: &mut NodeProto, a: AttributeProto) {
    n.attribute.retain(|x| x.name != a.name);
    n.attribute.push(a);
}

fn str_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::STRING),
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::INT),
        i: v,
        ..Default::default()
    }
}

fn attr_str(a: &AttributeProto) -> String {
    String::from_utf8_lossy(&a.s).into_owned()
}

impl Builder {
    /// Rewrites `n` (of the default domain, in a model of default-domain opset `opset`) into
    /// its opset-13 form.
    pub(crate) fn legacy(
        &mut self,
        n: &mut NodeProto,
        opset: i64,
        desc: &str,
    ) -> Result<Legacy, ImportError> {
        let err = |what: String| ImportError::Node(format!("{desc}: {what}"));
        match n.op_type.as_str() {
            "Softmax" | "LogSoftmax" | "Hardmax" if opset < 13 => {
                return self.coerced_softmax(n, desc)
            }
            "Concat" if opset < 4 && !n.attribute.iter().any(|a| a.name == "axis") => {
                n.attribute.push(int_attr("axis", 1));
            }
            "Clip" if opset < 11 => {
                let min = take_attr(n, "min").map(|a| a.f);
                let max = take_attr(n, "max").map(|a| a.f);
                let x = n.input.first().cloned().unwrap_or_default();
                n.input = vec![x];
                if let Some(v) = min {
                    self.const_input(n, 1, "min", Weight::from_f32("", vec![], &[v]))?;
                }
                if let Some(v) = max {
                    self.const_input(n, 2, "max", Weight::from_f32("", vec![], &[v]))?;
                }
            }
            "Pad" if opset < 11 => {
                let pads = take_attr(n, "pads").map(|a| a.ints).unwrap_or_default();
                let value = take_attr(n, "value").map(|a| a.f).unwrap_or(0.0);
                n.input.truncate(1);
                let len = pads.len() as u64;
                self.const_input(n, 1, "pads", Weight::from_i64("", vec![len], &pads))?;
                if value != 0.0 {
                    self.const_input(n, 2, "value", Weight::from_f32("", vec![], &[value]))?;
                }
            }
            "Slice" if opset < 10 => {
                let starts = take_attr(n, "starts").map(|a| a.ints).unwrap_or_default();
                let ends = take_attr(n, "ends").map(|a| a.ints).unwrap_or_default();
                let axes = take_attr(n, "axes").map(|a| a.ints);
                n.input.truncate(1);
                let l = |v: &[i64]| vec![v.len() as u64];
                self.const_input(n, 1, "starts", Weight::from_i64("", l(&starts), &starts))?;
                self.const_input(n, 2, "ends", Weight::from_i64("", l(&ends), &ends))?;
                if let Some(axes) = axes {
                    self.const_input(n, 3, "axes", Weight::from_i64("", l(&axes), &axes))?;
                }
            }
            "TopK" if opset < 10 => {
                let k = take_attr(n, "k").map(|a| a.i).unwrap_or(0);
                n.input.truncate(1);
                self.const_input(n, 1, "k", Weight::from_i64("", vec![1], &[k]))?;
            }
            "Upsample" => self.upsample(n, opset).map_err(err)?,
            "Resize" if opset < 11 => self.upsample(n, opset).map_err(err)?,
            "Dropout" if opset < 12 => {
                take_attr(n, "ratio");
                take_attr(n, "is_test");
            }
            "BatchNormalization" if opset < 9 => {
                if take_attr(n, "spatial").is_some_and(|a| a.i == 0) {
                    return Err(err(
                        "BatchNormalization with spatial=0 (per-element statistics) is not supported"
                            .into(),
                    ));
                }
                take_attr(n, "is_test");
                take_attr(n, "consumed_inputs");
            }
            // Scatter (opsets 9–10) is ScatterElements under its old name.
            "Scatter" => n.op_type = "ScatterElements".into(),
            // Before opset 16 RoiAlign did not shift pixel coordinates by half a pixel.
            "RoiAlign"
                if opset < 16
                    && !n
                        .attribute
                        .iter()
                        .any(|a| a.name == "coordinate_transformation_mode") =>
            {
                n.attribute.push(str_attr(
                    "coordinate_transformation_mode",
                    "output_half_pixel",
                ));
            }
            "Scan" if opset < 9 => {
                return Err(err(
                    "Scan of opset 8 (batched, with sequence_lens) is not supported".into(),
                ))
            }
            _ => {}
        }
        Ok(Legacy::Continue)
    }

    /// Sets input `idx` of `n` to a new constant.
    fn const_input(
        &mut self,
        n: &mut NodeProto,
        idx: usize,
        what: &str,
        w: Result<Weight, compc_ir::WeightError>,
    ) -> Result<(), ImportError> {
        let base = n.output.first().cloned().unwrap_or_default();
        let name = self.fresh_name(&format!("{base}.{what}"));
        let mut w = w.map_err(|e| ImportError::tensor(&name, e.to_string()))?;
        w.name = name.clone();
        if n.input.len() <= idx {
            n.input.resize(idx + 1, String::new());
        }
        n.input[idx] = name.clone();
        self.add_pending(name, w);
        Ok(())
    }

    /// Upsample (any opset) and Resize of opset 10: `(X, scales)` with the input
    /// coordinate `x_out / scale`, nearest neighbours rounded down when enlarging and up when
    /// shrinking (onnxruntime's reading of these ops), become Resize.
    fn upsample(&mut self, n: &mut NodeProto, opset: i64) -> Result<(), String> {
        let mode = take_attr(n, "mode")
            .map(|a| attr_str(&a))
            .unwrap_or_else(|| "nearest".into());
        let mode = match mode.as_str() {
            "nearest" => "nearest",
            "linear" | "bilinear" => "linear",
            other => return Err(format!("mode `{other}` is not supported")),
        };
        let x = n.input.first().cloned().unwrap_or_default();
        let scales_name = if opset < 9 && n.op_type == "Upsample" {
            let scales = take_attr(n, "scales")
                .map(|a| a.floats)
                .ok_or("Upsample needs `scales`")?;
            n.input = vec![x.clone()];
            let w = Weight::from_f32("", vec![scales.len() as u64], &scales);
            self.const_input(n, 1, "scales", w)
                .map_err(|e| e.to_string())?;
            n.input[1].clone()
        } else {
            n.input.get(1).cloned().unwrap_or_default()
        };
        // Upsample only enlarges; Resize-10's rounding depends on the direction, which
        // computed scales do not tell (it only matters for nearest neighbours).
        let scales = match self.const_floats(&scales_name) {
            Some(s) => s,
            None if n.op_type == "Upsample" || mode == "linear" => vec![1.0],
            None => return Err("nearest Resize-10 with computed scales is not supported".into()),
        };
        let nearest = if scales.iter().all(|&s| s >= 1.0) {
            "floor"
        } else if scales.iter().all(|&s| s <= 1.0) {
            "ceil"
        } else {
            return Err("scales that enlarge some axes and shrink others are not supported".into());
        };
        n.op_type = "Resize".into();
        n.input = vec![x, String::new(), scales_name];
        set_attr(n, str_attr("mode", mode));
        set_attr(n, str_attr("coordinate_transformation_mode", "asymmetric"));
        set_attr(n, str_attr("nearest_mode", nearest));
        Ok(())
    }

    /// Softmax, LogSoftmax and Hardmax before opset 13 flatten the input to 2-D at `axis`
    /// (default 1) and normalize each row. With `axis` = -1 that is the opset-13 op;
    /// otherwise it is spelled Flatten, the op over the last axis, and a Reshape back.
    fn coerced_softmax(&mut self, n: &mut NodeProto, desc: &str) -> Result<Legacy, ImportError> {
        let axis = take_attr(n, "axis").map(|a| a.i).unwrap_or(1);
        if axis == -1 {
            n.attribute.push(int_attr("axis", -1));
            return Ok(Legacy::Continue);
        }
        let err = |what: String| ImportError::Node(format!("{desc}: {what}"));
        if let Some(a) = n.attribute.first() {
            return Err(err(format!("has no attribute `{}`", a.name)));
        }
        let (Some(x_name), [out]) = (n.input.first(), n.output.as_slice()) else {
            return Err(err("needs one input and one output".into()));
        };
        let x = self
            .value(x_name)
            .ok_or_else(|| err(format!("input `{x_name}` is not defined")))?;
        let ph = crate::builder::placeholder;
        let flat = self.g.add_node(
            Op::Flatten(Flatten { axis }),
            vec![Some(x)],
            vec![ph()],
            format!("{}/flatten", n.name),
        );
        let last = Axis { axis: -1 };
        let op = match n.op_type.as_str() {
            "Softmax" => Op::Softmax(last),
            "LogSoftmax" => Op::LogSoftmax(last),
            _ => Op::Hardmax(last),
        };
        let norm = self.g.add_node(
            op,
            vec![Some(ValueRef::new(flat, 0))],
            vec![ph()],
            n.name.clone(),
        );
        let shape = self.g.add_node(
            Op::Shape(ShapeOf::default()),
            vec![Some(x)],
            vec![compc_ir::TensorType::unranked(DType::I64)],
            format!("{}/shape", n.name),
        );
        let ty = self.type_of(out);
        let back = self.g.add_node(
            Op::Reshape(Reshape::default()),
            vec![Some(ValueRef::new(norm, 0)), Some(ValueRef::new(shape, 0))],
            vec![ty],
            format!("{}/reshape", n.name),
        );
        self.bind(out.clone(), ValueRef::new(back, 0));
        Ok(Legacy::Done)
    }
}

//! ONNX nodes to IR nodes: (domain, op type) to `Op`, opset differences normalized so the
//! IR has one form (constant `axes`/`split` inputs become attributes), `Constant` nodes to
//! pending weights, anything unknown kept verbatim as `Op::Custom`.

use crate::attrs;
use crate::builder::Builder;
use crate::error::ImportError;
use crate::legacy::Legacy;
use crate::sort::describe;
use crate::tensor;
use compc_ir::op::{CustomOp, MS_DOMAIN};
use compc_ir::{Attr, Attrs, Op, Weight};
use onnx_protobuf::NodeProto;

/// The text name of compc's op for an ONNX op, including the pre-opset-23 contrib
/// spelling of RMS normalization.
fn text_name(domain: &str, op_type: &str) -> Option<&'static str> {
    if op_type == "SimplifiedLayerNormalization" && (domain.is_empty() || domain == MS_DOMAIN) {
        return Some("rms_normalization");
    }
    Op::name_for_onnx(domain, op_type)
}

/// For ops that take their axes (or split sizes) as an input since opset 13/18: which input
/// and which attribute.
fn moved_input(text: &str) -> Option<(usize, &'static str)> {
    match text {
        "squeeze" | "unsqueeze" => Some((1, "axes")),
        "split" => Some((1, "split")),
        t if t.starts_with("reduce_") => Some((1, "axes")),
        _ => None,
    }
}

impl Builder {
    pub fn add_node(&mut self, n: &mut NodeProto, index: usize) -> Result<(), ImportError> {
        let desc = describe(n, index);
        let node_err = |what: String| ImportError::Node(format!("{desc}: {what}"));
        let domain = if n.domain == "ai.onnx" {
            String::new()
        } else {
            n.domain.clone()
        };
        if attrs::has_subgraph(n) {
            if domain.is_empty() && self.opset < 16 {
                if let Legacy::Done = self.legacy(n, self.opset, &desc)? {
                    return Ok(());
                }
            }
            return self.control_flow(n, &domain, &desc);
        }
        let extra_attrs = if domain.is_empty() && n.op_type == "Optional" {
            Builder::optional_type_attr(n).map_err(node_err)?
        } else {
            Vec::new()
        };
        if self
            .functions
            .contains(&(domain.clone(), n.op_type.clone()))
        {
            return Err(node_err(
                "it calls a model-local function; functions are not supported yet".into(),
            ));
        }
        if domain.is_empty() && n.op_type == "Constant" {
            return self.constant(n, &desc);
        }
        if domain.is_empty() && self.opset < 16 {
            if let Legacy::Done = self.legacy(n, self.opset, &desc)? {
                return Ok(());
            }
        }

        let text = text_name(&domain, &n.op_type);
        let mut attrs =
            attrs::convert_all(n, &domain, text.is_some(), &mut self.ext).map_err(node_err)?;
        attrs.extend(extra_attrs);
        let mut inputs = std::mem::take(&mut n.input);
        let op = match text {
            Some(text) => {
                if let Some((idx, attr)) = moved_input(text) {
                    self.move_to_attr(&mut attrs, &mut inputs, idx, attr, text)
                        .map_err(node_err)?;
                }
                Op::from_name(text, attrs).map_err(node_err)?
            }
            None => Op::Custom(CustomOp {
                domain,
                op_type: n.op_type.clone(),
                attrs,
            }),
        };

        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        let mut refs = Vec::with_capacity(inputs.len());
        for name in &inputs {
            if name.is_empty() {
                refs.push(None);
                continue;
            }
            let v = self
                .value(name)
                .ok_or_else(|| node_err(format!("input `{name}` is not defined")))?;
            refs.push(Some(v));
        }

        let outputs = std::mem::take(&mut n.output);
        self.add_node_binding(op, refs, outputs, n.name.clone());
        Ok(())
    }

    /// Moves a constant `axes`/`split` input into the attribute of the same name. A
    /// computed one stays an input.
    fn move_to_attr(
        &self,
        attrs: &mut Attrs,
        inputs: &mut [String],
        idx: usize,
        attr: &str,
        text: &str,
    ) -> Result<(), String> {
        let Some(name) = inputs.get(idx).filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        if attrs.contains_key(attr) {
            return Err(format!(
                "`{attr}` is given both as an attribute and as input `{name}`"
            ));
        }
        let Some(values) = self.const_ints(name) else {
            return Ok(());
        };
        let values = values.map_err(|e| format!("input `{name}`: {e}"))?;
        // An empty list means "not given" for squeeze, split and reductions; unsqueeze
        // has no such default, so its empty list is kept.
        if !values.is_empty() || text == "unsqueeze" {
            attrs.insert(attr.to_string(), Attr::Ints(values));
        }
        inputs[idx].clear();
        Ok(())
    }

    /// `Constant` nodes become weights named by their output, created when first read.
    fn constant(&mut self, n: &mut NodeProto, desc: &str) -> Result<(), ImportError> {
        let node_err = |what: String| ImportError::Node(format!("{desc}: {what}"));
        let out = match n.output.as_slice() {
            [o] if !o.is_empty() => o.clone(),
            _ => {
                return Err(node_err(
                    "a Constant node must have exactly one output".into(),
                ))
            }
        };
        let [a] = n.attribute.as_mut_slice() else {
            return Err(node_err(format!(
                "a Constant node needs exactly one value attribute, found {}",
                n.attribute.len()
            )));
        };
        let weight = match a.name.as_str() {
            "value" => {
                let t =
                    a.t.as_mut()
                        .ok_or_else(|| node_err("attribute `value` holds no tensor".into()))?;
                Ok(tensor::weight(t, &out, &mut self.ext)?)
            }
            "value_float" => Weight::from_f32(out.clone(), vec![], &[a.f]),
            "value_floats" => Weight::from_f32(out.clone(), vec![a.floats.len() as u64], &a.floats),
            "value_int" => Weight::from_i64(out.clone(), vec![], &[a.i]),
            "value_ints" => Weight::from_i64(out.clone(), vec![a.ints.len() as u64], &a.ints),
            "value_string" | "value_strings" => {
                return Err(node_err("string constants are not supported".into()))
            }
            "sparse_value" => return Err(node_err("sparse constants are not supported".into())),
            other => return Err(node_err(format!("unknown Constant attribute `{other}`"))),
        }
        .map_err(|e| node_err(e.to_string()))?;
        self.add_pending(out, weight);
        Ok(())
    }
}

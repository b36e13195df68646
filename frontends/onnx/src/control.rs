//! Control flow (If, Loop, Scan, SequenceMap): each body `GraphProto` becomes a
//! [`Subgraph`]. ONNX bodies read enclosing values by name; those names ("captures") are
//! found here, resolved in the enclosing graph and passed as extra node inputs, with one
//! extra body input each (see `compc_ir::op::control`). Also the `type` attribute of
//! `Optional`.

use crate::builder::Builder;
use crate::error::ImportError;
use compc_ir::op::{IfOp, LoopOp, ScanOp, SequenceMapOp, Subgraph};
use compc_ir::{Attr, DType, Graph, Op};
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::{GraphProto, NodeProto};
use std::collections::HashSet;

/// Names a graph reads that it does not define (recursively through nested bodies), in
/// order of first use.
pub fn free_names(gp: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(gp.input.iter().map(|v| v.name.as_str()));
    defined.extend(gp.initializer.iter().map(|t| t.name.as_str()));
    for n in &gp.node {
        defined.extend(n.output.iter().map(String::as_str));
    }
    let mut out: Vec<String> = Vec::new();
    let push = |name: &str, out: &mut Vec<String>| {
        if !name.is_empty() && !defined.contains(name) && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    };
    for n in &gp.node {
        for i in &n.input {
            push(i, &mut out);
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(a.graphs.iter()) {
                for name in free_names(g) {
                    push(&name, &mut out);
                }
            }
        }
    }
    for o in &gp.output {
        push(&o.name, &mut out);
    }
    out
}

impl Builder {
    /// Imports a node with body attributes.
    pub(crate) fn control_flow(
        &mut self,
        n: &mut NodeProto,
        domain: &str,
        desc: &str,
    ) -> Result<(), ImportError> {
        let err = |what: String| ImportError::Node(format!("{desc}: {what}"));
        let text = Op::name_for_onnx(domain, &n.op_type).unwrap_or("");
        if !matches!(text, "if" | "loop" | "scan" | "sequence_map") {
            return Err(err(format!(
                "`{}` has a subgraph, and compc has no such control-flow op",
                n.op_type
            )));
        }
        let mut bodies: Vec<(String, GraphProto)> = Vec::new();
        let mut rest = Vec::with_capacity(n.attribute.len());
        for mut a in std::mem::take(&mut n.attribute) {
            if let Some(g) = a.g.take() {
                bodies.push((a.name.clone(), g));
            } else if !a.graphs.is_empty() {
                return Err(err(format!(
                    "attribute `{}` holds a list of graphs; that is not supported",
                    a.name
                )));
            } else {
                rest.push(a);
            }
        }
        n.attribute = rest;
        let mut captures: Vec<String> = Vec::new();
        for (_, g) in &bodies {
            for name in free_names(g) {
                if !captures.contains(&name) {
                    captures.push(name);
                }
            }
        }
        let mut cap_values = Vec::with_capacity(captures.len());
        for c in &captures {
            let v = self.value(c).ok_or_else(|| {
                err(format!(
                    "a body reads `{c}`, which no enclosing graph defines"
                ))
            })?;
            cap_values.push(v);
        }
        let attrs = crate::attrs::convert_all(n, domain, true, &mut self.ext).map_err(err)?;
        let mut graphs: Vec<(String, Graph)> = Vec::with_capacity(bodies.len());
        for (name, g) in bodies {
            let body = self
                .subgraph(g, &captures)
                .map_err(|e| err(format!("body `{name}`: {e}")))?;
            graphs.push((name, body));
        }
        let mut take = |name: &str| -> Result<Subgraph, ImportError> {
            let i = graphs
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| err(format!("needs the body attribute `{name}`")))?;
            Ok(Subgraph::new(graphs.remove(i).1))
        };
        let c = captures.len() as i64;
        let op = match text {
            "if" => {
                if let Some(k) = attrs.keys().next() {
                    return Err(err(format!("has no attribute `{k}`")));
                }
                Op::If(IfOp {
                    then_branch: take("then_branch")?,
                    else_branch: take("else_branch")?,
                })
            }
            "loop" => {
                if let Some(k) = attrs.keys().next() {
                    return Err(err(format!("has no attribute `{k}`")));
                }
                Op::Loop(LoopOp {
                    body: take("body")?,
                    captures: c,
                })
            }
            "scan" => {
                let mut s = ScanOp::from_attrs("scan", attrs).map_err(err)?;
                s.body = take("body")?;
                s.captures = c;
                Op::Scan(s)
            }
            _ => {
                if let Some(k) = attrs.keys().next() {
                    return Err(err(format!("has no attribute `{k}`")));
                }
                Op::SequenceMap(SequenceMapOp {
                    body: take("body")?,
                    captures: c,
                })
            }
        };
        if let Some((name, _)) = graphs.first() {
            return Err(err(format!("has an unknown body attribute `{name}`")));
        }
        // Declared inputs keep their positions (Loop's M and cond may be omitted).
        let mut refs = Vec::with_capacity(n.input.len() + cap_values.len());
        for name in &n.input {
            if name.is_empty() {
                refs.push(None);
                continue;
            }
            let v = self
                .value(name)
                .ok_or_else(|| err(format!("input `{name}` is not defined")))?;
            refs.push(Some(v));
        }
        if text == "loop" && refs.len() < 2 {
            refs.resize(2, None);
        }
        refs.extend(cap_values.into_iter().map(Some));
        let outputs = std::mem::take(&mut n.output);
        self.add_node_binding(op, refs, outputs, n.name.clone());
        Ok(())
    }

    /// Builds a body graph whose inputs are its declared ones, then one per capture.
    fn subgraph(&mut self, gp: GraphProto, captures: &[String]) -> Result<Graph, ImportError> {
        let mut b = Builder::new(&gp.name, self.ext.child(), self.functions.clone());
        b.opset = self.opset;
        b.subgraph = true;
        b.captures = captures.to_vec();
        b.build(gp, self.ir_version)?;
        Ok(b.g)
    }

    /// `Optional`'s `type` attribute (a TypeProto) as `elem_type` and `of_sequence`.
    pub(crate) fn optional_type_attr(n: &mut NodeProto) -> Result<Vec<(String, Attr)>, String> {
        let Some(i) = n.attribute.iter().position(|a| a.name == "type") else {
            return Ok(vec![]);
        };
        let a = n.attribute.remove(i);
        let Some(tp) = a.tp.as_ref() else {
            return Err("attribute `type` holds no type".into());
        };
        let (of_sequence, t) = match &tp.value {
            Some(TypeValue::TensorType(t)) => (false, t),
            Some(TypeValue::SequenceType(s)) => match s.elem_type.as_ref().map(|e| &e.value) {
                Some(Some(TypeValue::TensorType(t))) => (true, t),
                _ => return Err("optionals of sequences of non-tensors are not supported".into()),
            },
            _ => return Err("optionals of this type are not supported".into()),
        };
        let d: DType = crate::types::dtype_or_err(i64::from(t.elem_type))?;
        Ok(vec![
            ("elem_type".into(), Attr::Type(d)),
            ("of_sequence".into(), Attr::Int(of_sequence as i64)),
        ])
    }
}

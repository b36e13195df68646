//! The printer. Output is canonical: nodes in `Graph::topo_order`, values renumbered from
//! `%0`, attributes sorted, so equal graphs print equal text whatever their node ids.

use super::literal::{dense_body, fmt_f32};
use super::{name_text, quote};
use crate::attr::{Attr, Literal};
use crate::graph::{Graph, Node, NodeId, ValueRef};
use crate::op::Op;
use crate::shape::TensorType;
use crate::weights::Weight;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Weights with at most this many elements are printed inline as `value = dense<[...]>`.
pub(crate) const INLINE_MAX_ELEMENTS: u64 = 16;

/// Prints `g` in the text format. Never fails: a graph with a cycle is printed in node-id
/// order after an `// error:` comment, so it can still be looked at (parsing it fails).
pub fn print(g: &Graph) -> String {
    let mut out = String::new();
    let order = match g.topo_order() {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(out, "// error: {e}");
            g.node_ids().collect()
        }
    };
    let inputs: HashSet<NodeId> = g.inputs().iter().copied().collect();
    let mut names: HashMap<NodeId, String> = HashMap::new();
    for &id in g.inputs() {
        names.insert(id, format!("%{}", name_text(&g.node(id).name)));
    }
    let mut next = 0usize;
    for &id in &order {
        if !inputs.contains(&id) && !g.node(id).outputs.is_empty() {
            names.insert(id, format!("%{next}"));
            next += 1;
        }
    }
    let p = Printer { g, names };
    p.header(&mut out);
    for &id in &order {
        if !inputs.contains(&id) {
            p.node(&mut out, id);
        }
    }
    let rets: Vec<String> = g.outputs.iter().map(|o| p.value(o.value)).collect();
    if rets.is_empty() {
        out.push_str("  return\n");
    } else {
        let _ = writeln!(out, "  return {}", rets.join(", "));
    }
    out.push_str("}\n");
    out
}

struct Printer<'g> {
    g: &'g Graph,
    /// The printed name of each node's value(s), `%` included.
    names: HashMap<NodeId, String>,
}

fn type_or_none(t: Option<&TensorType>) -> String {
    t.map_or_else(|| "none".to_string(), |t| t.to_string())
}

impl Printer<'_> {
    fn header(&self, out: &mut String) {
        let g = self.g;
        let args: Vec<String> = g
            .inputs()
            .iter()
            .map(|&id| {
                let node = g.node(id);
                format!(
                    "{}: {}",
                    self.names[&id],
                    type_or_none(node.outputs.first())
                )
            })
            .collect();
        let outs: Vec<String> = g
            .outputs
            .iter()
            .map(|o| {
                format!(
                    "{}: {}",
                    name_text(&o.name),
                    type_or_none(g.value_type(o.value))
                )
            })
            .collect();
        let _ = write!(
            out,
            "graph @{}({}) -> ({})",
            name_text(&g.name),
            args.join(", "),
            outs.join(", ")
        );
        if !g.opsets.is_empty() {
            let sets: Vec<String> = g
                .opsets
                .iter()
                .map(|(d, v)| format!("{} = {v}", quote(d)))
                .collect();
            let _ = write!(out, " opsets {{{}}}", sets.join(", "));
        }
        out.push_str(" {\n");
    }

    /// `%k` for a single-output node, `%k#i` for one output of a multi-output node.
    fn value(&self, v: ValueRef) -> String {
        let Some(base) = self.names.get(&v.node) else {
            // Only a broken graph gets here; the text names the dangling id so it is visible.
            return format!("%{}", quote(&format!("<dangling {}>", v.node)));
        };
        let multi = self.g.contains(v.node) && self.g.node(v.node).outputs.len() > 1;
        if multi || v.slot != 0 {
            format!("{base}#{}", v.slot)
        } else {
            base.clone()
        }
    }

    fn node(&self, out: &mut String, id: NodeId) {
        let node = self.g.node(id);
        out.push_str("  ");
        match (self.names.get(&id), node.outputs.len()) {
            (None, _) | (_, 0) => {}
            (Some(n), 1) => {
                let _ = write!(out, "{n} = ");
            }
            (Some(n), k) => {
                let _ = write!(out, "{n}:{k} = ");
            }
        }
        let operands: Vec<String> = node
            .inputs()
            .iter()
            .map(|v| v.map_or_else(|| "_".to_string(), |v| self.value(v)))
            .collect();
        let _ = write!(
            out,
            "{}({})",
            quote(&node.op.text_name()),
            operands.join(", ")
        );
        let (attrs, weight_name) = self.attrs_of(node);
        if !attrs.is_empty() {
            let _ = write!(out, " {{{}}}", attrs.join(", "));
        }
        let in_types: Vec<String> = node
            .inputs()
            .iter()
            .map(|v| type_or_none(v.and_then(|v| self.g.value_type(v))))
            .collect();
        let _ = write!(out, " : ({}) -> ", in_types.join(", "));
        if node.outputs.len() == 1 {
            let _ = write!(out, "{}", node.outputs[0]);
        } else {
            let outs: Vec<String> = node.outputs.iter().map(|t| t.to_string()).collect();
            let _ = write!(out, "({})", outs.join(", "));
        }
        // A const's name is usually its weight's (that is what `add_const` does), and the
        // parser restores it from the weight, so only a different name is printed.
        if !node.name.is_empty() && weight_name != Some(node.name.as_str()) {
            let _ = write!(out, " loc({})", quote(&node.name));
        }
        out.push('\n');
    }

    /// The attribute list, and for a const the name of its weight.
    fn attrs_of<'n>(&'n self, node: &'n Node) -> (Vec<String>, Option<&'n str>) {
        let Op::Const(wid) = node.op else {
            let attrs = node
                .op
                .attrs()
                .iter()
                .map(|(k, v)| format!("{} = {}", name_text(k), attr_text(v)))
                .collect();
            return (attrs, None);
        };
        let Some(w) = self.g.weights.try_get(wid) else {
            return (vec![format!("dangling_weight = {}", wid.0)], None);
        };
        if let Some(body) = inline_body(w, node) {
            return (vec![format!("value = dense<{body}>")], Some(&w.name));
        }
        let attrs = vec![
            format!("sha = \"{:016x}\"", w.content_hash()),
            format!("weight = @{}", name_text(&w.name)),
        ];
        (attrs, Some(&w.name))
    }
}

/// The `dense<...>` body for a weight small enough to print inline. The node's type must be
/// the weight's own, because the parser rebuilds the weight from that type.
fn inline_body(w: &Weight, node: &Node) -> Option<String> {
    let numel = w.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
    if numel > INLINE_MAX_ELEMENTS || w.dtype == crate::DType::Str || w.is_missing() {
        return None;
    }
    if node.outputs.len() != 1 || node.outputs[0] != TensorType::known(w.dtype, &w.dims) {
        return None;
    }
    let bytes = w.bytes().ok()?;
    Some(dense_body(w.dtype, bytes, Some(numel)))
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let v: Vec<String> = items.iter().map(f).collect();
    format!("[{}]", v.join(", "))
}

pub(crate) fn attr_text(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => fmt_f32(*v),
        Attr::Str(s) => quote(s),
        Attr::Ints(v) => list(v, |x| x.to_string()),
        Attr::Floats(v) => list(v, |x| fmt_f32(*x)),
        Attr::Strs(v) => list(v, |s| quote(s)),
        Attr::Type(d) => d.name().to_string(),
        Attr::Tensor(lit) => literal_text(lit),
    }
}

fn literal_text(lit: &Literal) -> String {
    let numel = lit.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    format!(
        "dense<{}> : {}",
        dense_body(lit.dtype, &lit.bytes, numel),
        TensorType::known(lit.dtype, &lit.dims)
    )
}

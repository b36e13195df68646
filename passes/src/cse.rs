//! `cse`: common-subexpression elimination. Two pure nodes with the same op, attributes
//! and inputs compute the same values, so later readers can use the first one; constants
//! with identical contents are shared the same way.

use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::{Graph, NodeId, Op, ValueRef};
use std::collections::HashMap;

pub struct Cse;

/// The identity of a computation. Ops are compared through their `Debug` form, which
/// spells out the variant and every attribute exactly (floats included, bit for bit in
/// practice since `Debug` for f32 round-trips).
fn key(g: &Graph, id: NodeId) -> Option<String> {
    let node = g.node(id);
    match &node.op {
        Op::Input => None,
        Op::Const(w) => {
            let w = g.weights.get(*w);
            if w.is_missing() {
                return None;
            }
            Some(format!(
                "const {:?} {:?} {:016x} {}",
                w.dtype,
                w.dims,
                w.content_hash(),
                w.byte_len()
            ))
        }
        op if op.is_pure() => Some(format!("{op:?} {:?} {}", node.inputs(), node.outputs.len())),
        _ => None,
    }
}

/// Equal content hash is not proof: confirm constants byte for byte.
fn same_constant(g: &Graph, a: NodeId, b: NodeId) -> bool {
    match (&g.node(a).op, &g.node(b).op) {
        (Op::Const(x), Op::Const(y)) => {
            x == y
                || matches!(
                    (g.weights.get(*x).bytes(), g.weights.get(*y).bytes()),
                    (Ok(p), Ok(q)) if p == q
                )
        }
        _ => true,
    }
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let mut seen: HashMap<String, NodeId> = HashMap::new();
        let mut merged = 0;
        // Topological order: by the time a node is keyed, its inputs already point at the
        // surviving copies, so chains of duplicates collapse in one walk.
        for id in g.topo_order()? {
            let Some(k) = key(g, id) else { continue };
            match seen.get(&k) {
                Some(&first) if same_constant(g, first, id) => {
                    for slot in 0..g.node(id).outputs.len() as u32 {
                        g.replace_all_uses(ValueRef::new(id, slot), ValueRef::new(first, slot));
                    }
                    merged += 1;
                }
                Some(_) => {}
                None => {
                    seen.insert(k, id);
                }
            }
        }
        let removed = remove_dead_nodes(g)?;
        cx.touch(merged);
        if merged > 0 {
            cx.note(format!(
                "merged {merged} duplicate nodes ({removed} removed)"
            ));
        }
        Ok(Changed::from_bool(merged > 0))
    }
}

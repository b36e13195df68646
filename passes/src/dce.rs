//! `dce`: removes nodes whose results nothing reads. Graph inputs stay (they are the
//! model's interface) and custom ops stay (compc cannot know they are side-effect free).

use crate::context::PassContext;
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::{Graph, Op, ValueRef};

pub struct Dce;

/// Removes every dead pure node; returns how many were removed. Walking the topological
/// order backwards removes whole dead chains in one sweep.
pub fn remove_dead_nodes(g: &mut Graph) -> Result<usize, PassError> {
    let order = g.topo_order()?;
    let mut removed = 0;
    for id in order.into_iter().rev() {
        let node = g.node(id);
        if matches!(node.op, Op::Input) || !node.op.is_pure() {
            continue;
        }
        let live = (0..node.outputs.len()).any(|s| g.is_used(ValueRef::new(id, s as u32)));
        if !live {
            g.remove_node(id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let removed = remove_dead_nodes(g)?;
        cx.touch(removed);
        if removed > 0 {
            cx.note(format!("removed {removed} dead nodes"));
        }
        Ok(Changed::from_bool(removed > 0))
    }
}

//! Constants a pass wrote with identical contents are stored once. A pass that rewrites
//! weights one reader at a time (`rotate` folds its rotation into every linear) makes one
//! copy per reader of a weight that several layers share (`share-layers`); when the copies
//! come out byte-identical, the readers go back to reading one constant.

use crate::pass::PassError;
use compc_ir::{DType, Graph, NodeId, Op, ValueRef};
use std::collections::{HashMap, HashSet};

/// The graph's constant nodes: take it before a pass writes, for [`merge_new`].
pub fn constants(g: &Graph) -> HashSet<NodeId> {
    g.node_ids()
        .filter(|&id| matches!(g.node(id).op, Op::Const(_)))
        .collect()
}

/// Makes the readers of every constant not in `before` whose element type, dims and bytes
/// equal an earlier one's read that one instead, and removes the copy. Constants that
/// were there before the pass are left alone. Returns how many copies were merged.
pub fn merge_new(g: &mut Graph, before: &HashSet<NodeId>) -> Result<usize, PassError> {
    let mut new: Vec<NodeId> = constants(g).difference(before).copied().collect();
    new.sort_by_key(|id| id.index());
    // Candidates first by type, dims and length, then compared byte for byte.
    let mut groups: HashMap<(DType, Vec<u64>, u64), Vec<NodeId>> = HashMap::new();
    for id in new {
        let Op::Const(wid) = g.node(id).op else {
            continue;
        };
        let w = g.weights.get(wid);
        let key = (w.dtype, w.dims.clone(), w.byte_len());
        groups.entry(key).or_default().push(id);
    }
    let mut merged = 0;
    for ids in groups.into_values().filter(|v| v.len() > 1) {
        let mut kept: Vec<NodeId> = Vec::new();
        for id in ids {
            let same = kept
                .iter()
                .copied()
                .find(|&k| same_bytes(g, k, id).unwrap_or(false));
            match same {
                Some(k) => {
                    g.replace_all_uses(ValueRef::new(id, 0), ValueRef::new(k, 0));
                    g.remove_node(id)?;
                    merged += 1;
                }
                None => kept.push(id),
            }
        }
    }
    Ok(merged)
}

fn same_bytes(g: &Graph, a: NodeId, b: NodeId) -> Option<bool> {
    let (Op::Const(wa), Op::Const(wb)) = (&g.node(a).op, &g.node(b).op) else {
        return Some(false);
    };
    let (x, y) = (g.weights.get(*wa), g.weights.get(*wb));
    Some(x.bytes().ok()? == y.bytes().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use compc_ir::{DType, Dim, GraphOutput, Shape, TensorType, Weight};

    fn konst(g: &mut Graph, name: &str, v: &[f32]) -> NodeId {
        g.add_const(Weight::from_f32(name, vec![v.len() as u64], v).unwrap())
    }

    #[test]
    fn identical_new_constants_merge_and_older_ones_stay() {
        let mut g = Graph::new("g");
        let ty = TensorType::new(DType::F32, Shape::Ranked(vec![Dim::Known(2)]));
        let x = g.add_input("x", ty.clone());
        let old = konst(&mut g, "old", &[1.0, 2.0]);
        let before = constants(&g);
        let a = konst(&mut g, "a", &[1.0, 2.0]);
        let b = konst(&mut g, "b", &[1.0, 2.0]);
        let c = konst(&mut g, "c", &[1.0, 3.0]);
        let mut last = ValueRef::new(x, 0);
        for k in [old, a, b, c] {
            let n = g.add_node(
                Op::Binary(compc_ir::op::BinaryOp::Add),
                vec![Some(last), Some(ValueRef::new(k, 0))],
                vec![ty.clone()],
                "add",
            );
            last = ValueRef::new(n, 0);
        }
        g.outputs.push(GraphOutput {
            name: "y".into(),
            value: last,
        });
        assert_eq!(merge_new(&mut g, &before).unwrap(), 1);
        let after = constants(&g);
        // `b` went (its reader now reads `a`); `old` equals them but was there before.
        assert!(after.contains(&old) && after.contains(&a) && after.contains(&c));
        assert!(!after.contains(&b));
        assert_eq!(after.len(), 3);
    }
}

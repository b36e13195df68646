//! Block-sequential order (techniques.md §0, GPTQ's "true-sequential"): layers reading
//! the same value form one stage (q/k/v, then o, then gate/up, then down); stages run in
//! topological order, each calibrated on a graph whose earlier stages are already
//! compressed. After a transformer block is finished the runner's cut moves to the
//! block's output stream, so later stages start from cached tensors instead of
//! recomputing the model from its inputs.

use crate::idioms::Idioms;
use compc_ir::{Graph, GraphError, NodeId, ValueRef};
use std::collections::{BTreeSet, HashMap};

/// Items (e.g. linear layers) reading one value, processed together.
#[derive(Clone, Debug)]
pub struct Stage {
    pub input: ValueRef,
    /// Indices into the caller's item list.
    pub members: Vec<usize>,
}

pub struct Sequencer {
    pos: HashMap<NodeId, usize>,
    /// Output streams of transformer blocks with their topological positions, in order.
    block_outs: Vec<(usize, ValueRef)>,
    /// Position of every item's node.
    item_pos: Vec<usize>,
    done: BTreeSet<usize>,
    cut_pos: Option<usize>,
}

impl Sequencer {
    /// `items`: (node, the value it reads) for every item, e.g. every layer to compress.
    pub fn new(
        g: &Graph,
        idioms: &Idioms,
        items: &[(NodeId, ValueRef)],
    ) -> Result<Self, GraphError> {
        let order = g.topo_order()?;
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut block_outs: Vec<(usize, ValueRef)> = idioms
            .blocks
            .iter()
            .filter_map(|b| b.residuals.last())
            .filter_map(|&ri| idioms.residuals.get(ri))
            .map(|r| ValueRef::new(r.add, 0))
            .filter_map(|v| pos.get(&v.node).map(|&p| (p, v)))
            .collect();
        block_outs.sort();
        let item_pos = items
            .iter()
            .map(|(n, _)| pos.get(n).copied().unwrap_or(usize::MAX))
            .collect();
        Ok(Sequencer {
            pos,
            block_outs,
            item_pos,
            done: BTreeSet::new(),
            cut_pos: None,
        })
    }

    /// Stages: items grouped by the value they read, ordered by their first node.
    pub fn stages(&self, items: &[(NodeId, ValueRef)]) -> Vec<Stage> {
        let mut by_input: Vec<Stage> = Vec::new();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| self.item_pos[i]);
        for i in order {
            let v = items[i].1;
            match by_input.iter_mut().find(|s| s.input == v) {
                Some(s) => s.members.push(i),
                None => by_input.push(Stage {
                    input: v,
                    members: vec![i],
                }),
            }
        }
        by_input.sort_by_key(|s| s.members.iter().map(|&m| self.item_pos[m]).min());
        by_input
    }

    /// The block output to move the cut to before running `stage`: the latest one that
    /// comes before all of the stage's nodes, after the current cut, with every item
    /// before it already done.
    pub fn advance_for(&self, stage: &Stage) -> Option<ValueRef> {
        let first = stage.members.iter().map(|&m| self.item_pos[m]).min()?;
        let mut best = None;
        for &(p, v) in &self.block_outs {
            if p >= first || self.cut_pos.is_some_and(|c| p <= c) {
                continue;
            }
            let pending = self
                .item_pos
                .iter()
                .enumerate()
                .any(|(i, &ip)| ip < p && !self.done.contains(&i));
            if !pending {
                best = Some(v);
            }
        }
        best
    }

    /// Records that the runner's cut moved to `v`.
    pub fn cut_moved(&mut self, v: ValueRef) {
        self.cut_pos = self.pos.get(&v.node).copied();
    }

    pub fn finish(&mut self, stage: &Stage) {
        self.done.extend(stage.members.iter().copied());
    }

    /// Number of transformer blocks found.
    pub fn blocks(&self) -> usize {
        self.block_outs.len()
    }

    /// Index of the block a stage belongs to (the number of block outputs before it).
    pub fn block_of(&self, stage: &Stage) -> usize {
        let first = stage
            .members
            .iter()
            .map(|&m| self.item_pos[m])
            .min()
            .unwrap_or(0);
        self.block_outs.iter().filter(|(p, _)| *p < first).count()
    }
}

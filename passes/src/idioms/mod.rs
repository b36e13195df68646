//! Idiom detection: the structure compression passes need (which MatMuls are linear
//! layers, which of those are q/k/v/o, where norms and MLPs are, how blocks are wired),
//! found from the graph alone — never from tensor names — and kept in a side table.

pub mod attention;
pub mod linear;
pub mod matcher;
pub mod mlp;
pub mod norm;

pub use attention::Attention;
pub use linear::{Chain, Linear, LinearKind};
pub use mlp::Mlp;
pub use norm::{Norm, NormKind};

use compc_ir::op::BinaryOp;
use compc_ir::{Graph, GraphError, NodeId, Op, ValueRef};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchKind {
    Attention,
    Mlp,
    /// Another branch ending in a linear layer (e.g. a CNN's conv branch).
    Linear,
}

/// `stream + branch`: a residual connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Residual {
    pub add: NodeId,
    pub stream: ValueRef,
    pub branch: ValueRef,
    pub kind: BranchKind,
}

/// A transformer block: attention and MLP with their residual adds and the norms reading
/// the stream before each.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub attention: Option<usize>,
    pub mlp: Option<usize>,
    /// Residual indices, in order.
    pub residuals: Vec<usize>,
    /// Norm indices whose outputs feed this block's branches.
    pub norms: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct Idioms {
    pub linears: Vec<Linear>,
    pub norms: Vec<Norm>,
    pub attention: Vec<Attention>,
    pub mlps: Vec<Mlp>,
    pub residuals: Vec<Residual>,
    pub blocks: Vec<Block>,
    /// Linear-index pairs `(a, b, why)` where `a` feeds `b` directly: one layer factored
    /// by `low-rank` (`x·A·B`), or a layer read through `rotate`'s online Hadamard. They
    /// hide the MLP or attention the layer was part of.
    pub chained: Vec<(usize, usize, Chain)>,
    /// Linear indices of layers reading an online `Hadamard` node (what `rotate` puts in
    /// front of the down projections; exported, it becomes the square MatMul of
    /// [`Chain::Square`]).
    pub hadamard_readers: Vec<usize>,
}

impl Idioms {
    pub fn find(g: &Graph) -> Result<Idioms, GraphError> {
        let order = g.topo_order()?;
        let linears = linear::find_linears(g, &order);
        let norms = norm::find_norms(g, &order);
        let attention = attention::find_attention(g, &order, &linears);
        let o_projs: BTreeSet<usize> = attention.iter().filter_map(|a| a.o).collect();
        let mlps = mlp::find_mlps(g, &linears, &o_projs);
        let mut idioms = Idioms {
            linears,
            norms,
            attention,
            mlps,
            ..Default::default()
        };
        idioms.residuals = idioms.find_residuals(g, &order);
        idioms.blocks = idioms.find_blocks(g);
        idioms.chained = linear::chained_pairs(g, &idioms.linears);
        idioms.hadamard_readers = (0..idioms.linears.len())
            .filter(|&i| {
                let x = idioms.linears[i].input;
                matches!(g.node(x.node).op, Op::Hadamard(_))
            })
            .collect();
        Ok(idioms)
    }

    fn find_residuals(&self, g: &Graph, order: &[NodeId]) -> Vec<Residual> {
        let mut branch_of: HashMap<ValueRef, BranchKind> = HashMap::new();
        for l in &self.linears {
            branch_of.insert(l.output, BranchKind::Linear);
        }
        for m in &self.mlps {
            branch_of.insert(self.linears[m.down].output, BranchKind::Mlp);
        }
        for a in &self.attention {
            if let Some(o) = a.o {
                branch_of.insert(self.linears[o].output, BranchKind::Attention);
            }
        }
        let mut out = Vec::new();
        for &id in order {
            let node = g.node(id);
            if node.op != Op::Binary(BinaryOp::Add) {
                continue;
            }
            let (Some(a), Some(b)) = (node.input(0), node.input(1)) else {
                continue;
            };
            if g.const_weight(a).is_some() || g.const_weight(b).is_some() {
                continue;
            }
            let (ka, kb) = (branch_of.get(&a), branch_of.get(&b));
            let (stream, branch, kind) = match (ka, kb) {
                (None, Some(k)) => (a, b, *k),
                (Some(k), None) => (b, a, *k),
                // Both are linear outputs: the later-computed one is the branch.
                (Some(_), Some(k)) if b.node > a.node => (a, b, *k),
                (Some(k), Some(_)) => (b, a, *k),
                (None, None) => continue,
            };
            // Bias adds were already folded into the linear; a residual mixes two
            // same-shaped activations.
            if g.value_type(stream).map(|t| &t.shape) != g.value_type(branch).map(|t| &t.shape) {
                continue;
            }
            out.push(Residual {
                add: id,
                stream,
                branch,
                kind,
            });
        }
        out
    }

    fn find_blocks(&self, g: &Graph) -> Vec<Block> {
        let norm_out: HashMap<ValueRef, usize> = self
            .norms
            .iter()
            .enumerate()
            .map(|(i, n)| (n.output, i))
            .collect();
        let mut blocks = Vec::new();
        for (ri, r) in self.residuals.iter().enumerate() {
            if r.kind != BranchKind::Attention {
                continue;
            }
            let Some(ai) = self
                .attention
                .iter()
                .position(|a| a.o.is_some_and(|o| self.linears[o].output == r.branch))
            else {
                continue;
            };
            let mut block = Block {
                attention: Some(ai),
                mlp: None,
                residuals: vec![ri],
                norms: vec![],
            };
            let a = &self.attention[ai];
            if let Some(&n) = norm_out.get(&self.linears[a.q].input) {
                block.norms.push(n);
            }
            // The MLP residual that continues this block's stream.
            let after = ValueRef::new(r.add, 0);
            if let Some((mi, m)) = self
                .residuals
                .iter()
                .enumerate()
                .find(|(_, m)| m.kind == BranchKind::Mlp && m.stream == after)
            {
                block.residuals.push(mi);
                block.mlp = self
                    .mlps
                    .iter()
                    .position(|x| self.linears[x.down].output == m.branch);
                if let Some(mlp) = block.mlp.map(|i| &self.mlps[i]) {
                    if let Some(&n) = norm_out.get(&self.linears[mlp.up].input) {
                        block.norms.push(n);
                    }
                }
            }
            let _ = g;
            blocks.push(block);
        }
        blocks
    }

    /// How many chained pairs of each kind the model has.
    pub fn count_chained(&self, why: Chain) -> usize {
        self.chained.iter().filter(|c| c.2 == why).count()
    }

    /// When a pass finds no structure to work on in a model an earlier pass has rewritten
    /// so that the idioms are hidden (`quant`'s activation quantizers and QDQ weights,
    /// `low-rank`'s factor pairs in place of the projections, `rotate`'s online Hadamard
    /// in front of the down projections), the hint to run the pass first: `" (the model
    /// is already quantized: run PASS before quant)"`, the same for low-rank and rotate,
    /// or `""`.
    pub fn order_hint(&self, pass: &str) -> String {
        let (factored, rotated) = (
            self.count_chained(Chain::LowRank),
            self.count_chained(Chain::Square) + self.hadamard_readers.len(),
        );
        if self.linears.iter().any(|l| l.kind.is_quantized()) {
            format!(" (the model is already quantized: run {pass} before quant)")
        } else if factored > 0 {
            format!(
                " ({factored} layers are factored into low-rank pairs x·A·B, which hide the \
                 blocks they were part of: run {pass} before low-rank)"
            )
        } else if rotated > 0 {
            format!(
                " ({rotated} layers read their input through rotate's online Hadamard (or \
                 another square constant matrix), which mixes every channel into every \
                 other: run {pass} before rotate)"
            )
        } else {
            String::new()
        }
    }

    /// The refusal of a pass that needs transformer blocks and found none: why (the
    /// pipeline's order, when that is the cause), what was found instead, and where to
    /// look.
    pub fn no_block_error(&self, pass: &str) -> String {
        format!(
            "{pass}: no transformer block (attention + residual) was recognised{}; found {} \
             (`compc print MODEL --idioms` lists them)",
            self.order_hint(pass),
            self.counts()
        )
    }

    /// When some attention is not part of a recognised block (another pass rewrote its
    /// block, as mod-routers does), the note that says so: `" (N attention layers were
    /// found, but only M form a transformer block …)"`, or `""` when every one does.
    pub fn unblocked_note(&self) -> String {
        let (a, b) = (self.attention.len(), self.blocks.len());
        if a > b {
            format!(
                " ({a} attention layers were found, but only {b} form a transformer block with \
                 their residual add; blocks an earlier pass rewrote are not counted)"
            )
        } else {
            String::new()
        }
    }

    /// How many of each idiom were found, for messages that say what is missing.
    pub fn counts(&self) -> String {
        format!(
            "{} linear, {} norm, {} attention, {} mlp, {} residual, {} block{}",
            self.linears.len(),
            self.norms.len(),
            self.attention.len(),
            self.mlps.len(),
            self.residuals.len(),
            self.blocks.len(),
            [
                (Chain::LowRank, "low-rank factor pair"),
                (Chain::Square, "square mixer")
            ]
            .iter()
            .filter_map(|&(why, name)| match self.count_chained(why) {
                0 => None,
                n => Some(format!(", {n} {name}")),
            })
            .collect::<String>()
        )
    }

    /// The listing `compc print --idioms` shows, one idiom per line, nodes as
    /// `Node::describe` spells them.
    pub fn describe(&self, g: &Graph) -> String {
        let d = |id: NodeId| g.node(id).describe(id);
        let feat = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        let mut s = String::new();
        let _ = writeln!(s, "// idioms: {}", self.counts());
        for (i, l) in self.linears.iter().enumerate() {
            let w = g
                .const_weight(l.weight)
                .map(|w| w.name.as_str())
                .unwrap_or("?");
            let _ = writeln!(
                s,
                "// linear[{i}] {:?} {} -> {}{} weight @{w}: {}",
                l.kind,
                feat(l.in_features),
                feat(l.out_features),
                if l.bias.is_some() { " +bias" } else { "" },
                d(l.node)
            );
        }
        for (i, n) in self.norms.iter().enumerate() {
            let _ = writeln!(
                s,
                "// norm[{i}] {:?}{} eps={} ({} nodes): {}",
                n.kind,
                if n.decomposed { " decomposed" } else { "" },
                n.epsilon
                    .map(|e| format!("{e:e}"))
                    .unwrap_or_else(|| "?".into()),
                n.nodes.len(),
                d(n.output.node)
            );
        }
        for (i, a) in self.attention.iter().enumerate() {
            let o =
                a.o.map(|o| format!("linear[{o}]"))
                    .unwrap_or_else(|| "?".into());
            let _ = writeln!(
                s,
                "// attention[{i}] q=linear[{}] k=linear[{}] v=linear[{}] o={o} heads={} kv_heads={} head_dim={}{}{}: {}",
                a.q,
                a.k,
                a.v,
                feat(a.num_heads),
                feat(a.num_kv_heads),
                feat(a.head_dim),
                if a.rope { " rope" } else { "" },
                if a.masked { " masked" } else { "" },
                d(a.softmax)
            );
        }
        for (i, m) in self.mlps.iter().enumerate() {
            let gate = m
                .gate
                .map(|x| format!(" gate=linear[{x}]"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "// mlp[{i}] {} up=linear[{}]{gate} down=linear[{}]",
                m.activation, m.up, m.down
            );
        }
        for (i, r) in self.residuals.iter().enumerate() {
            let _ = writeln!(s, "// residual[{i}] {:?}: {}", r.kind, d(r.add));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let _ = writeln!(
                s,
                "// block[{i}] attention={:?} mlp={:?} norms={:?} residuals={:?}",
                b.attention, b.mlp, b.norms, b.residuals
            );
        }
        for (i, (a, b, why)) in self.chained.iter().enumerate() {
            let what = match why {
                Chain::LowRank => "low-rank factors x·A·B",
                Chain::Square => "square mixer, as an online Hadamard",
            };
            let _ = writeln!(s, "// chained[{i}] linear[{a}] → linear[{b}]: {what}");
        }
        s
    }
}

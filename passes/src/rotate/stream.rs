//! The residual stream of a pre-norm transformer, as `rotate` needs it: the embedding
//! table that starts it, the residual adds that carry it, the norms that read it (and the
//! linears reading each norm), and the linears writing into it. Every reader of a stream
//! value must be one of these (or a `Shape`): anything else would see the rotated stream
//! and break the invariance, so it is an error naming the node. `prune{structured=hidden}`
//! shrinks the same stream and has the same needs, so the errors speak for whichever of
//! the two asked ([`StreamUse`]).

use crate::idioms::{Idioms, LinearKind, NormKind};
use crate::pass::PassError;
use compc_ir::op::BinaryOp;
use compc_ir::{Graph, NodeId, Op, ValueRef};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Stream {
    /// Hidden size.
    pub d: usize,
    /// The `Gather(table, ids)` that writes the token embeddings into the stream.
    pub embed_gather: NodeId,
    pub embed_table: ValueRef,
    /// Norm indices (into `Idioms::norms`) reading the stream, each with the linear
    /// indices reading its output.
    pub norms: Vec<(usize, Vec<usize>)>,
    /// Linear indices writing into the stream (the residual branches).
    pub writers: Vec<usize>,
}

/// Which pass needs the stream, for its errors' wording.
#[derive(Clone, Copy, Debug)]
pub struct StreamUse {
    /// The errors' prefix.
    pub prefix: &'static str,
    /// The pass as a pipeline names it (in "run … before").
    pub pass: &'static str,
    /// What is done to the stream: "rotating", "rotated".
    pub verb_ing: &'static str,
    pub verb_ed: &'static str,
    /// What would have to pass through a foreign node on the stream.
    pub carried: &'static str,
}

impl StreamUse {
    pub const ROTATE: StreamUse = StreamUse {
        prefix: "rotate",
        pass: "rotate",
        verb_ing: "rotating",
        verb_ed: "rotated",
        carried: "the rotation",
    };
    pub const SHRINK_HIDDEN: StreamUse = StreamUse {
        prefix: "structured=hidden",
        pass: "prune",
        verb_ing: "shrinking",
        verb_ed: "shrunk",
        carried: "the removed channels",
    };

    fn err(&self, s: impl Into<String>) -> PassError {
        PassError::Invalid(format!("{}: {}", self.prefix, s.into()))
    }
}

fn is_shape_reader(op: &Op) -> bool {
    matches!(op, Op::Shape(_) | Op::Size)
}

pub fn find_stream(g: &Graph, idioms: &Idioms, by: StreamUse) -> Result<Stream, PassError> {
    let err = |s: String| by.err(s);
    if idioms.residuals.is_empty() {
        return Err(err(format!(
            "no residual stream found (no residual Add of a linear branch); {} needs a \
             pre-norm transformer{}",
            by.pass,
            idioms.order_hint(by.pass)
        )));
    }
    let adds: BTreeSet<NodeId> = idioms.residuals.iter().map(|r| r.add).collect();
    let mut values: Vec<ValueRef> = Vec::new();
    let mut roots = Vec::new();
    for r in &idioms.residuals {
        values.push(ValueRef::new(r.add, 0));
        if !adds.contains(&r.stream.node) {
            roots.push(r.stream);
            values.push(r.stream);
        }
    }
    roots.sort_by_key(|v| (v.node.index(), v.slot));
    roots.dedup();
    let root = match roots.as_slice() {
        [r] => *r,
        _ => {
            let names: Vec<String> = roots
                .iter()
                .map(|v| g.node(v.node).describe(v.node))
                .collect();
            // Say why: a norm on the stream (post-norm) is the usual cause; anything else
            // is a node another pass put on the stream (mod-routers' scatter, say).
            let is_norm_output = |v: &ValueRef| idioms.norms.iter().any(|n| n.output == *v);
            // An Add among the roots is usually a residual add the other pass's rewrite
            // hid, so the node to name is the one that is neither.
            let foreign =
                |v: &&ValueRef| !is_norm_output(v) && !matches!(g.node(v.node).op, Op::Gather(_));
            let cause = match roots
                .iter()
                .filter(foreign)
                .find(|v| !matches!(g.node(v.node).op, Op::Binary(BinaryOp::Add)))
                .or_else(|| roots.iter().find(foreign))
            {
                Some(v) => format!(
                    "{} sits on the stream between residual adds, and {} cannot carry {} \
                     through it (run {} before passes that add such nodes, as mod-routers does)",
                    g.node(v.node).describe(v.node),
                    by.pass,
                    by.carried,
                    by.pass
                ),
                None => format!(
                    "a norm on the stream itself (post-norm, as in BERT) cannot be {}",
                    by.verb_ed
                ),
            };
            return Err(err(format!(
                "the residual stream does not run unbroken from the embeddings: the residual \
                 adds start from {} different values ({}); {cause}",
                roots.len(),
                names.join(", ")
            )));
        }
    };
    let gather = g.node(root.node);
    let table = match (&gather.op, gather.input(0)) {
        (Op::Gather(a), Some(t)) if a.axis == 0 && g.const_weight(t).is_some() => t,
        _ => {
            return Err(err(format!(
                "the residual stream starts at {}, not at a Gather from a constant embedding \
                 table",
                gather.describe(root.node)
            )))
        }
    };
    let d = match g.const_weight(table).map(|w| w.dims.clone()).as_deref() {
        Some([_, d]) => *d as usize,
        other => {
            return Err(err(format!(
                "the embedding table has shape {other:?}, not [vocab, hidden]"
            )))
        }
    };
    let by_output: std::collections::HashMap<ValueRef, usize> = idioms
        .linears
        .iter()
        .enumerate()
        .map(|(i, l)| (l.output, i))
        .collect();
    let check_linear = |i: usize, role: &str| -> Result<(), PassError> {
        let l = &idioms.linears[i];
        let node = g.node(l.node);
        if l.kind != LinearKind::MatMul {
            return Err(err(format!(
                "{role} {} is a {:?} layer; {} handles float MatMul layers{}",
                node.describe(l.node),
                l.kind,
                by.pass,
                l.order_hint(by.pass)
            )));
        }
        Ok(())
    };
    let mut writers = Vec::new();
    for r in &idioms.residuals {
        let w = *by_output
            .get(&r.branch)
            .ok_or_else(|| err("a residual branch is not a linear layer's output".into()))?;
        check_linear(w, "the stream writer")?;
        if idioms.linears[w].out_features != Some(d as u64) {
            return Err(err(format!(
                "the stream writer {} does not write {d} features",
                g.node(idioms.linears[w].node)
                    .describe(idioms.linears[w].node)
            )));
        }
        writers.push(w);
    }
    let mut norms: Vec<(usize, Vec<usize>)> = Vec::new();
    values.sort_by_key(|v| (v.node.index(), v.slot));
    values.dedup();
    for &v in &values {
        if g.outputs.iter().any(|o| o.value == v) {
            return Err(err(format!(
                "the residual stream value of {} is a graph output; it would come out {}",
                g.node(v.node).describe(v.node),
                by.verb_ed
            )));
        }
        for (u, _) in g.value_users(v) {
            let op = &g.node(u).op;
            if is_shape_reader(op) {
                continue;
            }
            if adds.contains(&u) && idioms.residuals.iter().any(|r| r.add == u && r.stream == v) {
                continue;
            }
            if let Some(ni) = idioms
                .norms
                .iter()
                .position(|n| n.input == v && n.nodes.contains(&u))
            {
                if !norms.iter().any(|(n, _)| *n == ni) {
                    norms.push((ni, vec![]));
                }
                continue;
            }
            return Err(err(format!(
                "{} reads the residual stream and is neither a norm, a residual add nor a \
                 shape read; {} the stream would change what it computes",
                g.node(u).describe(u),
                by.verb_ing
            )));
        }
    }
    for (ni, readers) in norms.iter_mut() {
        let n = &idioms.norms[*ni];
        let at = g.node(n.output.node).describe(n.output.node);
        match n.kind {
            NormKind::Rms => {}
            NormKind::Layer => {
                return Err(err(format!(
                    "the stream norm {at} is a LayerNorm; only RMSNorm models are {} \
                     (LayerNorm → RMSNorm is not implemented)",
                    by.verb_ed
                )))
            }
        }
        for (u, _) in g.value_users(n.output) {
            if is_shape_reader(&g.node(u).op) {
                continue;
            }
            let li = idioms
                .linears
                .iter()
                .position(|l| l.node == u && l.input == n.output)
                .ok_or_else(|| {
                    err(format!(
                        "{} reads the output of the norm {at} and is not a linear layer",
                        g.node(u).describe(u)
                    ))
                })?;
            check_linear(li, "the norm reader")?;
            readers.push(li);
        }
        if readers.is_empty() {
            return Err(err(format!("the norm {at} has no linear readers")));
        }
        if g.outputs.iter().any(|o| o.value == n.output) {
            return Err(err(format!(
                "the output of the norm {at} is a graph output"
            )));
        }
    }
    Ok(Stream {
        d,
        embed_gather: root.node,
        embed_table: table,
        norms,
        writers,
    })
}

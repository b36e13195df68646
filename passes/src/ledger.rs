//! The ledger: what each pass changed and what it cost, written as `report.json` and
//! `report.md` beside the output model.

use crate::context::PassRecord;
use crate::pass::Exactness;
use compc_ir::{DType, Graph, Op};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Size figures of a graph at one point of the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GraphStats {
    pub nodes: usize,
    /// Elements of all weights that nodes read (each weight counted once).
    pub parameters: u64,
    /// Bytes of those weights as stored.
    pub weight_bytes: u64,
    /// Weight bytes by element type ("f32" → bytes).
    pub bytes_by_dtype: BTreeMap<String, u64>,
    /// Node count by op name.
    pub ops: BTreeMap<String, usize>,
}

impl GraphStats {
    pub fn of(g: &Graph) -> GraphStats {
        let mut s = GraphStats::default();
        let mut seen = BTreeSet::new();
        for id in g.node_ids() {
            let node = g.node(id);
            if matches!(node.op, Op::Input) {
                continue;
            }
            if let Op::Const(w) = node.op {
                if seen.insert(w) {
                    let w = g.weights.get(w);
                    s.parameters += w.numel();
                    s.weight_bytes += w.byte_len();
                    *s.bytes_by_dtype.entry(dtype_key(w.dtype)).or_default() += w.byte_len();
                }
                continue;
            }
            s.nodes += 1;
            *s.ops.entry(node.op.text_name()).or_default() += 1;
        }
        s
    }
}

fn dtype_key(d: DType) -> String {
    d.name().to_string()
}

#[derive(Clone, Debug, Serialize)]
pub struct LedgerEntry {
    pub pass: String,
    pub options: BTreeMap<String, String>,
    pub exactness: Exactness,
    pub changed: bool,
    pub seconds: f64,
    pub before: GraphStats,
    pub after: GraphStats,
    #[serde(flatten)]
    pub record: PassRecord,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Ledger {
    pub model: String,
    pub pipeline: String,
    pub input: GraphStats,
    pub output: GraphStats,
    pub passes: Vec<LedgerEntry>,
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn ratio(before: u64, after: u64) -> String {
    if after == 0 {
        "-".into()
    } else {
        format!("{:.2}×", before as f64 / after as f64)
    }
}

impl Ledger {
    /// The human report: totals first, then one section per pass.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# compc report: {}\n", self.model);
        let pipeline = if self.pipeline.is_empty() {
            "(none)"
        } else {
            &self.pipeline
        };
        let _ = writeln!(s, "Pipeline: `{pipeline}`\n");
        let _ = writeln!(s, "| | input | output | ratio |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let (i, o) = (&self.input, &self.output);
        let _ = writeln!(s, "| nodes | {} | {} | |", i.nodes, o.nodes);
        let _ = writeln!(
            s,
            "| parameters | {} | {} | {} |",
            i.parameters,
            o.parameters,
            ratio(i.parameters, o.parameters)
        );
        let _ = writeln!(
            s,
            "| weight bytes | {} | {} | {} |",
            human_bytes(i.weight_bytes),
            human_bytes(o.weight_bytes),
            ratio(i.weight_bytes, o.weight_bytes)
        );
        let dtypes: BTreeSet<&String> = i
            .bytes_by_dtype
            .keys()
            .chain(o.bytes_by_dtype.keys())
            .collect();
        for d in dtypes {
            let b = |m: &BTreeMap<String, u64>| human_bytes(m.get(d).copied().unwrap_or(0));
            let _ = writeln!(
                s,
                "| {d} weights | {} | {} | |",
                b(&i.bytes_by_dtype),
                b(&o.bytes_by_dtype)
            );
        }
        for e in &self.passes {
            let opts: Vec<String> = e.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                s,
                "\n## {}{}\n",
                e.pass,
                if opts.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", opts.join(","))
                }
            );
            let _ = writeln!(
                s,
                "- {} · {} · {:.3} s · nodes touched: {}",
                match e.exactness {
                    Exactness::Exact => "exact",
                    Exactness::Lossy => "lossy",
                },
                if e.changed {
                    "changed the graph"
                } else {
                    "no change"
                },
                e.seconds,
                e.record.nodes_touched
            );
            let _ = writeln!(
                s,
                "- nodes {} → {}, parameters {} → {}, weight bytes {} → {}",
                e.before.nodes,
                e.after.nodes,
                e.before.parameters,
                e.after.parameters,
                human_bytes(e.before.weight_bytes),
                human_bytes(e.after.weight_bytes)
            );
            for n in &e.record.notes {
                let _ = writeln!(s, "- {n}");
            }
            for (m, v) in &e.record.errors {
                let _ = writeln!(s, "- measured {m}: {v:.6e}");
            }
        }
        s
    }
}

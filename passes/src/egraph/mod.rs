//! `egraph-opt`: equality saturation over the IR with egg.
//!
//! The pure regions of the graph (`ir::region::pure_regions`, less multi-output ops, which
//! stay outside) are cut out as one region, turned into an e-graph (weights as leaves,
//! constant folding and types as the analysis), saturated with the rule families under
//! explicit limits (iterations, e-nodes, seconds), and the cheapest equivalent graph under
//! the cost model (`ir::cost` FLOPs + bytes, weights counted once) is extracted and spliced
//! back. The region is replaced only if the extracted graph is cheaper; the verifier runs
//! after the splice and a result that does not verify is undone, so the pass never leaves
//! a broken graph.
//!
//! - `language`: the egg `Language` (op + attributes as operator, inputs as children);
//! - `analysis`: types and small constants per e-class, constant folding, the weight table;
//! - `convert`: region graph ↔ e-graph;
//! - `cost`: the cost model and DAG-aware extraction;
//! - `rules/`: the rewrite rules, one file per family.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod language;
pub mod rules;

use crate::context::PassContext;
use crate::options::{OptionKind, OptionSpec, PassOptions};
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::region::{extract, pure_regions, splice};
use compc_ir::Graph;
use cost::CostModel;
use egg::{Runner, StopReason};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "iters",
        kind: OptionKind::Int { min: 1, max: 1000 },
        default: Some("12"),
        help: "saturation iterations, at most",
    },
    OptionSpec {
        name: "nodes",
        kind: OptionKind::Int {
            min: 100,
            max: 100_000_000,
        },
        default: Some("500000"),
        help: "e-nodes in the e-graph, at most",
    },
    OptionSpec {
        name: "seconds",
        kind: OptionKind::Float {
            min: 0.001,
            max: 86_400.0,
        },
        default: Some("10"),
        help: "saturation time, at most",
    },
    OptionSpec {
        name: "sym_dim",
        kind: OptionKind::Int {
            min: 1,
            max: 1 << 24,
        },
        default: Some("64"),
        help: "size a symbolic dimension is costed at",
    },
    OptionSpec {
        name: "rules",
        kind: OptionKind::Text,
        default: Some("all"),
        help: "rule families to use: all, or a `+`-separated list of shape, identity, quant, scale, scalar, linear, conv-bn, bias, fused",
    },
];

pub struct EgraphOpt {
    pub iters: usize,
    pub nodes: usize,
    pub seconds: f64,
    pub sym_dim: u64,
    pub families: Vec<&'static str>,
}

impl Default for EgraphOpt {
    fn default() -> Self {
        EgraphOpt {
            iters: 12,
            nodes: 500_000,
            seconds: 10.0,
            sym_dim: 64,
            families: rules::FAMILIES.to_vec(),
        }
    }
}

impl EgraphOpt {
    pub fn from_options(o: &PassOptions) -> Result<Self, String> {
        let d = EgraphOpt::default();
        let families = match o.text("rules").unwrap_or("all") {
            "all" => d.families.clone(),
            list => {
                let mut v = Vec::new();
                for name in list.split('+') {
                    let f = rules::FAMILIES
                        .iter()
                        .find(|f| **f == name)
                        .ok_or_else(|| {
                            format!(
                                "unknown rule family `{name}`; valid: all, {}",
                                rules::FAMILIES.join(", ")
                            )
                        })?;
                    // egg refuses two rules of one name, so a family listed twice counts once.
                    if !v.contains(f) {
                        v.push(*f);
                    }
                }
                v
            }
        };
        Ok(EgraphOpt {
            iters: o.int("iters").map_or(d.iters, |v| v as usize),
            nodes: o.int("nodes").map_or(d.nodes, |v| v as usize),
            seconds: o.float("seconds").unwrap_or(d.seconds),
            sym_dim: o.int("sym_dim").map_or(d.sym_dim, |v| v as u64),
            families,
        })
    }
}

/// What happened in one run, for the ledger.
#[derive(Default)]
struct Tally {
    region_nodes: usize,
    replaced: usize,
    kept_not_cheaper: usize,
    failed: Vec<String>,
    iterations: usize,
    enodes_before: usize,
    enodes_after: usize,
    classes_after: usize,
    stops: BTreeMap<String, usize>,
    applied: BTreeMap<String, usize>,
    flops_before: f64,
    flops_after: f64,
    cost_before: f64,
    cost_after: f64,
    saturation_s: f64,
    extraction_s: f64,
}

fn stop_name(s: &Option<StopReason>) -> String {
    match s {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(_)) => "iteration limit".into(),
        Some(StopReason::NodeLimit(_)) => "e-node limit".into(),
        Some(StopReason::TimeLimit(_)) => "time limit".into(),
        Some(StopReason::Other(o)) => o.clone(),
        None => "not run".into(),
    }
}

impl EgraphOpt {
    /// Optimizes one region in place; `Ok(true)` if it was replaced.
    fn region(
        &self,
        g: &mut Graph,
        nodes: &std::collections::BTreeSet<compc_ir::NodeId>,
        rules: &[rules::Rw],
        deadline: Instant,
        t: &mut Tally,
    ) -> Result<bool, String> {
        let model = CostModel {
            sym_dim: self.sym_dim,
        };
        let region = extract(g, nodes).map_err(|e| e.to_string())?;
        let conv = convert::to_egraph(&region.graph)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let t0 = Instant::now();
        t.enodes_before += conv.egraph.total_size();
        // The simple scheduler applies every match every iteration: the rules do not
        // explode (nothing commutes or reassociates), and egg's default backoff would
        // hold back a rule that matches once per layer of a deep model.
        let runner = Runner::default()
            .with_scheduler(egg::SimpleScheduler)
            .with_egraph(conv.egraph)
            .with_iter_limit(self.iters)
            .with_node_limit(self.nodes)
            .with_time_limit(left.max(Duration::from_millis(1)))
            .run(rules);
        t.saturation_s += t0.elapsed().as_secs_f64();
        t.iterations += runner.iterations.len();
        t.enodes_after += runner.egraph.total_size();
        t.classes_after += runner.egraph.number_of_classes();
        *t.stops.entry(stop_name(&runner.stop_reason)).or_default() += 1;
        for it in &runner.iterations {
            for (name, n) in &it.applied {
                *t.applied.entry(name.to_string()).or_default() += n;
            }
        }
        let t1 = Instant::now();
        let eg = &runner.egraph;
        let choice =
            cost::extract(eg, &conv.roots, &model).ok_or("no acyclic extraction of a root")?;
        let new = convert::from_choice(eg, &choice, &conv.roots, &region.graph, &conv.names)?;
        t.extraction_s += t1.elapsed().as_secs_f64();
        let (f0, c0) = model.graph(&region.graph);
        let (f1, c1) = model.graph(&new);
        t.flops_before += f0;
        t.cost_before += c0;
        if c1 >= c0 {
            // Not cheaper: the region stays as it is.
            t.flops_after += f0;
            t.cost_after += c0;
            t.kept_not_cheaper += 1;
            return Ok(false);
        }
        let backup = g.clone();
        let spliced = splice(g, &region, &new)
            .map_err(|e| e.to_string())
            .and_then(|_| compc_ir::verify::verify(g).map_err(|e| e.to_string()));
        if let Err(e) = spliced {
            *g = backup;
            t.flops_after += f0;
            t.cost_after += c0;
            return Err(format!("result did not verify, region kept: {e}"));
        }
        t.flops_after += f1;
        t.cost_after += c1;
        Ok(true)
    }
}

impl Pass for EgraphOpt {
    fn name(&self) -> &'static str {
        "egraph-opt"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let rules = rules::families(&self.families);
        let deadline = Instant::now() + Duration::from_secs_f64(self.seconds);
        let nodes_before = crate::ledger::GraphStats::of(g).nodes;
        let mut t = Tally::default();
        // All pure regions go into one e-graph: regions that only touch through graph
        // inputs or custom ops still share subexpressions (CSE is free in an e-graph only
        // when both copies are in it). A region need not be connected for extract/splice.
        let set: std::collections::BTreeSet<_> = pure_regions(g)
            .map_err(|e| PassError::Invalid(e.to_string()))?
            .into_iter()
            .flatten()
            // Multi-output ops stay outside: an e-node stands for one value.
            .filter(|&id| g.node(id).outputs.len() == 1)
            .collect();
        if !set.is_empty() {
            t.region_nodes = set.len();
            match self.region(g, &set, &rules, deadline, &mut t) {
                Ok(true) => t.replaced += 1,
                Ok(false) => {}
                Err(e) => t.failed.push(e),
            }
        }
        // Constants read only by replaced nodes are dead now (regions copy constants in
        // rather than owning them).
        let dead: Vec<_> = g
            .node_ids()
            .filter(|&id| {
                matches!(g.node(id).op, compc_ir::Op::Const(_))
                    && !g.is_used(compc_ir::ValueRef::new(id, 0))
            })
            .collect();
        for id in dead {
            g.remove_node(id)?;
        }
        let nodes_after = crate::ledger::GraphStats::of(g).nodes;
        cx.touch(nodes_before.abs_diff(nodes_after));
        cx.note(format!(
            "limits: {} iterations, {} e-nodes, {} s; rules: {}",
            self.iters,
            self.nodes,
            self.seconds,
            self.families.join(", ")
        ));
        let stops: Vec<String> = t.stops.keys().cloned().collect();
        let outcome = if t.replaced > 0 {
            "replaced".to_string()
        } else if t.kept_not_cheaper > 0 {
            "kept (the extracted graph was not cheaper)".to_string()
        } else if let Some(e) = t.failed.first() {
            format!("kept ({e})")
        } else {
            "nothing to optimize".to_string()
        };
        cx.note(format!(
            "{} pure nodes in one e-graph: {} iterations, stopped: {}; e-nodes {} → {} ({} classes); \
             saturation {:.3} s, extraction {:.3} s; region {outcome}",
            t.region_nodes,
            t.iterations,
            if stops.is_empty() { "-".into() } else { stops.join(", ") },
            t.enodes_before,
            t.enodes_after,
            t.classes_after,
            t.saturation_s,
            t.extraction_s
        ));
        let applied: Vec<String> = t
            .applied
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        if !applied.is_empty() {
            cx.note(format!("rules applied: {}", applied.join(", ")));
        }
        cx.note(format!(
            "cost model (symbolic dims at {}): {:.4e} → {:.4e} FLOPs, {:.4e} → {:.4e} FLOPs + bytes + node overhead",
            self.sym_dim, t.flops_before, t.flops_after, t.cost_before, t.cost_after
        ));
        cx.measured("cost_model_flops_before", t.flops_before);
        cx.measured("cost_model_flops_after", t.flops_after);
        cx.measured("egraph_iterations", t.iterations as f64);
        cx.measured("egraph_enodes", t.enodes_after as f64);
        Ok(Changed::from_bool(t.replaced > 0))
    }
}

//! The `prune` pass: resolves the options, picks the layers, and runs unstructured/N:M
//! pruning ([`super::sparse`]) or structured pruning ([`super::structured`]). A pruning
//! amount of 0 returns before touching the graph, so it is an exact no-op.

use super::options::{Mode, PruneConfig};
use super::sparse::{LayerReport, SparseJob};
use super::structured;
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::CalibRunner;
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::options::PassOptions;
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::quant::layers::{select_skipping, Layer};
use crate::quant::pass::end_to_end_error;
use compc_ir::Graph;
use std::collections::BTreeSet;

pub struct Prune {
    options: PassOptions,
}

impl Prune {
    pub fn new(options: PassOptions) -> Prune {
        Prune { options }
    }
}

/// Linears inside attention and MLP idioms (by index into `Idioms::linears`).
pub fn block_linears(idioms: &Idioms) -> BTreeSet<usize> {
    let mut s = BTreeSet::new();
    for a in &idioms.attention {
        s.extend([a.q, a.k, a.v]);
        s.extend(a.o);
    }
    for m in &idioms.mlps {
        s.extend([m.up, m.down]);
        s.extend(m.gate);
    }
    s
}

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let cfg =
            PruneConfig::resolve(&self.options, cx.calib.is_some()).map_err(PassError::Invalid)?;
        match &cfg.mode {
            Mode::Structured(s) => structured::run(g, cx, &cfg, s),
            Mode::Sparse(s) => {
                if s.sparsity == 0.0 {
                    cx.note("sparsity 0: nothing to prune");
                    return Ok(Changed::No);
                }
                let idioms = Idioms::find(g)?;
                let layers = select_layers(g, &idioms, &cfg, s.method.needs_calibration(), cx)?;
                let n = layers.len();
                cx.note(format!(
                    "method {}{}; pattern {}; sparsity {:.2}%{}",
                    s.method.name(),
                    if s.method_defaulted {
                        if cx.calib.is_some() {
                            " (default: calibration data was given)"
                        } else {
                            " (default: no calibration data)"
                        }
                    } else {
                        ""
                    },
                    s.pattern.name(),
                    100.0 * s.sparsity,
                    match (s.method, s.pattern) {
                        (super::options::Method::SparseGpt, _) => format!(
                            ", damp {}, block {}, adaptive mask per block",
                            s.damp, s.block
                        ),
                        (_, super::options::Pattern::Unstructured) =>
                            format!(", {}", s.scope.in_words()),
                        _ => String::new(),
                    }
                ));
                let original = cx.calib.map(|_| g.clone());
                let mut runner = match cx.calib {
                    Some(c) if s.method.needs_calibration() => {
                        Some(CalibRunner::new(g, c, DEFAULT_BATCH)?)
                    }
                    _ => None,
                };
                let mut job = SparseJob {
                    cfg: s,
                    idioms: &idioms,
                    layers,
                    reports: vec![LayerReport::default(); n],
                    pruned_from: vec![None; n],
                };
                job.run(g, cx, runner.as_mut())?;
                job.report(g, cx);
                let removed = crate::dce::remove_dead_nodes(g)?;
                cx.touch(n + removed);
                if let (Some(orig), Some(r)) = (original, runner.as_ref()) {
                    end_to_end_error(&orig, g, r, cx)?;
                }
                Ok(Changed::Yes)
            }
        }
    }
}

/// The layers to prune: float linears (inside attention/MLP idioms unless `layers=all`),
/// minus `skip=` matches; the calibrated methods leave convolutions alone (their inputs
/// are not feature vectors on the last axis).
pub fn select_layers(
    g: &Graph,
    idioms: &Idioms,
    cfg: &PruneConfig,
    calibrated: bool,
    cx: &mut PassContext,
) -> Result<Vec<Layer>, PassError> {
    let sel = select_skipping(g, idioms, &cfg.skip);
    let already_quantized = sel.already_quantized;
    let inside = block_linears(idioms);
    let use_blocks = !cfg.all_layers && !inside.is_empty();
    let mut out = Vec::new();
    let mut outside = 0;
    for l in sel.layers {
        if use_blocks && !inside.contains(&l.index) {
            outside += 1;
            continue;
        }
        if calibrated && l.is_conv() {
            cx.note(format!(
                "left `{}` dense: the calibrated methods prune MatMul/Gemm layers",
                l.name
            ));
            continue;
        }
        out.push(l);
    }
    for (n, w) in &sel.skipped {
        cx.note(format!("left `{n}` dense: {w}"));
    }
    let why: Vec<String> = sel
        .skipped
        .iter()
        .map(|(n, w)| format!("`{n}`: {w}"))
        .collect();
    if outside > 0 {
        cx.note(format!(
            "left {outside} linear layers outside attention/MLP blocks dense (layers=all prunes them)"
        ));
    }
    if out.is_empty() {
        // After `quant` every linear is a QDQ or MatMulNBits layer: the order is the cause.
        if already_quantized > 0 && outside == 0 && why.is_empty() {
            return Err(PassError::Invalid(format!(
                "nothing to prune: all {already_quantized} linear layers are already quantized; \
                 prune before quantizing (-p prune,quant keeps the zeros)"
            )));
        }
        return Err(PassError::Invalid(format!(
            "nothing to prune: no float linear layer (MatMul or Gemm with a constant weight) \
             is left after layers= and skip={}",
            if why.is_empty() {
                String::new()
            } else {
                format!(" (left dense: {})", why.join("; "))
            }
        )));
    }
    Ok(out)
}

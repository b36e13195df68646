//! The `quant` pass: picks the layers, runs the method over them (block by block for the
//! calibrated methods, each stage seeing the already quantized stages before it),
//! optionally calibrates static activation ranges, lowers every layer to QDQ or
//! MatMulNBits, and reports per layer what it did and what it cost.
//!
//! While the methods run, each finished layer's weight in the graph is replaced by its
//! dequantized value ("fake quantization"), so later calibration runs see the quantized
//! model; the lowering at the end swaps those floats for the integer form.

use super::act_calib::{uint8_params, ActStats};
use super::awq::{self, SearchLayer};
use super::fold::{self, Prev};
use super::gptq::{gptq, GptqConfig};
use super::grid::Grid;
use super::importance::{self, Importance};
use super::layers::{self, read_w, read_w_unchecked, write_w, Layer, Layout};
use super::lower_nbits::{can_lower, lower_nbits};
use super::lower_qdq::{insert_activation_qdq, lower_qdq};
use super::options::{Format, Method, QuantConfig};
use super::qmatrix::QMatrix;
use super::rtn::{group_ranges, rtn_with_mse, rtn_with_ranges};
use super::smoothquant::{smooth_scales, weight_col_max};
use crate::calib::hessian::solve_note;
use crate::calib::linalg::matmul;
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, InputStats, Sequencer};
use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::idioms::Idioms;
use crate::needs_calibration;
use crate::options::PassOptions;
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::{Graph, NodeId, Op, ValueRef, WeightId};
use compc_runtime::Tensor;

/// Samples of cached stage inputs AWQ runs its modules on (the reference uses 512
/// sequences of 512 tokens; the scale search only needs a representative sample).
const AWQ_SEARCH_SAMPLES: usize = 64;
/// Lazy-update block of GPTQ (the reference's `blocksize`).
const GPTQ_BLOCK: usize = 128;

pub struct Quant {
    options: PassOptions,
}

impl Quant {
    pub fn new(options: PassOptions) -> Quant {
        Quant { options }
    }
}

/// An activation to quantize: the value, its readers (node, input) and a name.
type ActEdge = (ValueRef, Vec<(NodeId, usize)>, String);

/// What the report says about one layer.
#[derive(Clone, Debug, Default)]
struct LayerReport {
    method: String,
    weight_mse: f64,
    /// `‖(W − Ŵ)X‖² / ‖WX‖²` on the calibration inputs.
    output_rel_err: Option<f64>,
    extra: String,
    bytes_after: u64,
    format: &'static str,
}

struct Job {
    cfg: QuantConfig,
    idioms: Idioms,
    layers: Vec<Layer>,
    q: Vec<Option<QMatrix>>,
    /// The float weight each layer's codes were rounded from (see
    /// `Graph::float_originals`), in the layer's storage layout.
    twins: Vec<Option<WeightId>>,
    reports: Vec<LayerReport>,
    /// The constant node each layer's codes were rounded from (before the layer was
    /// pointed at its dequantized copy): a later layer that still reads that constant
    /// reads the same weight, and takes the same codes.
    quantized_from: Vec<Option<NodeId>>,
    /// The earlier layer whose codes a layer took (layers shared by `share-layers`, a
    /// weight read by several MatMuls): lowering then points it at the same constants.
    shares: Vec<Option<usize>>,
}

impl Pass for Quant {
    fn name(&self) -> &'static str {
        "quant"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let mut cfg =
            QuantConfig::resolve(&self.options, cx.calib.is_some()).map_err(PassError::Invalid)?;
        // `rotate{rsq=true}` asks the GPTQ that follows it to weight tokens; the request
        // is consumed here so a later quantization does not inherit it.
        let requested = g.metadata.remove(importance::METADATA_KEY);
        if cfg.importance.is_none() && cfg.method == Method::Gptq {
            cfg.importance = requested.as_deref().and_then(Importance::parse);
        }
        let idioms = Idioms::find(g)?;
        let sel = layers::select(g, &idioms, &cfg);
        if sel.layers.is_empty() {
            if sel.already_quantized > 0 && sel.skipped.is_empty() {
                cx.note(format!(
                    "all {} linear layers are already quantized; nothing to do",
                    sel.already_quantized
                ));
                return Ok(Changed::No);
            }
            if sel.skipped.is_empty() {
                return Err(PassError::Invalid(
                    "nothing to quantize: the graph has no linear layers (MatMul or Gemm with a \
                     constant weight, Conv with a constant kernel)"
                        .into(),
                ));
            }
            let why: Vec<String> = sel
                .skipped
                .iter()
                .map(|(n, w)| format!("`{n}`: {w}"))
                .collect();
            return Err(PassError::Invalid(format!(
                "nothing to quantize: every linear layer was left out ({})",
                why.join("; ")
            )));
        }
        let n = sel.layers.len();
        let mut job = Job {
            cfg,
            idioms,
            layers: sel.layers,
            q: vec![None; n],
            twins: vec![None; n],
            reports: vec![LayerReport::default(); n],
            quantized_from: vec![None; n],
            shares: vec![None; n],
        };
        job.note_config(cx, &sel.skipped, sel.already_quantized);
        let original = cx.calib.map(|_| g.clone());
        let mut runner = match cx.calib {
            Some(c) if job.cfg.method.needs_calibration() || job.cfg.act_bits > 0 => {
                Some(CalibRunner::new(g, c, DEFAULT_BATCH)?)
            }
            _ => None,
        };
        if runner.is_some() {
            layers::check_all_finite(g, &job.layers)?;
        }
        match (job.cfg.method, runner.as_mut()) {
            (Method::Rtn, _) => job.run_rtn(g)?,
            (Method::Gptq | Method::Awq, Some(r)) => job.run_sequential(g, cx, r)?,
            (Method::SmoothQuant, Some(r)) => job.run_smoothquant(g, cx, r)?,
            (m, None) => {
                return Err(PassError::Invalid(needs_calibration(&format!(
                    "method={}",
                    m.name()
                ))))
            }
        }
        // Conv layers under the calibrated methods, and anything not done yet.
        job.rtn_remaining(g)?;
        if job.cfg.act_bits > 0 {
            if let Some(r) = runner.as_mut() {
                job.quantize_activations(g, cx, r)?;
            }
        }
        job.lower(g)?;
        let removed = remove_dead_nodes(g)?;
        cx.touch(job.layers.len() + removed);
        job.report(cx);
        if let (Some(orig), Some(r)) = (original, runner.as_ref()) {
            end_to_end_error(&orig, g, r, cx)?;
        }
        Ok(Changed::Yes)
    }
}

impl Job {
    fn grid(&self) -> Grid {
        Grid::new(self.cfg.bits, self.cfg.sym)
    }

    /// Conv kernels are quantized per output channel: QDQ can block only along one axis,
    /// which for a kernel is not the flattened input-feature axis groups would need.
    fn group_for(&self, l: &Layer) -> usize {
        if l.is_conv() {
            0
        } else {
            self.cfg.group
        }
    }

    fn note_config(&self, cx: &mut PassContext, skipped: &[(String, String)], already: usize) {
        let c = &self.cfg;
        let why = match (c.method_defaulted, c.method) {
            (true, Method::Gptq) => " (default: calibration data was given)",
            (true, _) => " (default: no calibration data)",
            _ => "",
        };
        cx.note(format!(
            "method {}{why}; weights {}; {}",
            c.method.name(),
            c.describe(),
            self.grid().sym_convention()
        ));
        if c.act_bits > 0 {
            cx.note(format!(
                "activations: static uint8 asymmetric per tensor, {} calibration",
                c.calib_method.name()
            ));
        }
        if c.method == Method::Gptq {
            cx.note(format!(
                "GPTQ: damp {}, block {GPTQ_BLOCK}, act_order {}{}",
                c.damp,
                c.act_order,
                if c.act_order {
                    " with static groups"
                } else {
                    ""
                }
            ));
        }
        for (n, w) in skipped {
            cx.note(format!("kept `{n}` in float: {w}"));
        }
        if already > 0 {
            cx.note(format!(
                "{already} layers were already quantized and are left as they are"
            ));
        }
    }

    /// Round-to-nearest for every layer not quantized yet.
    fn run_rtn(&mut self, g: &mut Graph) -> Result<(), PassError> {
        for i in 0..self.layers.len() {
            self.rtn_layer(g, i, "rtn")?;
        }
        Ok(())
    }

    fn rtn_remaining(&mut self, g: &mut Graph) -> Result<(), PassError> {
        for i in 0..self.layers.len() {
            if self.q[i].is_none() {
                self.rtn_layer(g, i, "rtn")?;
            }
        }
        Ok(())
    }

    /// An earlier layer already quantized from the very constant layer `i` reads: `i` is
    /// another reader of that weight.
    fn same_weight_as(&self, g: &Graph, i: usize) -> Option<usize> {
        layers::reader_of_same_weight(g, &self.layers, i, &self.quantized_from)
            .filter(|&j| self.q[j].is_some())
    }

    /// Gives layer `i` the codes of layer `j`, which quantized the same weight: `i` reads
    /// what `j` reads now (its dequantized copy, if calibration needed one), and lowering
    /// will make it read `j`'s constants.
    fn take_codes_of(&mut self, g: &mut Graph, i: usize, j: usize) {
        let from = g.node(self.layers[j].node()).input(1);
        g.set_input(self.layers[i].node(), 1, from);
        self.q[i] = self.q[j].clone();
        self.twins[i] = self.twins[j];
        self.quantized_from[i] = self.quantized_from[j];
        self.shares[i] = Some(j);
        let mut r = self.reports[j].clone();
        r.output_rel_err = None;
        r.extra = format!(
            "read again by node `{}`: the codes quantized for node `{}`, stored once",
            g.node(self.layers[i].node()).name,
            g.node(self.layers[j].node()).name
        );
        self.reports[i] = r;
    }

    fn rtn_layer(&mut self, g: &mut Graph, i: usize, method: &str) -> Result<(), PassError> {
        if let Some(j) = self.same_weight_as(g, i) {
            self.take_codes_of(g, i, j);
            return Ok(());
        }
        let l = &self.layers[i];
        self.quantized_from[i] = layers::weight_node(g, l);
        self.twins[i] = weight_id(g, l);
        let w = read_w_unchecked(g, l)?;
        let (q, weight_mse) = rtn_with_mse(&w, l.rows, l.cols, self.group_for(l), self.grid());
        if !weight_mse.is_finite() {
            layers::check_finite(g, l)?;
        }
        self.reports[i].method = method.into();
        self.reports[i].weight_mse = weight_mse;
        // Later calibration (activation ranges) must see the quantized weights.
        if self.cfg.act_bits > 0 {
            write_w(g, l, &q.dequantize())?;
        }
        self.q[i] = Some(q);
        Ok(())
    }

    /// GPTQ or AWQ, stage by stage in block order.
    fn run_sequential(
        &mut self,
        g: &mut Graph,
        cx: &mut PassContext,
        runner: &mut CalibRunner,
    ) -> Result<(), PassError> {
        let lin: Vec<usize> = (0..self.layers.len())
            .filter(|&i| !self.layers[i].is_conv())
            .collect();
        let mut items = Vec::with_capacity(lin.len());
        for &i in &lin {
            let x = self.layers[i].input(g).ok_or_else(|| {
                PassError::Invalid(format!("layer `{}` has no input", self.layers[i].name))
            })?;
            items.push((self.layers[i].node(), x));
        }
        let mut seq = Sequencer::new(g, &self.idioms, &items)?;
        let stages = seq.stages(&items);
        let method = self.cfg.method;
        let pb = cx.progress_bar(stages.len() as u64, method.name());
        let blocks = seq.blocks();
        let mut weighted = 0usize;
        let awq_batches = AWQ_SEARCH_SAMPLES.div_ceil(DEFAULT_BATCH).max(1);
        for stage in &stages {
            pb.set_message(format!(
                "{} block {}/{blocks}",
                method.name(),
                (seq.block_of(stage) + 1).min(blocks.max(1))
            ));
            let members: Vec<usize> = stage.members.iter().map(|&m| lin[m]).collect();
            let n = self.layers[members[0]].cols;
            let name = self.layers[members[0]].name.clone();
            let adv = seq.advance_for(stage);
            let mut cached: Vec<Tensor> = Vec::new();
            let keep = if method == Method::Awq {
                awq_batches
            } else {
                0
            };
            // RSQ: the attention probabilities of a site's block weight its tokens.
            let rsq = matches!(
                (method, self.cfg.importance),
                (Method::Gptq, Some(Importance::AttnCon))
            );
            let softmax_of = |i: usize| {
                rsq.then(|| importance::softmax_for(g, &self.idioms, self.layers[i].index))
                    .flatten()
            };
            // Site 0 is the stage's input; GPTQ adds the inputs of later readers of the
            // members' weights (`share-layers`), whose Hessians it sums.
            let (inputs, site_of) = if method == Method::Gptq {
                layers::reader_sites(g, &self.layers, stage.input, &members, |i| {
                    layers::later_readers(g, &self.layers, i, |k| {
                        self.q[k].is_none() && !self.layers[k].is_conv()
                    })
                })
            } else {
                (
                    vec![(stage.input, members[0])],
                    vec![vec![0]; members.len()],
                )
            };
            let mut sites: Vec<Site> = inputs
                .iter()
                .map(|&(x, k)| Site::new(x, softmax_of(k), n))
                .collect();
            let mut taps = Vec::new();
            for s in &sites {
                taps.push(s.input);
                taps.extend(s.softmax.map(|p| ValueRef::new(p, 0)));
            }
            let what = format!("input of `{name}`");
            runner.run(g, &taps, adv, &mut |b, outs| {
                let mut outs = outs.into_iter();
                for (si, site) in sites.iter_mut().enumerate() {
                    let t = outs
                        .next()
                        .ok_or_else(|| PassError::Invalid("no activation".into()))?;
                    if site.softmax.is_some() {
                        let p = outs
                            .next()
                            .ok_or_else(|| PassError::Invalid("no attention".into()))?;
                        let (Some(&nb), Some(&nt), 3) =
                            (t.shape().first(), t.shape().get(1), t.rank())
                        else {
                            return Err(PassError::Invalid(format!(
                                "{what}: token importance needs [batch, tokens, features] activations, got {:?}",
                                t.shape()
                            )));
                        };
                        let w = importance::attncon(&p, nb, nt)
                            .map_err(|e| PassError::Invalid(format!("{what}: {e}")))?;
                        let mut x = t.to_f32_vec();
                        importance::weight_rows(&mut x, n, &w)
                            .and_then(|_| site.stats.add_rows(&x))
                            .map_err(|e| PassError::Invalid(format!("{what}: {e}")))?;
                        continue;
                    }
                    site.stats.add(&t, &what)?;
                    if si == 0 && b < keep {
                        cached.push(t);
                    }
                }
                Ok(())
            })?;
            let softmax = sites[0].softmax;
            if softmax.is_some() {
                weighted += 1;
            }
            if let Some(a) = adv {
                seq.cut_moved(a);
            }
            match method {
                Method::Awq => {
                    self.awq_stage(g, runner, &members, stage.input, &sites[0].stats, &cached)?
                }
                _ => self.gptq_stage(g, &members, &sites, &site_of)?,
            }
            seq.finish(stage);
            pb.inc(1);
        }
        pb.finish_and_clear();
        if self.cfg.importance == Some(Importance::AttnCon) {
            cx.note(format!(
                "RSQ token importance (attncon, min-max [{}, {}], mean 1 per sequence): {weighted} of {} stages weighted (the others have no attention block)",
                importance::R_MIN,
                importance::R_MAX,
                stages.len()
            ));
        }
        Ok(())
    }

    /// GPTQ on the stage's members. A member whose weight later layers read too gets the
    /// sum of its sites' Hessians (`site_of[m]` indexes `sites`): the shared codes
    /// minimise `Σ_sites ‖(W − Q) X_site‖²`, the error of every reader, not the first's.
    fn gptq_stage(
        &mut self,
        g: &mut Graph,
        members: &[usize],
        sites: &[Site],
        site_of: &[Vec<usize>],
    ) -> Result<(), PassError> {
        let (Some(h0), Some(gram)) = (sites[0].stats.hessian(), sites[0].stats.gram()) else {
            return Err(PassError::Invalid("no Hessian was collected".into()));
        };
        for (m, &i) in members.iter().enumerate() {
            // Another reader of a weight GPTQ already quantized (with the Hessians of all
            // its readers): one weight, one set of codes.
            if let Some(j) = self.same_weight_as(g, i) {
                self.take_codes_of(g, i, j);
                continue;
            }
            let mut h = h0.clone();
            for &s in &site_of[m][1..] {
                let hs = sites[s]
                    .stats
                    .hessian()
                    .ok_or_else(|| PassError::Invalid("no Hessian was collected".into()))?;
                h.iter_mut().zip(&hs).for_each(|(a, b)| *a += b);
            }
            let l = &self.layers[i];
            self.quantized_from[i] = layers::weight_node(g, l);
            let w = read_w(g, l)?;
            let cfg = GptqConfig {
                grid: self.grid(),
                group: self.group_for(l),
                block: GPTQ_BLOCK,
                damp: self.cfg.damp,
                act_order: self.cfg.act_order,
            };
            let res = gptq(&w, l.rows, l.cols, &h, &cfg)
                .map_err(|e| PassError::Invalid(format!("layer `{}`: {e}", l.name)))?;
            let deq = res.q.dequantize();
            self.twins[i] = weight_id(g, l);
            write_w(g, l, &deq)?;
            let r = &mut self.reports[i];
            r.method = "gptq".into();
            r.weight_mse = mse(&w, &deq);
            r.output_rel_err = Some(output_rel_err(&w, &deq, l.cols, &gram)?);
            r.extra = solve_note(res.loss, res.damp, self.cfg.damp, res.dead);
            if site_of[m].len() > 1 {
                r.extra = format!(
                    "{}; Hessian summed over the {} inputs that read this weight",
                    r.extra,
                    site_of[m].len()
                );
            }
            self.q[i] = Some(res.q);
        }
        Ok(())
    }

    fn awq_stage(
        &mut self,
        g: &mut Graph,
        runner: &CalibRunner,
        members: &[usize],
        x: ValueRef,
        stats: &InputStats,
        cached: &[Tensor],
    ) -> Result<(), PassError> {
        let Some(gram) = stats.gram() else {
            return Err(PassError::Invalid(
                "no input statistics were collected".into(),
            ));
        };
        let grid = self.grid();
        let group = self.group_for(&self.layers[members[0]]);
        let idx: Vec<usize> = members.iter().map(|&m| self.layers[m].index).collect();
        let measured = awq::measured_outputs(&self.idioms, &idx);
        let prev = fold::find_prev(g, &self.idioms, &self.layers, members, x);
        let mut ws = Vec::with_capacity(members.len());
        for &m in members {
            ws.push(read_w(g, &self.layers[m])?);
        }
        let search: Vec<SearchLayer> = members
            .iter()
            .zip(&ws)
            .map(|(&m, w)| {
                let l = &self.layers[m];
                SearchLayer {
                    node: l.node(),
                    w,
                    rows: l.rows,
                    cols: l.cols,
                    layout_in_out: l.layout == Layout::InOut,
                }
            })
            .collect();
        let batches: Vec<usize> = (0..cached.len()).collect();
        let found = awq::search_scales(
            g,
            runner,
            x,
            cached,
            &batches,
            &search,
            &measured,
            &stats.mean_abs(),
            grid,
            group,
        )?;
        drop(search);
        let s = found.scales;
        let scaled = s.iter().any(|&v| v != 1.0);
        let mut where_ = "none";
        if scaled {
            for w in ws.iter_mut() {
                fold::scale_columns(w, self.layers[members[0]].cols, &s);
            }
            where_ = match &prev {
                Prev::Norm(ni) => {
                    let norm = self.idioms.norms[*ni].clone();
                    fold::fold_into_norm(g, &norm, &s)?;
                    "norm"
                }
                Prev::Linear(p) => {
                    let lp = self.layers[*p].clone();
                    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
                    match self.q[*p].as_mut() {
                        Some(qp) => {
                            for (r, f) in inv.iter().enumerate() {
                                qp.scale_row(r, *f);
                            }
                            let deq = qp.dequantize();
                            write_w(g, &lp, &deq)?;
                            fold::fold_into_bias(g, &lp, &s)?;
                            self.twins[*p] = match self.twins[*p] {
                                Some(t) => Some(scaled_twin(g, &lp, t, &inv)?),
                                None => None,
                            };
                        }
                        None => fold::fold_into_linear_rows(g, &lp, &s)?,
                    }
                    "previous linear"
                }
                Prev::Mul => {
                    let ls: Vec<&Layer> = members.iter().map(|&m| &self.layers[m]).collect();
                    let name = ls[0].name.clone();
                    fold::insert_mul(g, x, &ls, &s, &name)?;
                    "explicit Mul"
                }
            };
        }
        // The Gram matrix of the scaled inputs x/s.
        let n = s.len();
        let gram_s: Vec<f64> = (0..n * n)
            .map(|k| gram[k] / (s[k / n] as f64 * s[k % n] as f64))
            .collect();
        let qk: Vec<usize> = self
            .idioms
            .attention
            .iter()
            .flat_map(|a| [a.q, a.k])
            .collect();
        for (j, &m) in members.iter().enumerate() {
            let l = self.layers[m].clone();
            let w = &ws[j];
            let ranges = if qk.contains(&l.index) {
                group_ranges(w, l.cols, group)
            } else {
                awq::clip_ranges(w, l.rows, l.cols, group, grid, &gram_s)
            };
            let mut q = QMatrix::zeroed(l.rows, l.cols, group, grid);
            rtn_with_ranges(w, &mut q, &ranges);
            let deq = q.dequantize();
            // The float twin is the column-scaled weight the codes were rounded from.
            self.twins[m] = Some(if scaled {
                add_twin(g, &l, w)?
            } else {
                weight_id(g, &l).ok_or_else(|| {
                    PassError::Invalid(format!("layer `{}`: its weight is not a constant", l.name))
                })?
            });
            write_w(g, &l, &deq)?;
            let r = &mut self.reports[m];
            r.method = "awq".into();
            r.weight_mse = mse(w, &deq);
            r.output_rel_err = Some(output_rel_err(w, &deq, l.cols, &gram_s)?);
            r.extra = format!(
                "α {:.2}, scales into {where_}, module loss {:.3e} (RTN {:.3e}){}",
                found.alpha,
                found.loss,
                found.rtn_loss,
                if qk.contains(&l.index) {
                    ", no clip (q/k)"
                } else {
                    ", clipped"
                }
            );
            self.q[m] = Some(q);
        }
        Ok(())
    }

    fn run_smoothquant(
        &mut self,
        g: &mut Graph,
        cx: &mut PassContext,
        runner: &mut CalibRunner,
    ) -> Result<(), PassError> {
        // Groups of layers behind a norm whose output only they read.
        let mut groups: Vec<(ValueRef, Vec<usize>, usize)> = Vec::new();
        let mut inputs: Vec<(ValueRef, Vec<usize>)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if l.is_conv() {
                continue;
            }
            let Some(x) = l.input(g) else { continue };
            match inputs.iter_mut().find(|(v, _)| *v == x) {
                Some((_, m)) => m.push(i),
                None => inputs.push((x, vec![i])),
            }
        }
        for (x, members) in inputs {
            if let Prev::Norm(ni) = fold::find_prev(g, &self.idioms, &self.layers, &members, x) {
                groups.push((x, members, ni));
            }
        }
        if !groups.is_empty() {
            let values: Vec<ValueRef> = groups.iter().map(|g| g.0).collect();
            let mut stats: Vec<InputStats> = groups
                .iter()
                .map(|(_, m, _)| InputStats::new(self.layers[m[0]].cols, false))
                .collect();
            runner.run(g, &values, None, &mut |_, outs| {
                for (s, t) in stats.iter_mut().zip(&outs) {
                    s.add(t, "smoothquant input")?;
                }
                Ok(())
            })?;
            let alpha = self.cfg.alpha as f32;
            for ((_, members, ni), st) in groups.iter().zip(&stats) {
                let cols = self.layers[members[0]].cols;
                let mut ws = Vec::new();
                for &m in members {
                    ws.push(read_w(g, &self.layers[m])?);
                }
                let refs: Vec<(&[f32], usize)> = ws
                    .iter()
                    .zip(members)
                    .map(|(w, &m)| (w.as_slice(), self.layers[m].cols))
                    .collect();
                let s = smooth_scales(st.max_abs(), &weight_col_max(&refs, cols), alpha);
                let norm = self.idioms.norms[*ni].clone();
                fold::fold_into_norm(g, &norm, &s)?;
                for (w, &m) in ws.iter_mut().zip(members) {
                    fold::scale_columns(w, cols, &s);
                    write_w(g, &self.layers[m], w)?;
                    self.reports[m].extra = format!("smoothed (α {alpha})");
                }
            }
            cx.note(format!(
                "SmoothQuant: smoothed {} groups of layers behind a norm (α {alpha})",
                groups.len()
            ));
        }
        runner.clear_cut();
        for i in 0..self.layers.len() {
            let extra = std::mem::take(&mut self.reports[i].extra);
            self.rtn_layer(g, i, "smoothquant")?;
            self.reports[i].extra = extra;
        }
        Ok(())
    }

    /// Static uint8 ranges for every layer input, then a QuantizeLinear/DequantizeLinear
    /// pair on each.
    fn quantize_activations(
        &mut self,
        g: &mut Graph,
        cx: &mut PassContext,
        runner: &mut CalibRunner,
    ) -> Result<(), PassError> {
        runner.clear_cut();
        let mut values: Vec<ActEdge> = Vec::new();
        for l in &self.layers {
            let Some(x) = l.input(g) else { continue };
            match values.iter_mut().find(|(v, _, _)| *v == x) {
                Some((_, r, _)) => r.push((l.node(), 0)),
                None => values.push((x, vec![(l.node(), 0)], format!("{}_input", l.name))),
            }
        }
        let vs: Vec<ValueRef> = values.iter().map(|v| v.0).collect();
        let mut stats = vec![ActStats::default(); vs.len()];
        runner.run(g, &vs, None, &mut |_, outs| {
            for (s, t) in stats.iter_mut().zip(&outs) {
                s.add_range(&t.f32_cow());
            }
            Ok(())
        })?;
        let method = self.cfg.calib_method;
        if method != super::options::CalibMethod::MinMax {
            stats.iter_mut().for_each(|s| s.start_histogram(method));
            runner.run(g, &vs, None, &mut |_, outs| {
                for (s, t) in stats.iter_mut().zip(&outs) {
                    s.add_histogram(&t.f32_cow());
                }
                Ok(())
            })?;
        }
        for ((v, readers, name), st) in values.iter().zip(&stats) {
            let (lo, hi) = st.range(method);
            let (s, z) = uint8_params(lo, hi);
            insert_activation_qdq(g, *v, readers, s, z, name)?;
            cx.note(format!(
                "activation `{name}`: range [{lo:.4}, {hi:.4}] (observed [{:.4}, {:.4}]) → scale {s:.4e}, zero point {z}",
                st.min, st.max
            ));
        }
        Ok(())
    }

    fn lower(&mut self, g: &mut Graph) -> Result<(), PassError> {
        // The node each layer became (its MatMulNBits, or itself reading a
        // DequantizeLinear), and whether it is a MatMulNBits.
        let mut lowered: Vec<Option<(NodeId, bool)>> = vec![None; self.layers.len()];
        for i in 0..self.layers.len() {
            let Some(q) = self.q[i].take() else { continue };
            let l = self.layers[i].clone();
            let nbits_ok = can_lower(g, &l, &q);
            let use_nbits = match self.cfg.format {
                Some(Format::NBits) => nbits_ok,
                Some(Format::Qdq) => false,
                None => {
                    nbits_ok && self.cfg.bits <= 4 && self.cfg.group > 0 && self.cfg.act_bits == 0
                }
            };
            // A reader of a weight lowered before reads the first reader's constants (the
            // format follows from the codes and the shape, so it is the same).
            let shared = self.shares[i]
                .and_then(|j| lowered[j])
                .filter(|&(_, nbits)| nbits == use_nbits)
                .map(|(node, _)| node);
            let r = &mut self.reports[i];
            let node = if use_nbits {
                let (bytes, node) = lower_nbits(g, &l, &q)?;
                r.bytes_after = bytes;
                r.format = "MatMulNBits";
                if let Some(first) = shared {
                    // The same codes, scales and zero points as the first reader's: read
                    // those (the copies just made are dead and removed after lowering).
                    for k in 1..4 {
                        g.set_input(node, k, g.node(first).input(k));
                    }
                    r.bytes_after = 0;
                }
                node
            } else if let Some(first) = shared {
                g.set_input(l.node(), 1, g.node(first).input(1));
                r.bytes_after = 0;
                r.format = "QDQ";
                l.node()
            } else {
                r.bytes_after = lower_qdq(g, &l, &q)?;
                r.format = "QDQ";
                l.node()
            };
            lowered[i] = Some((node, use_nbits));
            if let Some(t) = self.twins[i] {
                g.float_originals.insert(node, t);
            }
        }
        Ok(())
    }

    fn report(&self, cx: &mut PassContext) {
        let (mut before, mut after) = (0u64, 0u64);
        let (mut wsum, mut osum, mut ocount) = (0f64, 0f64, 0usize);
        for (i, (l, r)) in self.layers.iter().zip(&self.reports).enumerate() {
            // A weight several layers read counts once: with its first reader.
            if self.shares[i].is_none() {
                before += l.float_bytes();
            }
            after += r.bytes_after;
            wsum += r.weight_mse;
            let out = match r.output_rel_err {
                Some(e) => {
                    osum += e;
                    ocount += 1;
                    format!(", output rel. error {e:.3e} (calibration)")
                }
                None => String::new(),
            };
            let grp = if l.is_conv() || self.cfg.group == 0 {
                "per-channel".to_string()
            } else {
                format!("g{}", self.cfg.group)
            };
            cx.note(format!(
                "`{}` ({}): int{} {grp} {} {} → {}; weight MSE {:.3e}{out}; {} → {} bytes{}",
                l.name,
                l.shape_text(),
                self.cfg.bits,
                if self.cfg.sym { "sym" } else { "asym" },
                r.method,
                r.format,
                r.weight_mse,
                l.float_bytes(),
                r.bytes_after,
                if r.extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.extra)
                }
            ));
        }
        let n = self.layers.len().max(1) as f64;
        let shared = self.shares.iter().filter(|s| s.is_some()).count();
        cx.note(format!(
            "quantized {} layers{}: {before} → {after} weight bytes",
            self.layers.len(),
            if shared > 0 {
                format!(" ({shared} of them reading a weight another layer reads)")
            } else {
                String::new()
            }
        ));
        cx.measured("weight_mse_mean", wsum / n);
        if ocount > 0 {
            cx.measured("layer_output_rel_error_mean", osum / ocount as f64);
        }
    }
}

/// The id of the weight the layer reads now.
fn weight_id(g: &Graph, l: &Layer) -> Option<WeightId> {
    let v = g.node(l.node()).input(1)?;
    match g.node(v.node).op {
        Op::Const(id) => Some(id),
        _ => None,
    }
}

/// Stores `w` (W-form) as a float twin in the layer's storage layout, in the store only:
/// no node reads it.
fn add_twin(g: &mut Graph, l: &Layer, w: &[f32]) -> Result<WeightId, PassError> {
    let old = layers::weight(g, l)?;
    let (name, dims) = (format!("{}_float", old.name), old.dims.clone());
    let t = Tensor::from_f32_as(
        l.dtype,
        dims.iter().map(|&d| d as usize).collect(),
        layers::to_storage(l, w),
    )?;
    Ok(g.weights.add(t.to_weight(&name)?))
}

/// The twin `t` with output row r scaled by `f[r]` (AWQ folding into a quantized
/// preceding layer scales its rows; the twin must follow).
fn scaled_twin(g: &mut Graph, l: &Layer, t: WeightId, f: &[f32]) -> Result<WeightId, PassError> {
    let v = g
        .weights
        .get(t)
        .to_f32_vec()
        .map_err(|e| PassError::Invalid(e.to_string()))?;
    let mut w = match l.layout {
        Layout::InOut => crate::calib::linalg::transpose(&v, l.cols, l.rows),
        _ => v,
    };
    for (r, row) in w.chunks_mut(l.cols.max(1)).enumerate() {
        row.iter_mut().for_each(|x| *x *= f[r]);
    }
    add_twin(g, l, &w)
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    s / a.len().max(1) as f64
}

/// `tr(Δ G Δᵀ) / tr(W G Wᵀ)` with Δ = W − Ŵ: the layer's relative output error on the
/// calibration inputs whose Gram matrix is `gram` (n × n).
pub fn output_rel_err(w: &[f32], wq: &[f32], cols: usize, gram: &[f64]) -> Result<f64, PassError> {
    let rows = w.len() / cols.max(1);
    let gm: Vec<f32> = gram.iter().map(|&v| v as f32).collect();
    let quad = |m: &[f32]| -> Result<f64, PassError> {
        let p = matmul(m, &gm, rows, cols, cols)?;
        Ok(p.iter().zip(m).map(|(a, b)| (a * b) as f64).sum())
    };
    let d: Vec<f32> = w.iter().zip(wq).map(|(a, b)| a - b).collect();
    let num = quad(&d)?;
    let den = quad(w)?;
    Ok(if den > 0.0 { num / den } else { num })
}

/// Relative RMS difference of the outputs (and top-1 agreement of rank ≥ 2 outputs) of
/// the original and quantized graphs on the first calibration batch.
pub fn end_to_end_error(
    orig: &Graph,
    g: &Graph,
    runner: &CalibRunner,
    cx: &mut PassContext,
) -> Result<(), PassError> {
    let Some(batch) = runner.batch(0) else {
        return Ok(());
    };
    let a = compc_runtime::run(orig, batch)?;
    let b = compc_runtime::run(g, batch)?;
    let (mut num, mut den) = (0f64, 0f64);
    let (mut same, mut total) = (0usize, 0usize);
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        if !x.dtype().is_float() || x.shape() != y.shape() {
            continue;
        }
        let (xv, yv) = (x.f32_cow(), y.f32_cow());
        for (p, q) in xv.iter().zip(yv.iter()) {
            num += ((p - q) as f64).powi(2);
            den += (*p as f64).powi(2);
        }
        if let (true, Some(&last)) = (x.rank() >= 2, x.shape().last()) {
            if last > 1 {
                for (r, s) in xv.chunks_exact(last).zip(yv.chunks_exact(last)) {
                    same += (argmax(r) == argmax(s)) as usize;
                    total += 1;
                }
            }
        }
    }
    if den > 0.0 {
        cx.measured("calib_output_rel_rmse", (num / den).sqrt());
    }
    if total > 0 {
        cx.measured("calib_top1_agreement", same as f64 / total as f64);
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &x)| if x > m.1 { (i, x) } else { m },
        )
        .0
}

/// One input whose statistics a stage collects: the stage's own, or (GPTQ) that of a
/// later reader of a member's weight, with the attention probabilities RSQ weights it by.
struct Site {
    input: ValueRef,
    softmax: Option<NodeId>,
    stats: InputStats,
}

impl Site {
    fn new(input: ValueRef, softmax: Option<NodeId>, n: usize) -> Site {
        Site {
            input,
            softmax,
            stats: InputStats::new(n, true),
        }
    }
}

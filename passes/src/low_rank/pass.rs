//! The `low-rank` pass: picks the float linear layers, decides each one's rank, collects
//! the calibration statistics the method needs (one run of the original model, as
//! SVD-LLM's and ASVD's references profile it), factors every weight and rewrites the
//! layer `y = x·B` into `y = (x·A)·B'` with a new MatMul for `A = W₁ᵀ` (in × r) and the
//! layer itself (keeping its bias) reading the r-feature result with `B' = W₂ᵀ` (r × out).
//! Output-feature PCA also changes the bias (a layer without one gains an `Add`).

use super::alloc::{allocate, Spectrum};
use super::factor::{self, Factors, Transform};
use super::options::{Alloc, LowRankConfig, Method};
use crate::calib::linalg::transpose;
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, InputStats};
use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::fold_affine::layer::insert_after_value;
use crate::idioms::{Idioms, LinearKind};
use crate::needs_calibration;
use crate::options::PassOptions;
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::prune::pass::block_linears;
use crate::quant::layers::{self, read_w, select_skipping, Layer, Layout};
use crate::quant::pass::end_to_end_error;
use compc_ir::op::{BinaryOp, Op};
use compc_ir::shape::{Dim, Shape, TensorType};
use compc_ir::{Graph, ValueRef};
use compc_runtime::Tensor;

pub struct LowRank {
    options: PassOptions,
}

impl LowRank {
    pub fn new(options: PassOptions) -> LowRank {
        LowRank { options }
    }
}

/// A value some layers read, and its width.
type LayerInput = (ValueRef, usize);

/// One layer to factor and the rank it gets.
struct Planned {
    layer: Layer,
    rank: usize,
    /// Index into the distinct layer inputs, then (once ties are known) into the pools
    /// of inputs whose statistics the layer is factored on.
    input: usize,
}

impl Pass for LowRank {
    fn name(&self) -> &'static str {
        "low-rank"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let cfg = LowRankConfig::resolve(&self.options).map_err(PassError::Invalid)?;
        if cfg.method.needs_calibration() && cx.calib.is_none() {
            return Err(PassError::Invalid(needs_calibration(&format!(
                "low-rank method={}",
                cfg.method.name()
            ))));
        }
        let idioms = Idioms::find(g)?;
        let (mut plan, inputs) = plan_layers(g, &idioms, &cfg, cx)?;
        if plan.is_empty() {
            cx.note("no layer is factored (the notes above say why each was left)");
            return Ok(Changed::No);
        }
        cx.note(format!(
            "method {}; {}{}",
            cfg.method.name(),
            cfg.describe(),
            match cfg.method {
                Method::Asvd => format!("; α {}", cfg.alpha),
                Method::SvdLlm | Method::PcaOut => format!("; damping {}", cfg.damp),
                Method::Svd => String::new(),
            }
        ));
        let original = cx.calib.map(|_| g.clone());
        let mut runner = match cx.calib {
            Some(c) => {
                layers::check_all_finite(g, plan.iter().map(|p| &p.layer))?;
                Some(CalibRunner::new(g, c, DEFAULT_BATCH)?)
            }
            None => None,
        };
        // Input statistics of every distinct layer input, on the original model.
        let stats = match runner.as_mut() {
            Some(r) => {
                let mut st: Vec<InputStats> = inputs
                    .iter()
                    .map(|&(_, n)| InputStats::new(n, true))
                    .collect();
                let values: Vec<ValueRef> = inputs.iter().map(|&(v, _)| v).collect();
                r.run(g, &values, None, &mut |_, outs| {
                    for (s, t) in st.iter_mut().zip(&outs) {
                        s.add(t, "low-rank layer input")?;
                    }
                    Ok(())
                })?;
                Some(st)
            }
            None => None,
        };
        // Readers of one weight (`share-layers`) are factored once, on their inputs'
        // statistics pooled (every input sees the same tokens, so the pooled moments are
        // the means of theirs): each plan entry now indexes its pool of inputs.
        let tie = ties(g, &plan);
        let pools = pool_inputs(&mut plan, &tie);
        let widths: Vec<usize> = pools.iter().map(|p| inputs[p[0]].1).collect();
        let pooled = |f: &dyn Fn(&InputStats) -> Vec<f64>| -> Option<Vec<Vec<f64>>> {
            stats.as_ref().map(|st| {
                pools
                    .iter()
                    .map(|pool| mean_of(pool.iter().map(|&i| f(&st[i]))))
                    .collect()
            })
        };
        let grams = pooled(&|s| s.gram().unwrap_or_default());
        let means = pooled(&|s| s.mean());
        let mean_abs = pooled(&|s| s.mean_abs().iter().map(|&a| a as f64).collect());
        // The input transform of each distinct input (ASVD's scales, SVD-LLM's whitening
        // factor), computed once for the layers that share it.
        let mut scales: Vec<Vec<f64>> = vec![vec![]; pools.len()];
        let mut lowers: Vec<Option<(faer::Mat<f64>, f64)>> = vec![None; pools.len()];
        // Output PCA: the input covariance. The output covariance W·cov·Wᵀ comes from the
        // input statistics already streamed for the other methods (Gram matrix XᵀX/N and
        // mean x̄, cov = XᵀX/N − x̄x̄ᵀ in f64) rather than from streaming every layer's
        // output, which would mean a second calibration run over the wider activations.
        let mut covs: Vec<Option<faer::Mat<f64>>> = vec![None; pools.len()];
        for p in &plan {
            let i = p.input;
            let fail = |e: String| PassError::Invalid(format!("layer `{}`: {e}", p.layer.name));
            match cfg.method {
                Method::Svd => {}
                Method::Asvd if scales[i].is_empty() => {
                    scales[i] = mean_abs.as_ref().expect("checked above")[i]
                        .iter()
                        .map(|&a| a.powf(cfg.alpha) + 1e-6)
                        .collect();
                }
                Method::SvdLlm if lowers[i].is_none() => {
                    let gram = &grams.as_ref().expect("checked above")[i];
                    lowers[i] = Some(factor::whitening(gram, widths[i], cfg.damp).map_err(fail)?);
                }
                Method::PcaOut if covs[i].is_none() => {
                    let gram = &grams.as_ref().expect("checked above")[i];
                    let mean = &means.as_ref().expect("checked above")[i];
                    let n = widths[i];
                    if gram.len() != n * n {
                        return Err(fail("no calibration Gram matrix was collected".into()));
                    }
                    covs[i] = Some(damped_covariance(gram, mean, n, cfg.damp));
                }
                _ => {}
            }
        }
        let transform = |p: &Planned| match cfg.method {
            Method::Svd => Transform::Identity,
            Method::Asvd => Transform::Scale(&scales[p.input]),
            Method::SvdLlm => Transform::Lower(&lowers[p.input].as_ref().expect("set above").0),
            Method::PcaOut => Transform::OutputPca {
                cov: covs[p.input].as_ref().expect("set above"),
                mean: &means.as_ref().expect("checked above")[p.input],
            },
        };
        if cfg.alloc == Alloc::Energy {
            let ranks = allocate_ranks(g, &plan, &transform, cx)?;
            for (p, r) in plan.iter_mut().zip(ranks) {
                p.rank = r;
            }
            // Tied readers take their first reader's rank (and factors, below).
            for k in 0..plan.len() {
                plan[k].rank = plan[tie[k]].rank;
            }
        }
        let constants_before = crate::same_constants::constants(g);
        let mut factored: Vec<Option<Factors>> = vec![None; plan.len()];
        let pb = cx.progress_bar(plan.len() as u64, "low-rank");
        let (mut before, mut after) = (0u64, 0u64);
        let (mut wsum, mut osum, mut ocount) = (0f64, 0f64, 0usize);
        for (k, p) in plan.iter().enumerate() {
            let l = &p.layer;
            let (m, n, r) = (l.rows, l.cols, p.rank);
            let w = read_w(g, l)?;
            let fail = |e: String| PassError::Invalid(format!("layer `{}`: {e}", l.name));
            let mut extra = match &lowers[p.input] {
                Some((_, frac)) if *frac != cfg.damp => format!(", damping raised to {frac}"),
                _ => String::new(),
            };
            let first = tie[k];
            let f = match factored[first].clone() {
                // Another reader of a weight factored already: the same factors (their
                // constants are merged below), counted once.
                Some(f) if first != k => {
                    extra = format!(
                        "{extra}; reads the weight of `{}`: its factors, stored once",
                        plan[first].layer.name
                    );
                    f
                }
                _ => factor::factor(&w, m, n, r, &transform(p)).map_err(fail)?,
            };
            if pools[p.input].len() > 1 && first == k {
                extra = format!(
                    "{extra}; statistics of the {} inputs that read this weight",
                    pools[p.input].len()
                );
            }
            factored[k] = Some(f.clone());
            let werr = factor::weight_rel_err(&w, &f, m, n);
            let oerr = match (&grams, &means) {
                (Some(gr), Some(mu)) => Some(factor::output_rel_err_with_bias(
                    &w,
                    &f,
                    m,
                    n,
                    &gr[p.input],
                    &mu[p.input],
                )),
                _ => None,
            };
            rewrite(g, l, &f)?;
            // A bias the layer did not have counts as new parameters.
            let new_bias = if f.bias_shift.is_empty() {
                false
            } else {
                shift_bias(g, l, &f.bias_shift)?
            };
            let (pb_, pa) = (
                (m * n) as u64,
                (r * (m + n) + if new_bias { m } else { 0 }) as u64,
            );
            let extra = if new_bias {
                format!("{extra}; new bias of {m}")
            } else {
                extra
            };
            if first == k {
                before += pb_;
                after += pa;
            }
            wsum += werr;
            let out = match oerr {
                Some(e) => {
                    osum += e;
                    ocount += 1;
                    format!(", output rel. error {e:.3e} (calibration)")
                }
                None => String::new(),
            };
            cx.note(format!(
                "`{}` ({}): rank {r} of {}, {pb_} → {pa} parameters; weight rel. error {werr:.3e}{out}{extra}",
                l.name,
                l.shape_text(),
                m.min(n)
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let merged = crate::same_constants::merge_new(g, &constants_before)?;
        if merged > 0 {
            cx.note(format!(
                "{merged} factor and bias constants of readers of shared weights stored once"
            ));
        }
        let removed = remove_dead_nodes(g)?;
        cx.touch(2 * plan.len() + removed);
        cx.note(format!(
            "factored {} layers: {before} → {after} parameters ({:.1}% kept)",
            plan.len(),
            100.0 * after as f64 / before.max(1) as f64
        ));
        cx.measured("lowrank_params_before", before as f64);
        cx.measured("lowrank_params_after", after as f64);
        cx.measured("weight_rel_error_mean", wsum / plan.len() as f64);
        if ocount > 0 {
            cx.measured("layer_output_rel_error_mean", osum / ocount as f64);
        }
        if let (Some(orig), Some(r)) = (original, runner.as_ref()) {
            end_to_end_error(&orig, g, r, cx)?;
        }
        Ok(Changed::Yes)
    }
}

/// Ranks for `alloc=energy`: the same total parameters as the planned (uniform) ranks,
/// spread over the layers by normalised singular-value energy (see [`super::alloc`]).
fn allocate_ranks<'t>(
    g: &Graph,
    plan: &[Planned],
    transform: &dyn Fn(&Planned) -> Transform<'t>,
    cx: &mut PassContext,
) -> Result<Vec<usize>, PassError> {
    let mut spectra = Vec::with_capacity(plan.len());
    for p in plan {
        let l = &p.layer;
        let w = read_w(g, l)?;
        let sigma = factor::spectrum(&w, l.rows, l.cols, &transform(p))
            .map_err(|e| PassError::Invalid(format!("layer `{}`: {e}", l.name)))?;
        spectra.push(Spectrum {
            m: l.rows,
            n: l.cols,
            sigma,
        });
    }
    let budget: u64 = plan
        .iter()
        .map(|p| (p.rank * (p.layer.rows + p.layer.cols)) as u64)
        .sum();
    let ranks = allocate(&spectra, budget);
    let used: u64 = plan
        .iter()
        .zip(&ranks)
        .map(|(p, &r)| (r * (p.layer.rows + p.layer.cols)) as u64)
        .sum();
    let (lo, hi) = (ranks.iter().min(), ranks.iter().max());
    cx.note(format!(
        "ranks allocated by singular-value energy: {used} of the uniform {budget} factor parameters, ranks {}–{}",
        lo.copied().unwrap_or(0),
        hi.copied().unwrap_or(0)
    ));
    Ok(ranks)
}

/// The layers to factor with their ranks, and the distinct values they read with their
/// widths. Layers left alone are noted with the reason.
fn plan_layers(
    g: &Graph,
    idioms: &Idioms,
    cfg: &LowRankConfig,
    cx: &mut PassContext,
) -> Result<(Vec<Planned>, Vec<LayerInput>), PassError> {
    let sel = select_skipping(g, idioms, &cfg.skip);
    for (n, w) in &sel.skipped {
        cx.note(format!("left `{n}` as it is: {w}"));
    }
    if sel.already_quantized > 0 {
        cx.note(format!(
            "left {} quantized linear layers as they are: low-rank factors float weights \
             (run it before quant)",
            sel.already_quantized
        ));
    }
    let inside = block_linears(idioms);
    let use_blocks = !cfg.all_layers && !inside.is_empty();
    let mut outside = 0;
    let mut plan = Vec::new();
    let mut inputs: Vec<LayerInput> = Vec::new();
    for l in sel.layers {
        if use_blocks && !inside.contains(&l.index) {
            outside += 1;
            continue;
        }
        if l.is_conv() {
            cx.note(format!(
                "left `{}` as it is: low-rank factors MatMul/Gemm layers",
                l.name
            ));
            continue;
        }
        let (m, n) = (l.rows, l.cols);
        let r = cfg.rank_for(m, n);
        if r == 0 {
            cx.note(format!(
                "left `{}` ({}) as it is: the ratio leaves rank 0",
                l.name,
                l.shape_text()
            ));
            continue;
        }
        // Output PCA gives a layer without a bias one (the dropped part of the mean).
        let bias_cost = if cfg.method == Method::PcaOut && l.linear.bias.is_none() {
            m
        } else {
            0
        };
        if r * (m + n) + bias_cost >= m * n && !cfg.force {
            cx.note(format!(
                "left `{}` ({}) as it is: rank {r} saves nothing ({} ≥ {} parameters)",
                l.name,
                l.shape_text(),
                r * (m + n) + bias_cost,
                m * n
            ));
            continue;
        }
        if cfg.method == Method::PcaOut {
            if let Err(why) = bias_values(g, &l) {
                cx.note(format!("left `{}` as it is: {why}", l.name));
                continue;
            }
        }
        let x = l
            .input(g)
            .ok_or_else(|| PassError::Invalid(format!("layer `{}` has no input", l.name)))?;
        let input = match inputs.iter().position(|&(v, _)| v == x) {
            Some(i) => i,
            None => {
                inputs.push((x, n));
                inputs.len() - 1
            }
        };
        plan.push(Planned {
            layer: l,
            rank: r,
            input,
        });
    }
    if outside > 0 {
        cx.note(format!(
            "left {outside} linear layers outside attention/MLP blocks as they are (layers=all factors them)"
        ));
    }
    Ok((plan, inputs))
}

/// Rewrites `l` into `MatMul(x, W₁ᵀ)` followed by the layer itself reading the result
/// with `W₂` as its weight (in the layer's own layout, so a Gemm keeps its bias).
pub fn rewrite(g: &mut Graph, l: &Layer, f: &Factors) -> Result<(), PassError> {
    let (m, n, r) = (l.rows, l.cols, f.rank);
    let node = l.node();
    let x = l
        .input(g)
        .ok_or_else(|| PassError::Invalid(format!("layer `{}` has no input", l.name)))?;
    let base = layers::weight(g, l)?.name.clone();
    let base = if base.is_empty() {
        l.name.clone()
    } else {
        base
    };
    let a = Tensor::from_f32_as(l.dtype, vec![n, r], transpose(&f.w1, r, n))?;
    let ca = g.add_const(a.to_weight(&format!("{base}.lowrank_a"))?);
    let ty = match g.value_type(x) {
        Some(TensorType {
            dtype,
            shape: Shape::Ranked(dims),
        }) if !dims.is_empty() => {
            let mut dims = dims.clone();
            *dims.last_mut().expect("not empty") = Dim::Known(r as u64);
            TensorType::new(*dtype, Shape::Ranked(dims))
        }
        _ => TensorType::unranked(l.dtype),
    };
    let name = format!("{}_lowrank", g.node(node).name);
    let mm = g.add_node(
        Op::MatMul,
        vec![Some(x), Some(ValueRef::new(ca, 0))],
        vec![ty],
        name,
    );
    let (dims, data) = match l.layout {
        Layout::InOut => (vec![r, m], transpose(&f.w2, m, r)),
        Layout::OutIn => (vec![m, r], f.w2.clone()),
        Layout::Conv(_) => {
            return Err(PassError::Invalid(format!(
                "layer `{}`: low-rank does not factor convolutions",
                l.name
            )))
        }
    };
    let b = Tensor::from_f32_as(l.dtype, dims, data)?;
    let cb = g.add_const(b.to_weight(&format!("{base}.lowrank_b"))?);
    g.set_input(node, 0, Some(ValueRef::new(mm, 0)));
    g.set_input(node, 1, Some(ValueRef::new(cb, 0)));
    Ok(())
}

/// The values of `l`'s bias (`None` when it has none, or a Gemm's `beta` is 0), as the
/// `m` per-output values it adds before any Gemm `beta`; an error names what output PCA
/// cannot rewrite (a bias that is not a constant of 1 or `m` values, a layer kind other
/// than MatMul or Gemm).
fn bias_values(g: &Graph, l: &Layer) -> Result<Option<Vec<f32>>, String> {
    let m = l.rows;
    let bias = match l.linear.kind {
        LinearKind::MatMul => l.linear.bias.map(|(_, v)| v),
        LinearKind::Gemm { .. } => match &g.node(l.node()).op {
            Op::Gemm(a) if a.beta == 0.0 => None,
            _ => g.node(l.node()).input(2),
        },
        _ => return Err("pca-out rewrites the bias of MatMul and Gemm layers only".into()),
    };
    let Some(v) = bias else { return Ok(None) };
    let w = g
        .const_weight(v)
        .ok_or("pca-out changes the bias, and this one is not a constant")?;
    let b = w.to_f32_vec().map_err(|e| e.to_string())?;
    match b.len() {
        1 => Ok(Some(vec![b[0]; m])),
        k if k == m => Ok(Some(b)),
        k => Err(format!(
            "pca-out changes the bias, and this one has {k} values for {m} outputs"
        )),
    }
}

/// Adds `shift` (m values) to what `l`'s bias contributes to its outputs, after
/// [`rewrite`]: a MatMul's bias `Add` gets a new constant (new, as the old one may have
/// other readers) and a MatMul without one gains an `Add`; a Gemm's `C` becomes
/// `C + α·shift/β` (the product it scales is `α·x·B`). Returns whether the layer gained
/// a bias.
fn shift_bias(g: &mut Graph, l: &Layer, shift: &[f64]) -> Result<bool, PassError> {
    let fail = |e: String| PassError::Invalid(format!("layer `{}`: {e}", l.name));
    let m = l.rows;
    if shift.len() != m {
        return Err(fail(format!(
            "bias shift of {} values for {m} outputs",
            shift.len()
        )));
    }
    let node = l.node();
    let current = bias_values(g, l).map_err(fail)?;
    let bias_name = |g: &Graph, v: Option<ValueRef>| {
        v.and_then(|v| g.const_weight(v))
            .map(|w| w.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{}.lowrank_bias", l.name))
    };
    match l.linear.kind {
        LinearKind::Gemm { .. } => {
            let (alpha, beta) = match &g.node(node).op {
                Op::Gemm(a) => (a.alpha as f64, a.beta as f64),
                _ => return Err(fail("the layer is no longer a Gemm".into())),
            };
            let created = current.is_none();
            let (old, beta) = match current {
                Some(c) => (c, beta),
                // Without C, beta plays no part: it becomes 1 for the new C.
                None => (vec![0.0; m], 1.0),
            };
            let data: Vec<f32> = old
                .iter()
                .zip(shift)
                .map(|(&c, &s)| (c as f64 + alpha * s / beta) as f32)
                .collect();
            let name = bias_name(g, g.node(node).input(2));
            let t = Tensor::from_f32_as(l.dtype, vec![m], data)?;
            let c = g.add_const(t.to_weight(&name)?);
            if let Op::Gemm(a) = &mut g.node_mut(node).op {
                a.beta = beta as f32;
            }
            let mut inputs = g.node(node).inputs().to_vec();
            inputs.resize(3.max(inputs.len()), None);
            inputs[2] = Some(ValueRef::new(c, 0));
            g.set_inputs(node, inputs);
            Ok(created)
        }
        _ => {
            let data: Vec<f32> = match &current {
                Some(b) => b
                    .iter()
                    .zip(shift)
                    .map(|(&b, &s)| (b as f64 + s) as f32)
                    .collect(),
                None => shift.iter().map(|&s| s as f32).collect(),
            };
            match l.linear.bias {
                Some((add, bv)) => {
                    let name = bias_name(g, Some(bv));
                    let t = Tensor::from_f32_as(l.dtype, vec![m], data)?;
                    let c = ValueRef::new(g.add_const(t.to_weight(&name)?), 0);
                    let slots: Vec<usize> = (0..g.node(add).inputs().len())
                        .filter(|&i| g.node(add).input(i) == Some(bv))
                        .collect();
                    for i in slots {
                        g.set_input(add, i, Some(c));
                    }
                    Ok(false)
                }
                None => {
                    let t = Tensor::from_f32_as(l.dtype, vec![m], data)?;
                    let c = g.add_const(t.to_weight(&format!("{}.lowrank_bias", l.name))?);
                    insert_after_value(
                        g,
                        ValueRef::new(node, 0),
                        BinaryOp::Add,
                        ValueRef::new(c, 0),
                        &format!("{}_lowrank", g.node(node).name),
                    )?;
                    Ok(true)
                }
            }
        }
    }
}

/// The centred input covariance `G − x̄x̄ᵀ` plus `damp ×` its mean diagonal on the
/// diagonal. Without the ridge, a calibration set with fewer distinct tokens than input
/// features gives a rank-deficient output covariance `W C Wᵀ`, whose eigenvectors past
/// its rank are arbitrary: they need not span W's range, so even a rank of min(m, n)
/// would lose part of every output. With it, those directions are ranked by W's own
/// energy (`λ W Wᵀ`), as a plain SVD would rank them.
fn damped_covariance(gram: &[f64], mean: &[f64], n: usize, damp: f64) -> faer::Mat<f64> {
    let cov = |a: usize, b: usize| gram[a * n + b] - mean[a] * mean[b];
    let mean_diag = (0..n).map(|a| cov(a, a)).sum::<f64>() / n.max(1) as f64;
    let lambda = damp * mean_diag.max(0.0);
    faer::Mat::<f64>::from_fn(n, n, |a, b| cov(a, b) + if a == b { lambda } else { 0.0 })
}

/// For each plan entry, the first entry reading the same weight in the same form (itself
/// when none does): `share-layers` ties layers to one constant.
fn ties(g: &Graph, plan: &[Planned]) -> Vec<usize> {
    (0..plan.len())
        .map(|k| {
            let (lk, wk) = (&plan[k].layer, layers::weight_node(g, &plan[k].layer));
            (0..k)
                .find(|&j| {
                    layers::weight_node(g, &plan[j].layer) == wk
                        && layers::same_form(&plan[j].layer, lk)
                })
                .unwrap_or(k)
        })
        .collect()
}

/// Groups each tie's distinct inputs into one pool and points every plan entry at its
/// pool (an untied layer's pool is its own input). Returns the pools.
fn pool_inputs(plan: &mut [Planned], tie: &[usize]) -> Vec<Vec<usize>> {
    let mut pools: Vec<Vec<usize>> = Vec::new();
    let mut of = Vec::with_capacity(plan.len());
    for k in 0..plan.len() {
        let mut pool: Vec<usize> = (0..plan.len())
            .filter(|&j| tie[j] == tie[k])
            .map(|j| plan[j].input)
            .collect();
        pool.sort_unstable();
        pool.dedup();
        of.push(match pools.iter().position(|p| *p == pool) {
            Some(i) => i,
            None => {
                pools.push(pool);
                pools.len() - 1
            }
        });
    }
    for (p, i) in plan.iter_mut().zip(of) {
        p.input = i;
    }
    pools
}

/// The element-wise mean of equally long vectors (one vector: itself, exactly).
fn mean_of(vs: impl Iterator<Item = Vec<f64>>) -> Vec<f64> {
    let mut acc: Vec<f64> = Vec::new();
    let mut count = 0usize;
    for v in vs {
        if acc.is_empty() {
            acc = v;
        } else {
            acc.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
        }
        count += 1;
    }
    if count > 1 {
        acc.iter_mut().for_each(|a| *a /= count as f64);
    }
    acc
}

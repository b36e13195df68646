//! The `low-rank` pass: picks the float linear layers, decides each one's rank, collects
//! the calibration statistics the method needs (one run of the original model, as
//! SVD-LLM's and ASVD's references profile it), factors every weight and rewrites the
//! layer `y = x·B` into `y = (x·A)·B'` with a new MatMul for `A = W₁ᵀ` (in × r) and the
//! layer itself (keeping its bias) reading the r-feature result with `B' = W₂ᵀ` (r × out).

use super::alloc::{allocate, Spectrum};
use super::factor::{self, Factors, Transform};
use super::options::{Alloc, LowRankConfig, Method};
use crate::calib::linalg::transpose;
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, InputStats};
use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::idioms::Idioms;
use crate::options::PassOptions;
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::prune::pass::block_linears;
use crate::quant::layers::{self, read_w, select_skipping, Layer, Layout};
use crate::quant::pass::end_to_end_error;
use compc_ir::op::Op;
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
    /// Index into the distinct layer inputs (for the statistics).
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
            return Err(PassError::Invalid(format!(
                "low-rank method={} needs calibration data (give --calib CALIB.npz)",
                cfg.method.name()
            )));
        }
        let idioms = Idioms::find(g)?;
        let (mut plan, inputs) = plan_layers(g, &idioms, &cfg, cx)?;
        if plan.is_empty() {
            cx.note("no layer is factored: none would save parameters at this rank");
            return Ok(Changed::No);
        }
        cx.note(format!(
            "method {}; {}{}",
            cfg.method.name(),
            cfg.describe(),
            match cfg.method {
                Method::Asvd => format!("; α {}", cfg.alpha),
                Method::SvdLlm => format!("; damping {}", cfg.damp),
                Method::Svd => String::new(),
            }
        ));
        let original = cx.calib.map(|_| g.clone());
        let mut runner = match cx.calib {
            Some(c) => Some(CalibRunner::new(g, c, DEFAULT_BATCH)?),
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
        let grams: Option<Vec<Vec<f64>>> = stats
            .as_ref()
            .map(|st| st.iter().map(|s| s.gram().unwrap_or_default()).collect());
        // The input transform of each distinct input (ASVD's scales, SVD-LLM's whitening
        // factor), computed once for the layers that share it.
        let mut scales: Vec<Vec<f64>> = vec![vec![]; inputs.len()];
        let mut lowers: Vec<Option<(faer::Mat<f64>, f64)>> = vec![None; inputs.len()];
        for p in &plan {
            let i = p.input;
            let fail = |e: String| PassError::Invalid(format!("layer `{}`: {e}", p.layer.name));
            match cfg.method {
                Method::Svd => {}
                Method::Asvd if scales[i].is_empty() => {
                    let st = &stats.as_ref().expect("checked above")[i];
                    scales[i] = st
                        .mean_abs()
                        .iter()
                        .map(|&a| (a as f64).powf(cfg.alpha) + 1e-6)
                        .collect();
                }
                Method::SvdLlm if lowers[i].is_none() => {
                    let gram = &grams.as_ref().expect("checked above")[i];
                    lowers[i] = Some(factor::whitening(gram, inputs[i].1, cfg.damp).map_err(fail)?);
                }
                _ => {}
            }
        }
        let transform = |p: &Planned| match cfg.method {
            Method::Svd => Transform::Identity,
            Method::Asvd => Transform::Scale(&scales[p.input]),
            Method::SvdLlm => Transform::Lower(&lowers[p.input].as_ref().expect("set above").0),
        };
        if cfg.alloc == Alloc::Energy {
            let ranks = allocate_ranks(g, &plan, &transform, cx)?;
            for (p, r) in plan.iter_mut().zip(ranks) {
                p.rank = r;
            }
        }
        let pb = cx.progress_bar(plan.len() as u64, "low-rank");
        let (mut before, mut after) = (0u64, 0u64);
        let (mut wsum, mut osum, mut ocount) = (0f64, 0f64, 0usize);
        for p in &plan {
            let l = &p.layer;
            let (m, n, r) = (l.rows, l.cols, p.rank);
            let w = read_w(g, l)?;
            let fail = |e: String| PassError::Invalid(format!("layer `{}`: {e}", l.name));
            let extra = match &lowers[p.input] {
                Some((_, frac)) if *frac != cfg.damp => format!(", damping raised to {frac}"),
                _ => String::new(),
            };
            let f = factor::factor(&w, m, n, r, &transform(p)).map_err(fail)?;
            let werr = factor::weight_rel_err(&w, &f, m, n);
            let oerr = grams
                .as_ref()
                .map(|gr| factor::output_rel_err(&w, &f, m, n, &gr[p.input]));
            rewrite(g, l, &f)?;
            let (pb_, pa) = ((m * n) as u64, (r * (m + n)) as u64);
            before += pb_;
            after += pa;
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
        if r * (m + n) >= m * n && !cfg.force {
            cx.note(format!(
                "left `{}` ({}) as it is: rank {r} saves nothing ({} ≥ {} parameters)",
                l.name,
                l.shape_text(),
                r * (m + n),
                m * n
            ));
            continue;
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

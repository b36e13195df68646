//! The `fold-affine` pass. `method=cwac`: for every quantized linear (in block order,
//! each stage calibrated on a graph whose earlier layers are already compensated), stream
//! the quantized output `y_q` and the float twin's output on the same input (`x·B_fp`, or
//! the Conv/Gemm op run on the twin) through [`ChannelSums`], solve the per-channel affine
//! map in closed form and fold it into the layer's scales and bias. `method=qwt` shares
//! the checks and the twins and hands over to [`super::qwt`].
//!
//! The float twins come from `Graph::float_originals`, which `quant` fills: after
//! quantization the float weights are no longer in the graph, and rerunning the quantizer
//! here (or loading a second model) would duplicate `quant`'s options or tie the result to
//! a file that may not match. Keeping the ids of the weights the store still holds is free
//! and always matches what was quantized (AWQ's scaled weights included).

use super::affine::{Affine, ChannelSums};
use super::layer::{self, QLayer};
use super::options::{FoldAffineConfig, Method};
use super::qwt;
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, Sequencer};
use crate::context::PassContext;
use crate::dce::remove_dead_nodes;
use crate::idioms::Idioms;
use crate::options::PassOptions;
use crate::pass::{Changed, Exactness, Pass, PassError};
use compc_ir::Graph;

pub struct FoldAffine {
    options: PassOptions,
}

impl FoldAffine {
    pub fn new(options: PassOptions) -> FoldAffine {
        FoldAffine { options }
    }
}

impl Pass for FoldAffine {
    fn name(&self) -> &'static str {
        "fold-affine"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let cfg = FoldAffineConfig::resolve(&self.options).map_err(PassError::Invalid)?;
        let idioms = Idioms::find(g)?;
        let found = layer::find(g, &idioms);
        if found.quantized == 0 {
            return Err(PassError::Invalid(
                "nothing is quantized: fold-affine compensates the error of quantized linear \
                 layers (QDQ MatMul, Conv or Gemm, or MatMulNBits); run it after quant (-p \
                 quant,fold-affine)"
                    .into(),
            ));
        }
        if found.layers.is_empty() {
            let (n, why) = found
                .skipped
                .first()
                .cloned()
                .unwrap_or_else(|| ("?".into(), "?".into()));
            return Err(PassError::Invalid(format!(
                "none of the {} quantized layers can be compensated (e.g. `{n}`: {why}); the \
                 float weights are recorded by quant, so run fold-affine in the same pipeline \
                 on the float model (-p quant,fold-affine)",
                found.quantized
            )));
        }
        let Some(calib) = cx.calib else {
            return Err(PassError::Invalid(
                "fold-affine needs calibration data to fit the compensation (give --calib \
                 CALIB.npz)"
                    .into(),
            ));
        };
        for (n, why) in &found.skipped {
            cx.note(format!("left `{n}` alone: {why}"));
        }
        let layers = found.layers;
        if cfg.method == Method::Qwt {
            let s = qwt::compensate(g, cx, calib, &idioms, &layers)?;
            cx.note(format!(
                "compensated {} of {} blocks: {} nodes, {} float parameters added",
                s.compensated, s.blocks, s.nodes_added, s.parameters
            ));
            if s.power > 0.0 {
                cx.measured("block_output_rel_mse_before", s.before / s.power);
                cx.measured("block_output_rel_mse_after", s.after / s.power);
            }
            cx.touch(s.nodes_added);
            return Ok(if s.compensated > 0 {
                Changed::Yes
            } else {
                Changed::No
            });
        }
        let mut runner = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
        let items: Vec<_> = layers.iter().map(|l| (l.node, l.x)).collect();
        let mut seq = Sequencer::new(g, &idioms, &items)?;
        let stages = seq.stages(&items);
        let pb = cx.progress_bar(layers.len() as u64, "fold-affine");
        let (mut added, mut before, mut after, mut power) = (0usize, 0f64, 0f64, 0f64);
        for stage in &stages {
            let members: Vec<&QLayer> = stage.members.iter().map(|&m| &layers[m]).collect();
            let mut twins = Vec::with_capacity(members.len());
            for l in &members {
                twins.push(l.twin(g)?);
            }
            let mut sums: Vec<ChannelSums> =
                members.iter().map(|l| ChannelSums::new(l.n)).collect();
            let mut taps = vec![stage.input];
            taps.extend(members.iter().map(|l| l.y));
            let adv = seq.advance_for(stage);
            runner.run(g, &taps, adv, &mut |_, outs| {
                for (j, l) in members.iter().enumerate() {
                    let yq = outs[j + 1].f32_cow();
                    let yf = twins[j].output(&outs[0])?;
                    let inner = l.channel_stride(&outs[j + 1]);
                    sums[j]
                        .add_strided(&yq, &yf, inner)
                        .map_err(|e| PassError::Invalid(format!("layer `{}`: {e}", l.name)))?;
                }
                Ok(())
            })?;
            if let Some(a) = adv {
                seq.cut_moved(a);
            }
            for (l, s) in members.iter().zip(&sums) {
                let fit = s.solve(cfg.bias);
                let a: Vec<f32> = fit.a.iter().map(|&v| v as f32).collect();
                let b: Vec<f32> = fit.b.iter().map(|&v| v as f32).collect();
                added += l.apply(g, &a, &b, !cfg.fold)?;
                report(cx, l, &fit);
                before += fit.mse_before * l.n as f64;
                after += fit.mse_after * l.n as f64;
                power += fit.power * l.n as f64;
                pb.inc(1);
            }
            seq.finish(stage);
        }
        pb.finish_and_clear();
        // The scales and DequantizeLinear nodes folding replaced.
        let removed = remove_dead_nodes(g)?;
        cx.note(format!(
            "compensated {} layers ({}); {added} nodes added",
            layers.len(),
            if cfg.fold {
                "folded into scales and biases"
            } else {
                "explicit Mul/Add"
            }
        ));
        if power > 0.0 {
            cx.measured("layer_output_rel_mse_before", before / power);
            cx.measured("layer_output_rel_mse_after", after / power);
        }
        cx.touch(layers.len() + added + removed);
        Ok(Changed::Yes)
    }
}

fn report(cx: &mut PassContext, l: &QLayer, fit: &Affine) {
    let n = fit.a.len().max(1) as f64;
    let mean_a = fit.a.iter().sum::<f64>() / n;
    let (lo, hi) = fit
        .a
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let mean_b = fit.b.iter().map(|v| v.abs()).sum::<f64>() / n;
    let rel = |e: f64| if fit.power > 0.0 { e / fit.power } else { e };
    cx.note(format!(
        "`{}` ({}→{}): a mean {mean_a:.4} [{lo:.4}, {hi:.4}], |b| mean {mean_b:.3e}; calibration \
         output rel. MSE {:.3e} → {:.3e}{}",
        l.name,
        l.k,
        l.n,
        rel(fit.mse_before),
        rel(fit.mse_after),
        if fit.degenerate > 0 {
            format!(" ({} channels kept a = 1)", fit.degenerate)
        } else {
            String::new()
        }
    ));
}

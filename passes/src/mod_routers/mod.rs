//! Pass `mod-routers`: Mixture-of-Depths (techniques.md §7). Before each chosen
//! transformer block a linear router scores the tokens; the top `ceil(capacity·seq)` of
//! each sequence (kept in their original order, so causal attention among them stays
//! causal) go through the block, the rest ride the residual stream. The block reads the
//! position-dependent tensors built outside it (RoPE cos/sin, the causal mask) gathered
//! at the routed positions, so routed tokens keep their absolute positions. Everything is
//! standard ONNX (TopK, GatherElements, ScatterElements, Expand, Where); k is computed
//! from the run-time sequence length, so the sequence may stay symbolic.
//!
//! Routers are fitted without training on calibration data (§7.3): ridge regression of
//! a per-token statistic (by default the block's contribution norm `‖block(x) − x‖`; see
//! `target`) on the RMS-normalised block input.
//! `router=norm` is the calibration-free baseline `s = mean(x²)`. Layers are chosen by
//! γ-MoD's ARank (lowest rank of the attention maps first) unless `layers=` lists them.

pub mod build;
pub mod fit;
pub mod region;
pub mod rewrite;

use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::CalibRunner;
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::options::{OptionKind, OptionSpec, PassOptions};
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::prune::structured::apply::reinfer;
use crate::registry::PassDescriptor;
use compc_ir::{Graph, ValueRef};
use fit::{arank, RidgeFit, Target};
use rewrite::{route, Gate, Score};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "capacity",
        kind: OptionKind::Float { min: 1e-6, max: 1.0 },
        default: Some("0.5"),
        help: "fraction of each sequence's tokens a routed block processes (k = ceil(capacity·seq))",
    },
    OptionSpec {
        name: "layers",
        kind: OptionKind::Text,
        default: Some("auto"),
        help: "blocks to route: `auto` (lowest ARank, needs --calib) or indices joined by `+` (e.g. 1+3)",
    },
    OptionSpec {
        name: "fraction",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: Some("0.5"),
        help: "with layers=auto: the share of blocks to route",
    },
    OptionSpec {
        name: "router",
        kind: OptionKind::Choice(&["fit", "norm"]),
        default: Some("fit"),
        help: "fit: ridge regression of the `target` statistic on the normalised block input (needs --calib); norm: score = mean(x²)",
    },
    OptionSpec {
        name: "gate",
        kind: OptionKind::Choice(&["one", "sigmoid"]),
        default: Some("one"),
        help: "multiplier of a routed token's block contribution: 1, or σ(score) rescaled to mean 1 over routed calibration tokens (router=fit)",
    },
    OptionSpec {
        name: "target",
        kind: OptionKind::Choice(&["norm", "relative", "cosine", "attention"]),
        default: Some("norm"),
        help: "what router=fit predicts per token: ‖f‖, ‖f‖/‖x‖, 1 − cos(x, x + f) (f = block(x) − x), or the attention the token receives as a key",
    },
    OptionSpec {
        name: "ridge",
        kind: OptionKind::Float { min: 0.0, max: 1e6 },
        default: Some("0.01"),
        help: "ridge penalty relative to the mean feature energy",
    },
];

#[derive(Clone, Debug, PartialEq)]
pub enum Layers {
    Auto,
    List(Vec<usize>),
}

pub struct ModRouters {
    pub capacity: f32,
    pub layers: Layers,
    pub fraction: f64,
    pub fit: bool,
    pub sigmoid_gate: bool,
    pub ridge: f64,
    pub target: Target,
}

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "mod-routers",
        summary: "Mixture-of-Depths: route the top capacity·seq tokens through chosen blocks (TopK/GatherElements/ScatterElements), routers fitted on calibration data, layers by ARank",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| Ok(Box::new(ModRouters::from_options(o).map_err(|e| e.to_string())?)),
    }
}

pub fn parse_layers(s: &str) -> Result<Layers, PassError> {
    if s == "auto" {
        return Ok(Layers::Auto);
    }
    let mut v = Vec::new();
    for p in s.split(['+', ';', ' ']).filter(|p| !p.is_empty()) {
        v.push(p.parse::<usize>().map_err(|_| {
            PassError::Invalid(format!(
                "mod-routers: layers=`{s}`: `{p}` is not a block index (give `auto` or indices joined by `+`)"
            ))
        })?);
    }
    if v.is_empty() {
        return Err(PassError::Invalid(format!(
            "mod-routers: layers=`{s}` names no block"
        )));
    }
    v.sort_unstable();
    v.dedup();
    Ok(Layers::List(v))
}

impl ModRouters {
    pub fn from_options(o: &PassOptions) -> Result<ModRouters, PassError> {
        Ok(ModRouters {
            capacity: o.float("capacity").unwrap_or(0.5) as f32,
            layers: parse_layers(o.text("layers").unwrap_or("auto"))?,
            fraction: o.float("fraction").unwrap_or(0.5),
            fit: o.text("router").unwrap_or("fit") == "fit",
            sigmoid_gate: o.text("gate").unwrap_or("one") == "sigmoid",
            ridge: o.float("ridge").unwrap_or(0.01),
            target: match o.text("target").unwrap_or("norm") {
                "relative" => Target::Relative,
                "cosine" => Target::Cosine,
                "attention" => Target::Attention,
                _ => Target::Norm,
            },
        })
    }
}

/// ε of the router's feature normalisation.
const EPS: f32 = 1e-6;

impl Pass for ModRouters {
    fn name(&self) -> &'static str {
        "mod-routers"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let idioms = Idioms::find(g)?;
        let l = idioms.blocks.len();
        if l == 0 {
            return Err(PassError::Invalid(idioms.no_block_error("mod-routers")));
        }
        if let Layers::List(v) = &self.layers {
            if let Some(bad) = v.iter().find(|&&i| i >= l) {
                return Err(PassError::Invalid(format!(
                    "mod-routers: layers names block {bad}, but the model has {l} blocks (0..{}){}",
                    l - 1,
                    idioms.unblocked_note()
                )));
            }
        }
        if self.sigmoid_gate && !self.fit {
            return Err(PassError::Invalid(
                "mod-routers: gate=sigmoid needs router=fit (the norm score has no calibrated scale)".into(),
            ));
        }
        let regions: Vec<region::Region> = (0..l)
            .map(|b| region::find(g, &idioms, b))
            .collect::<Result<_, _>>()?;
        let needs_calib = self.fit || self.layers == Layers::Auto;
        let mut ranks = vec![None; l];
        let mut fits: Vec<Option<RidgeFit>> = (0..l).map(|_| None).collect();
        if needs_calib {
            let calib = cx.calib.ok_or_else(|| {
                PassError::Invalid(
                    "mod-routers: router=fit and layers=auto need calibration data (give --calib CALIB.npz, or router=norm with layers=LIST)".into(),
                )
            })?;
            let d = g
                .value_type(regions[0].input)
                .and_then(|t| {
                    t.shape
                        .dims()
                        .and_then(|d| d.get(2).and_then(|x| x.known()))
                })
                .ok_or_else(|| {
                    PassError::Invalid("mod-routers: the model width is not known".into())
                })? as usize;
            let mut taps: Vec<ValueRef> = Vec::new();
            for r in &regions {
                taps.push(r.input);
                taps.push(r.output);
            }
            let auto = self.layers == Layers::Auto;
            let attn = self.fit && self.target == Target::Attention;
            if auto || attn {
                for b in &idioms.blocks {
                    let a = b.attention.expect("blocks are anchored at attention");
                    taps.push(ValueRef::new(idioms.attention[a].softmax, 0));
                }
            }
            for f in fits.iter_mut() {
                *f = Some(RidgeFit::new(d, EPS, self.target));
            }
            let mut runner = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
            runner.run(g, &taps, None, &mut |batch, outs| {
                for b in 0..l {
                    if self.fit {
                        if let Some(f) = fits[b].as_mut() {
                            let probs = if attn { Some(&outs[2 * l + b]) } else { None };
                            f.add(&outs[2 * b], &outs[2 * b + 1], probs)?;
                        }
                    }
                    if auto && batch == 0 {
                        ranks[b] = Some(arank(&outs[2 * l + b], 4)?);
                    }
                }
                Ok(())
            })?;
        }
        let chosen: Vec<usize> = match &self.layers {
            Layers::List(v) => v.clone(),
            Layers::Auto => {
                let n = ((self.fraction * l as f64).round() as usize).min(l);
                let mut order: Vec<usize> = (0..l).collect();
                order.sort_by(|&a, &b| {
                    ranks[a]
                        .unwrap_or(f64::MAX)
                        .total_cmp(&ranks[b].unwrap_or(f64::MAX))
                        .then(a.cmp(&b))
                });
                let mut v: Vec<usize> = order.into_iter().take(n).collect();
                v.sort_unstable();
                cx.note(format!(
                    "ARank per block: [{}]",
                    ranks
                        .iter()
                        .map(|r| r.map(|x| format!("{x:.1}")).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                v
            }
        };
        if chosen.is_empty() {
            cx.note("no block chosen; nothing to do");
            return Ok(Changed::No);
        }
        // Routed blocks rewire their outputs; later regions read the new stream.
        let mut renamed: Vec<(ValueRef, ValueRef)> = Vec::new();
        for &b in &chosen {
            let mut reg = regions[b].clone();
            if let Some((_, new)) = renamed.iter().find(|(old, _)| *old == reg.input) {
                reg.input = *new;
            }
            let (score, gate) = if self.fit {
                let f = fits[b].as_ref().expect("fitted above");
                let r = f.solve(self.ridge, self.capacity)?;
                cx.note(format!(
                    "block[{b}]: router R² {:.3}, top-k recall {:.3} of the true top-{:.0}% by the {:?} target",
                    r.r2,
                    r.recall,
                    self.capacity * 100.0,
                    self.target
                ));
                cx.measured(format!("block{b}_router_r2"), r.r2);
                let gate = if self.sigmoid_gate {
                    Gate::Sigmoid {
                        scale: (1.0 / r.mean_sigmoid.max(1e-6)) as f32,
                    }
                } else {
                    Gate::One
                };
                (
                    Score::Linear {
                        w: r.w,
                        bias: r.bias,
                        eps: EPS,
                    },
                    gate,
                )
            } else {
                (Score::Norm, Gate::One)
            };
            let out = route(g, &reg, b, &score, self.capacity, gate)?;
            renamed.push((regions[b].output, out));
        }
        reinfer(g)?;
        let removed = crate::dce::remove_dead_nodes(g)?;
        cx.note(format!(
            "routed blocks {chosen:?} of {l} at capacity {} ({} router, gate {})",
            self.capacity,
            if self.fit { "fitted" } else { "norm" },
            if self.sigmoid_gate { "sigmoid" } else { "1" }
        ));
        cx.touch(chosen.len() + removed);
        Ok(Changed::Yes)
    }
}

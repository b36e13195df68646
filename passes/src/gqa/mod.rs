//! Pass `gqa`: multi-head attention with H KV heads → G KV heads (techniques.md §6).
//!
//! - [`plan`]: grouping by aligned similarity, Procrustes alignment (RoPE-compatible for
//!   keys), mean or closed-form low-rank merge, all on calibration Gram matrices;
//! - [`rewrite`]: the new projections, reshapes and head repetition;
//! - [`core`], [`rope`], [`contrib`]: `op=contrib`, the attention core (head split, RoPE,
//!   scaling, causal mask, softmax, P·V, head merge) replaced by one
//!   `com.microsoft.GroupQueryAttention` node;
//! - [`linalg`]: the small f64 decompositions.
//!
//! `method=mean` is the GQA paper's mean pooling of consecutive heads (no calibration);
//! `method=align` groups heads by similarity after alignment and merges them with the
//! optimal rank-d merge (`merge=lowrank`, default), with aligned mean pooling
//! (`merge=mean`), or aligns without merging (`merge=none`, exact, for checking).

pub mod contrib;
pub mod core;
pub mod linalg;
pub mod plan;
pub mod rewrite;
pub mod rope;

use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, InputStats};
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::options::{OptionKind, OptionSpec, PassOptions};
use crate::pass::{Changed, Exactness, Pass, PassError};
use crate::prune::structured::apply::reinfer;
use crate::quant::layers::{select_skipping, Layer};
use crate::quant::pass::end_to_end_error;
use crate::registry::PassDescriptor;
use compc_ir::{Graph, ValueRef};
use plan::{group_heads, Merge, Plan, Side};
use rewrite::Repeat;

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "groups",
        kind: OptionKind::Int { min: 1, max: 4096 },
        default: None,
        help: "KV heads per attention after the pass (must divide the head count)",
    },
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["mean", "align"]),
        default: Some("align"),
        help: "mean: mean-pool consecutive heads (no calibration); align: group heads by \
               similarity after Procrustes alignment (RoPE-compatible for keys) and merge",
    },
    OptionSpec {
        name: "merge",
        kind: OptionKind::Choice(&["lowrank", "lowrank-all", "mean", "none"]),
        default: Some("lowrank"),
        help:
            "align only: closed-form rank-d merge of each group's values with aligned mean \
               pooling of keys (lowrank), closed form for keys too (lowrank-all), aligned mean \
               pooling of both (mean), or alignment without merging (none: exact, keeps H KV heads)",
    },
    OptionSpec {
        name: "op",
        kind: OptionKind::Choice(&["expand", "contrib"]),
        default: Some("expand"),
        help: "expand: the decomposed attention stays and KV heads are repeated by Tile on K \
               and V; contrib: the attention core becomes one com.microsoft.GroupQueryAttention \
               node (onnxruntime; causal self-attention without KV-cache inputs, half-split \
               RoPE computed in the graph)",
    },
];

pub struct Gqa {
    groups: usize,
    method: String,
    merge: Merge,
    lowrank_keys: bool,
    /// `op=contrib`: emit GroupQueryAttention instead of repeating KV heads.
    fused: bool,
}

pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "gqa",
        summary: "convert multi-head attention to grouped-query attention with G KV heads: mean pooling or Procrustes-aligned, similarity-grouped closed-form merge folded into q/o",
        exactness: Exactness::Lossy,
        options: OPTIONS,
        build: |o| Ok(Box::new(Gqa::from_options(o).map_err(|e| e.to_string())?)),
    }
}

impl Gqa {
    pub fn from_options(o: &PassOptions) -> Result<Gqa, PassError> {
        let groups = o
            .int("groups")
            .ok_or_else(|| PassError::Invalid("gqa: groups=G is required".into()))?
            as usize;
        let method = o.text("method").unwrap_or("align").to_string();
        let raw = o.text("merge").unwrap_or("lowrank");
        let merge = match raw {
            "mean" => Merge::Mean,
            "none" => Merge::None,
            _ => Merge::LowRank,
        };
        Ok(Gqa {
            groups,
            method,
            merge,
            lowrank_keys: raw == "lowrank-all",
            fused: o.text("op") == Some("contrib"),
        })
    }
}

/// For each attention, the first attention whose q, k, v and o projections read the same
/// weight values (blocks `share-layers` tied together), or the attention itself.
fn tie_leaders(idioms: &Idioms) -> Vec<usize> {
    let key = |a: &crate::idioms::Attention| {
        [Some(a.q), Some(a.k), Some(a.v), a.o].map(|li| li.map(|li| idioms.linears[li].weight))
    };
    let keys: Vec<_> = idioms.attention.iter().map(key).collect();
    (0..keys.len())
        .map(|i| (0..i).find(|&j| keys[j] == keys[i]).unwrap_or(i))
        .collect()
}

/// KV cache bytes per token: 2 (K and V) × KV heads × head size × element size.
fn kv_bytes(g: &Graph, idioms: &Idioms) -> u64 {
    idioms
        .attention
        .iter()
        .map(|a| {
            let bytes = g
                .const_weight(idioms.linears[a.k].weight)
                .map_or(4, |w| (w.dtype.bits() as u64 / 8).max(1));
            2 * a.num_kv_heads.unwrap_or(0) * a.head_dim.unwrap_or(0) * bytes
        })
        .sum()
}

impl Pass for Gqa {
    fn name(&self) -> &'static str {
        "gqa"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Lossy
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let idioms = Idioms::find(g)?;
        if idioms.attention.is_empty() {
            return Err(PassError::Invalid(format!(
                "gqa: no attention (softmax(Q·Kᵀ)·V with q/k/v projections) was recognised{}",
                idioms.order_hint("gqa")
            )));
        }
        let mut dims = Vec::new();
        for (ai, a) in idioms.attention.iter().enumerate() {
            let (Some(h), Some(kv), Some(d)) = (a.num_heads, a.num_kv_heads, a.head_dim) else {
                return Err(PassError::Invalid(format!(
                    "gqa: attention[{ai}]: head count or head size not recognised"
                )));
            };
            let (h, kv, d) = (h as usize, kv as usize, d as usize);
            if kv != h {
                return Err(PassError::Invalid(format!(
                    "gqa: attention[{ai}] already has {kv} KV heads for {h} query heads; only multi-head attention is converted"
                )));
            }
            if self.groups == 0 || h % self.groups != 0 {
                return Err(PassError::Invalid(format!(
                    "gqa: groups={} does not divide the {h} heads of attention[{ai}]",
                    self.groups
                )));
            }
            if a.rope && d % 2 != 0 {
                return Err(PassError::Invalid(format!(
                    "gqa: attention[{ai}] uses RoPE with an odd head size {d}"
                )));
            }
            dims.push((h, d));
        }
        // op=contrib: every attention must be one GroupQueryAttention can express; found
        // before calibration and before anything changes.
        let cores = if self.fused {
            (0..idioms.attention.len())
                .map(|ai| core::match_core(g, &idioms, ai))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let sel = select_skipping(g, &idioms, &[]);
        let mut layers: Vec<Option<Layer>> = vec![None; idioms.linears.len()];
        for l in sel.layers {
            let i = l.index;
            layers[i] = Some(l);
        }
        let before_kv = kv_bytes(g, &idioms);
        // Element size of each attention's keys, read before the rewrite replaces weights.
        let elem_bytes: Vec<u64> = idioms
            .attention
            .iter()
            .map(|a| {
                g.const_weight(idioms.linears[a.k].weight)
                    .map_or(4, |w| (w.dtype.bits() as u64 / 8).max(1))
            })
            .collect();
        let aligned = self.method == "align";
        let merge = if aligned { self.merge } else { Merge::Mean };
        // Calibration Grams of every k and v projection output.
        let mut grams: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let mut runner = None;
        if aligned {
            let calib = cx.calibration("gqa: method=align")?;
            let mut r = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
            let mut taps: Vec<ValueRef> = Vec::new();
            let mut stats: Vec<InputStats> = Vec::new();
            for (a, &(h, d)) in idioms.attention.iter().zip(&dims) {
                for li in [a.k, a.v] {
                    taps.push(idioms.linears[li].output);
                    stats.push(InputStats::new(h * d, true));
                }
            }
            r.run(g, &taps, None, &mut |_, outs| {
                for (st, t) in stats.iter_mut().zip(&outs) {
                    st.add(t, "gqa key/value statistics")?;
                }
                Ok(())
            })?;
            for pair in stats.chunks(2) {
                let k = pair[0].gram().unwrap_or_default();
                let v = pair[1].gram().unwrap_or_default();
                grams.push((k, v));
            }
            runner = Some(r);
        }
        // Attentions tied by `share-layers` read the same projections: they are planned on
        // the Grams of all their sites together, so every site rewrites the shared weights
        // the same way (mean pooling needs no statistics and agrees anyway), and the
        // identical copies the rewrite writes per site are merged below.
        let leaders = tie_leaders(&idioms);
        if aligned {
            let summed: Vec<(Vec<f64>, Vec<f64>)> = (0..grams.len())
                .map(|i| {
                    let mut k = vec![0.0; grams[i].0.len()];
                    let mut v = vec![0.0; grams[i].1.len()];
                    for j in (0..grams.len()).filter(|&j| leaders[j] == leaders[i]) {
                        for (t, x) in k.iter_mut().zip(&grams[j].0) {
                            *t += x;
                        }
                        for (t, x) in v.iter_mut().zip(&grams[j].1) {
                            *t += x;
                        }
                    }
                    (k, v)
                })
                .collect();
            grams = summed;
        }
        let tied = (0..leaders.len()).filter(|&i| leaders[i] != i).count();
        let constants_before = crate::same_constants::constants(g);
        let original = runner.as_ref().map(|_| g.clone());
        let mut plans = Vec::new();
        for (ai, (a, &(h, d))) in idioms.attention.iter().zip(&dims).enumerate() {
            let plan = if aligned {
                let (gk, gv) = &grams[ai];
                let keys = Side {
                    gram: gk,
                    heads: h,
                    d,
                    rope: a.rope,
                };
                let values = Side {
                    gram: gv,
                    heads: h,
                    d,
                    rope: false,
                };
                let mut sim = vec![0.0; h * h];
                for x in 0..h {
                    for y in x + 1..h {
                        let s = keys.similarity(x, y) + values.similarity(x, y);
                        sim[x * h + y] = s;
                        sim[y * h + x] = s;
                    }
                }
                let groups = group_heads(&sim, h, self.groups, 20, cx.seed);
                // Keys: the closed form minimizes the key reconstruction error, not the score
                // error, and measured worse than aligned mean pooling on the LM fixture.
                let km = if merge == Merge::LowRank && !self.lowrank_keys {
                    Merge::Mean
                } else {
                    merge
                };
                let vm = merge;
                let kmaps: Vec<_> = groups.iter().map(|m| keys.maps(m, km, true)).collect();
                let vmaps: Vec<_> = groups.iter().map(|m| values.maps(m, vm, true)).collect();
                if merge == Merge::None {
                    // Every head keeps its KV head, in group order.
                    let mut kv = Vec::new();
                    let (mut ks, mut vs) = (Vec::new(), Vec::new());
                    for ((m, km), vm) in groups.iter().zip(kmaps).zip(vmaps) {
                        for ((&hh, kx), vx) in m.iter().zip(km).zip(vm) {
                            kv.push(vec![hh]);
                            ks.push(vec![kx]);
                            vs.push(vec![vx]);
                        }
                    }
                    Plan {
                        kv,
                        keys: ks,
                        values: vs,
                    }
                } else {
                    cx.note(format!("attention[{ai}]: groups {:?}", groups));
                    Plan {
                        kv: groups,
                        keys: kmaps,
                        values: vmaps,
                    }
                }
            } else {
                let gsize = h / self.groups;
                let kv: Vec<Vec<usize>> = (0..self.groups)
                    .map(|j| (j * gsize..(j + 1) * gsize).collect())
                    .collect();
                let side = Side {
                    gram: &[],
                    heads: h,
                    d,
                    rope: false,
                };
                let maps: Vec<_> = kv
                    .iter()
                    .map(|m| side.maps(m, Merge::Mean, false))
                    .collect();
                Plan {
                    kv,
                    keys: maps.clone(),
                    values: maps,
                }
            };
            plans.push(plan);
        }
        let repeat = if self.fused {
            Repeat::Fused
        } else {
            Repeat::Tile
        };
        let mut shared = contrib::Shared::default();
        for (ai, plan) in plans.iter().enumerate() {
            rewrite::apply(g, &idioms, &layers, ai, plan, repeat)?;
            if let Some(c) = cores.get(ai) {
                // Named like the softmax's scope: ".../self_attn/GroupQueryAttention".
                let sm = &g.node(idioms.attention[ai].softmax).name;
                let name = match sm.rsplit_once('/') {
                    Some((scope, _)) => format!("{scope}/GroupQueryAttention"),
                    None => format!("{sm}_GroupQueryAttention"),
                };
                contrib::emit(g, &mut shared, c, plan.kv.len(), &name)?;
            }
        }
        let merged = crate::same_constants::merge_new(g, &constants_before)?;
        if tied > 0 {
            cx.note(format!(
                "{tied} of the {} attention layers read the same projections as an earlier one \
                 (layers tied by share-layers): planned together, and {merged} rewritten \
                 constants identical to another were stored once",
                leaders.len()
            ));
        }
        reinfer(g)?;
        let removed = crate::dce::remove_dead_nodes(g)?;
        for (ai, c) in cores.iter().enumerate() {
            // The replaced core is dead unless something else read its keys or values
            // (e.g. a KV-cache output), which the fused node does not provide.
            for (v, what) in [(c.k, "keys"), (c.v, "values")] {
                let other = g
                    .value_users(v)
                    .into_iter()
                    .find(|(u, _)| !matches!(g.node(*u).op, compc_ir::Op::GroupQueryAttention(_)));
                if let Some((u, _)) = other {
                    return Err(PassError::Invalid(format!(
                        "gqa op=contrib: attention[{ai}]'s {what} are also read by {} outside the attention; \
                         GroupQueryAttention without KV-cache outputs cannot provide them; use op=expand",
                        g.node(u).describe(u)
                    )));
                }
            }
        }
        if self.fused {
            cx.note(format!(
                "op=contrib: {} attention cores → com.microsoft.GroupQueryAttention",
                cores.len()
            ));
        }
        // From the plans: a fused attention is no longer an attention idiom.
        let after_kv: u64 = idioms
            .attention
            .iter()
            .zip(&plans)
            .zip(&elem_bytes)
            .map(|((a, p), bytes)| 2 * p.kv.len() as u64 * a.head_dim.unwrap_or(0) * bytes)
            .sum();
        cx.note(format!(
            "{} attention layers → {} KV heads ({}{}); KV cache bytes per token {} → {} ({:.2}×)",
            plans.len(),
            plans.first().map_or(0, |p| p.kv.len()),
            self.method,
            if aligned {
                format!(", merge {:?}", merge).to_lowercase()
            } else {
                String::new()
            },
            before_kv,
            after_kv,
            before_kv as f64 / after_kv.max(1) as f64
        ));
        cx.measured("kv_cache_bytes_per_token", after_kv as f64);
        cx.touch(plans.len() + removed);
        if let (Some(orig), Some(r)) = (original, runner.as_ref()) {
            end_to_end_error(&orig, g, r, cx)?;
        }
        Ok(Changed::Yes)
    }
}

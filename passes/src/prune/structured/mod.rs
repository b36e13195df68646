//! Structured pruning (techniques.md §2.6): removes whole MLP hidden units and attention
//! heads, so the tensors shrink and the exported model has fewer parameters and FLOPs.
//!
//! - [`depgraph`]: the groups of coupled slices (what must go together);
//! - [`importance`]: scores per unit (magnitude, Wanda-style, Taylor/OBD);
//! - [`apply`]: slicing the tensors, rewriting head counts, compensation, re-inference;
//! - [`channels`], [`channels_rewrite`]: convolution output channels (`structured=channels`);
//! - [`hidden`]: the residual stream's hidden size (`structured=hidden`).
//!
//! Scores come from the unpruned model in one calibration run (not block-sequential).
//! Removing nothing (ratio 0, heads=0) returns before touching the graph.

pub mod apply;
pub mod channel_compensation;
pub mod channel_importance;
pub mod channels;
pub mod channels_rewrite;
pub mod depgraph;
pub mod hidden;
pub mod importance;
pub mod layer_stats;

use super::options::{PruneConfig, StructuredConfig, Target};
use crate::calib::InputStats;
use crate::context::PassContext;
use crate::idioms::Idioms;
use crate::ledger::GraphStats;
use crate::pass::{Changed, PassError};
use crate::quant::layers::{read_w, select_skipping, Layer};
use crate::quant::pass::end_to_end_error;
use apply::{add_to_bias, apply_group, describe_kind, reinfer, report_parameters};
use compc_ir::{Graph, ValueRef};
use depgraph::{head_group, mlp_group, Axis, Group, GroupKind};
use importance::{group_scores, lowest, MemberData};
use layer_stats::LayerStats;

/// Units to remove from a group.
fn amount(group: &Group, s: &StructuredConfig) -> Result<usize, PassError> {
    let k = match (group.kind, s.heads) {
        (GroupKind::Heads(ai), Some(h)) => {
            let r = group.heads_per_unit;
            if h % r != 0 {
                return Err(PassError::Invalid(format!(
                    "attention[{ai}]: heads={h} is not a multiple of the {r} query heads that \
                     share a KV head (GQA prunes whole KV groups)"
                )));
            }
            h / r
        }
        _ => (s.ratio * group.units as f64).round() as usize,
    };
    if k >= group.units {
        return Err(PassError::Invalid(format!(
            "{}: removing {k} of its {} units would remove all of them",
            describe_kind(group.kind),
            group.units
        )));
    }
    Ok(k)
}

/// For each group, the first group whose members read exactly the same weight constants
/// in the same roles (blocks `share-layers` tied together), or the group itself.
fn tie_leaders(g: &Graph, groups: &[Group], layers: &[Option<Layer>]) -> Vec<usize> {
    /// An MLP group or not, its units, and each member's weight and axis.
    type TieKey = (bool, usize, Vec<(ValueRef, Axis)>);
    let key = |grp: &Group| -> Option<TieKey> {
        let weights = grp
            .members
            .iter()
            .map(|m| {
                let l = layers[m.linear].as_ref()?;
                Some((g.node(l.node()).input(1)?, m.axis))
            })
            .collect::<Option<Vec<_>>>()?;
        Some((matches!(grp.kind, GroupKind::Mlp(_)), grp.units, weights))
    };
    let keys: Vec<_> = groups.iter().map(key).collect();
    (0..groups.len())
        .map(|i| match &keys[i] {
            Some(k) => (0..i).find(|&j| keys[j].as_ref() == Some(k)).unwrap_or(i),
            None => i,
        })
        .collect()
}

/// Multiply-accumulates per token of every linear (rows × cols), a FLOP proxy.
fn linear_macs(g: &Graph, idioms: &Idioms) -> u64 {
    idioms
        .linears
        .iter()
        .filter_map(|l| g.const_weight(l.weight))
        .map(|w| w.numel())
        .sum()
}

pub fn run(
    g: &mut Graph,
    cx: &mut PassContext,
    cfg: &PruneConfig,
    s: &StructuredConfig,
) -> Result<Changed, PassError> {
    match s.target {
        Target::Channels => return channels_rewrite::run(g, cx, &cfg.skip, s),
        Target::Hidden => return hidden::run(g, cx, &cfg.skip, s),
        _ => {}
    }
    let idioms = Idioms::find(g)?;
    let mut groups = Vec::new();
    if s.target.mlp() {
        if idioms.mlps.is_empty() {
            return Err(PassError::Invalid(format!(
                "structured=mlp: no MLP (up → activation → down) was recognised{}",
                idioms.order_hint("prune")
            )));
        }
        for mi in 0..idioms.mlps.len() {
            groups.push(mlp_group(g, &idioms, mi)?);
        }
    }
    if s.target.heads() {
        if idioms.attention.is_empty() {
            return Err(PassError::Invalid(format!(
                "structured=heads: no attention was recognised{}",
                idioms.order_hint("prune")
            )));
        }
        for ai in 0..idioms.attention.len() {
            groups.push(head_group(g, &idioms, ai)?);
        }
    }
    let mut amounts = Vec::new();
    for grp in &groups {
        // heads= applies to head groups; ratio to MLP groups (and heads without heads=).
        amounts.push(amount(grp, s)?);
    }
    if amounts.iter().all(|&k| k == 0) {
        cx.note("nothing to remove (ratio 0 / heads=0)");
        return Ok(Changed::No);
    }
    let sel = select_skipping(g, &idioms, &cfg.skip);
    let mut layers: Vec<Option<Layer>> = vec![None; idioms.linears.len()];
    for l in sel.layers {
        let i = l.index;
        layers[i] = Some(l);
    }
    for grp in &groups {
        for m in &grp.members {
            if layers[m.linear].is_none() {
                return Err(PassError::Invalid(format!(
                    "{}: member linear[{}] is skipped or not a float layer with a constant \
                     weight{}",
                    describe_kind(grp.kind),
                    m.linear,
                    idioms.linears[m.linear].order_hint("prune")
                )));
            }
        }
    }
    let before = GraphStats::of(g);
    let macs_before = linear_macs(g, &idioms);
    // Input statistics of every member, on the unpruned model.
    let calibrated = s.importance.needs_calibration() || s.compensate;
    let collected = if calibrated {
        let calib = cx.calibration(&format!("importance={}", s.importance.name()))?;
        let members = groups.iter().flat_map(|grp| &grp.members);
        Some(LayerStats::collect(
            g,
            calib,
            members.map(|m| layers[m.linear].as_ref().expect("checked above")),
        )?)
    } else {
        None
    };
    let stat_of = |g: &Graph, l: &Layer| -> Option<&InputStats> { collected.as_ref()?.of(g, l) };
    let runner = collected.as_ref().map(|c| &c.runner);
    let original = runner.map(|_| g.clone());
    // Decide every group on the unpruned weights, then rewrite.
    let leaders = tie_leaders(g, &groups, &layers);
    let mut scores: Vec<Vec<f64>> = Vec::new();
    for grp in &groups {
        let ws: Vec<Vec<f32>> = grp
            .members
            .iter()
            .map(|m| read_w(g, layers[m.linear].as_ref().expect("checked")))
            .collect::<Result<_, _>>()?;
        let norms: Vec<Option<Vec<f64>>> = grp
            .members
            .iter()
            .map(|m| {
                let l = layers[m.linear].as_ref().expect("checked");
                stat_of(g, l).map(|s| s.l2_norm())
            })
            .collect();
        let data: Vec<MemberData> = grp
            .members
            .iter()
            .zip(&ws)
            .zip(&norms)
            .map(|((m, w), n)| {
                let l = layers[m.linear].as_ref().expect("checked");
                MemberData {
                    w,
                    rows: l.rows,
                    cols: l.cols,
                    norms: n.as_deref(),
                    tokens: stat_of(g, l).map_or(0, |s| s.tokens),
                }
            })
            .collect();
        scores.push(group_scores(&grp.members, grp.units, &data, s.importance));
    }
    // Blocks tied by `share-layers` read the same weights: they get one plan, from their
    // summed scores, so that every site slices the shared weights the same way and the
    // copies the rewrite writes per site come out identical (merged below).
    let plans: Vec<Vec<usize>> = (0..groups.len())
        .map(|i| {
            let mut summed = vec![0f64; groups[i].units];
            for j in (0..groups.len()).filter(|&j| leaders[j] == leaders[i]) {
                for (t, v) in summed.iter_mut().zip(&scores[j]) {
                    *t += v;
                }
            }
            lowest(&summed, amounts[i])
        })
        .collect();
    let tied = (0..groups.len()).filter(|&i| leaders[i] != i).count();
    // Compensation deltas, from the unpruned consumer weights: per group, one per consumer.
    let mut group_deltas: Vec<Vec<(usize, Vec<f32>)>> = vec![Vec::new(); groups.len()];
    if s.compensate {
        for ((grp, removed), out) in groups.iter().zip(&plans).zip(group_deltas.iter_mut()) {
            for m in grp.consumers() {
                let l = layers[m.linear].as_ref().expect("checked");
                let Some(st) = stat_of(g, l) else { continue };
                let mean = st.mean();
                let w = read_w(g, l)?;
                let mut d = vec![0f32; l.rows];
                for &u in removed {
                    for c in m.indices(u, grp.units) {
                        for (r, dr) in d.iter_mut().enumerate() {
                            *dr += (w[r * l.cols + c] as f64 * mean[c]) as f32;
                        }
                    }
                }
                out.push((m.linear, d));
            }
        }
    }
    // Tied groups share their consumers' weights and biases: each adds the mean of the
    // tied sites' deltas, so the biases stay identical too.
    let mut deltas: Vec<(usize, Vec<f32>)> = Vec::new();
    for (i, own) in group_deltas.iter().enumerate() {
        for (pos, (li, d)) in own.iter().enumerate() {
            let sites: Vec<&Vec<f32>> = (0..groups.len())
                .filter(|&j| leaders[j] == leaders[i])
                .filter_map(|j| group_deltas[j].get(pos).map(|(_, d)| d))
                .collect();
            let mut mean = vec![0f32; d.len()];
            for site in &sites {
                for (m, v) in mean.iter_mut().zip(site.iter()) {
                    *m += v / sites.len() as f32;
                }
            }
            deltas.push((*li, mean));
        }
    }
    let constants_before = crate::same_constants::constants(g);
    for ((grp, removed), &k) in groups.iter().zip(&plans).zip(&amounts) {
        if k == 0 {
            continue;
        }
        apply_group(g, &idioms, &layers, grp, removed)?;
        let what = match grp.kind {
            GroupKind::Mlp(_) => format!("{k} of {} hidden units", grp.units),
            GroupKind::Heads(_) if grp.heads_per_unit > 1 => format!(
                "{k} of {} KV groups ({} query heads each)",
                grp.units, grp.heads_per_unit
            ),
            GroupKind::Heads(_) => format!("{k} of {} heads", grp.units),
        };
        let shown: Vec<String> = removed.iter().take(16).map(|u| u.to_string()).collect();
        let members: Vec<String> = grp
            .members
            .iter()
            .map(|m| {
                let l = layers[m.linear].as_ref().expect("checked");
                format!(
                    "`{}` {}",
                    l.name,
                    if m.axis == Axis::Out {
                        "rows"
                    } else {
                        "columns"
                    }
                )
            })
            .collect();
        cx.note(format!(
            "{}: removed {what} by {} importance (units {}{}); group: {}{}",
            describe_kind(grp.kind),
            s.importance.name(),
            shown.join(", "),
            if removed.len() > 16 { ", …" } else { "" },
            members.join(", "),
            if grp.consts.is_empty() {
                String::new()
            } else {
                format!(", {} constants on the channel", grp.consts.len())
            }
        ));
    }
    for (li, d) in &deltas {
        // The layer's bias (if it has one) is still the node recorded in `layers`.
        let l = layers[*li].as_ref().expect("checked");
        add_to_bias(g, l, d)?;
    }
    if !deltas.is_empty() {
        cx.note(format!(
            "compensation: the removed channels' mean contribution was added to {} biases",
            deltas.len()
        ));
    }
    let merged = crate::same_constants::merge_new(g, &constants_before)?;
    if tied > 0 {
        cx.note(format!(
            "{tied} of the {} groups read the same weights as an earlier one (layers tied by \
             share-layers): each tie was pruned with one plan from its summed scores, and \
             {merged} rewritten constants identical to another were stored once",
            groups.len()
        ));
    }
    reinfer(g)?;
    let removed_dead = crate::dce::remove_dead_nodes(g)?;
    let after = GraphStats::of(g);
    let idioms_after = Idioms::find(g)?;
    let macs_after = linear_macs(g, &idioms_after);
    let macs = format!(
        ", linear multiply-adds per token {} → {} ({:.1}%)",
        macs_before,
        macs_after,
        100.0 * macs_after as f64 / macs_before.max(1) as f64
    );
    report_parameters(cx, &before, &after, &macs);
    cx.touch(groups.len() + removed_dead);
    if let (Some(orig), Some(r)) = (original, runner) {
        end_to_end_error(&orig, g, r, cx)?;
    }
    Ok(Changed::Yes)
}

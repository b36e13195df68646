//! `prune{structured=hidden,ratio=R}`: shrinks the hidden size of a pre-norm decoder's
//! residual stream (techniques.md §2.6, item 5). Every block adds into the same vector,
//! so hidden channel c is one group spanning the embedding table's column c, row c of
//! every writer's output (o and down projections, and their biases), entry c of every
//! stream norm's scale, and input row c of every reader of those norms (q, k, v, gate,
//! up, lm_head). The stream's structure is the one `rotate` uses
//! ([`crate::rotate::stream::find_stream`]), which also refuses anything else reading
//! the stream.
//!
//! RMSNorm averages x² over the hidden size, so with d' of d channels left each norm
//! would divide by d' instead of d. Writing `eps' = eps·d/d'` and `γ' = γ·√(d/d')` makes
//! `x/√(Σx²/d' + eps')·γ' = x/√(Σx²/d + eps)·γ` exactly: removing channels that are zero
//! on the stream keeps the function. LayerNorm (which also subtracts the mean over d) has
//! no such rewrite and is refused.
//!
//! Importance: by `magnitude`, the mean over the embedding table and every stream linear
//! of the L2 norm of each channel's slice; by `wanda` or `taylor` (calibration data),
//! the mean over the stream linears of [`super::importance`]'s scores of the channel —
//! readers by their input (the normalized stream) channel's norm, writers by their own
//! inputs' norms — which sees the outlier channels of the stream that magnitude does not.
//! The embedding table, having no input activations, does not enter those.

use super::apply::{
    const_tensor, reinfer, report_parameters, set_const, set_shape_element, slice_member,
};
use super::depgraph::{merge_reshape, Axis, Member};
use super::importance::{group_scores, lowest, MemberData};
use super::layer_stats::LayerStats;
use crate::context::PassContext;
use crate::idioms::{Idioms, NormKind};
use crate::ledger::GraphStats;
use crate::pass::{Changed, PassError};
use crate::prune::options::{Importance, StructuredConfig};
use crate::quant::layers::{read_w, select_skipping, Layer};
use crate::rotate::stream::{find_stream, Stream, StreamUse};
use compc_ir::op::BinaryOp;
use compc_ir::{Graph, Op, ValueRef};
use compc_runtime::Tensor;

fn invalid(s: String) -> PassError {
    PassError::Invalid(format!("structured=hidden: {s}"))
}

/// A linear of the stream with the axis carrying the hidden channel.
struct StreamLinear {
    layer: Layer,
    axis: Axis,
}

fn stream_linears(
    g: &Graph,
    idioms: &Idioms,
    stream: &Stream,
    skip: &[String],
) -> Result<Vec<StreamLinear>, PassError> {
    let sel = select_skipping(g, idioms, skip);
    let find = |li: usize| -> Result<Layer, PassError> {
        sel.layers
            .iter()
            .find(|l| l.index == li)
            .cloned()
            .ok_or_else(|| {
                let n = idioms.linears[li].node;
                invalid(format!(
                    "{} reads or writes the stream but is skipped or not a float layer with a \
                     constant weight{}",
                    g.node(n).describe(n),
                    idioms.linears[li].order_hint("prune")
                ))
            })
    };
    let mut out = Vec::new();
    for (_, readers) in &stream.norms {
        for &li in readers {
            out.push(StreamLinear {
                layer: find(li)?,
                axis: Axis::In,
            });
        }
    }
    for &li in &stream.writers {
        out.push(StreamLinear {
            layer: find(li)?,
            axis: Axis::Out,
        });
    }
    Ok(out)
}

/// Per-channel importance by Wanda or Taylor: [`group_scores`] over the stream linears,
/// each a member with one element of its axis per channel.
fn activation_scores(
    g: &Graph,
    stream: &Stream,
    linears: &[StreamLinear],
    importance: Importance,
    stats: &LayerStats,
) -> Result<Vec<f64>, PassError> {
    let mut weights = Vec::with_capacity(linears.len());
    let mut inputs = Vec::with_capacity(linears.len());
    for sl in linears {
        let l = &sl.layer;
        let st = stats.of(g, l).ok_or_else(|| {
            invalid(format!(
                "`{}`: no calibration statistics of its input",
                l.name
            ))
        })?;
        weights.push(read_w(g, l)?);
        inputs.push((st.l2_norm(), st.tokens));
    }
    let data: Vec<MemberData> = linears
        .iter()
        .zip(&weights)
        .zip(&inputs)
        .map(|((sl, w), (norms, tokens))| MemberData {
            w,
            rows: sl.layer.rows,
            cols: sl.layer.cols,
            norms: Some(norms),
            tokens: *tokens,
        })
        .collect();
    let members: Vec<Member> = linears
        .iter()
        .map(|sl| Member {
            linear: sl.layer.index,
            axis: sl.axis,
            width: 1,
            parts: 1,
        })
        .collect();
    Ok(group_scores(&members, stream.d, &data, importance))
}

/// Per-channel importance by magnitude: the mean over the embedding table and every
/// stream linear of the L2 norm of the channel's slice.
fn scores(g: &Graph, stream: &Stream, linears: &[StreamLinear]) -> Result<Vec<f64>, PassError> {
    let d = stream.d;
    let mut total = vec![0f64; d];
    let (_, emb) = const_tensor(g, stream.embed_table)?;
    let e = emb.f32_cow();
    let mut sq = vec![0f64; d];
    for row in e.chunks(d) {
        for (s, &x) in sq.iter_mut().zip(row) {
            *s += (x as f64) * (x as f64);
        }
    }
    for (t, s) in total.iter_mut().zip(&sq) {
        *t += s.sqrt();
    }
    for sl in linears {
        let l = &sl.layer;
        let w = read_w(g, l)?;
        let mut sq = vec![0f64; d];
        for r in 0..l.rows {
            for c in 0..l.cols {
                let x = w[r * l.cols + c] as f64;
                sq[if sl.axis == Axis::In { c } else { r }] += x * x;
            }
        }
        for (t, s) in total.iter_mut().zip(&sq) {
            *t += s.sqrt();
        }
    }
    let n = (1 + linears.len()) as f64;
    Ok(total.iter().map(|t| t / n).collect())
}

/// Slices the norm's scale to `keep` and rescales it by `√(d/d')`, and multiplies its
/// epsilon by `d/d'` (see the module comment).
fn shrink_norm(
    g: &mut Graph,
    idioms: &Idioms,
    ni: usize,
    d: usize,
    keep: &[usize],
) -> Result<(), PassError> {
    let norm = &idioms.norms[ni];
    let f = d as f64 / keep.len() as f64;
    if norm.kind != NormKind::Rms {
        return Err(invalid(
            "the stream has a LayerNorm: it subtracts the mean over the hidden size, which no \
             rewrite keeps when channels go"
                .into(),
        ));
    }
    let scale = norm
        .scale
        .ok_or_else(|| invalid("a stream RMSNorm has no scale".into()))?;
    let (w, t) = const_tensor(g, scale)?;
    let x = t.f32_cow();
    let data: Vec<f32> = match x.len() {
        1 => keep
            .iter()
            .map(|_| (x[0] as f64 * f.sqrt()) as f32)
            .collect(),
        n if n == d => keep
            .iter()
            .map(|&k| (x[k] as f64 * f.sqrt()) as f32)
            .collect(),
        n => {
            return Err(invalid(format!(
                "a norm scale has {n} values, the stream has {d}"
            )))
        }
    };
    let nt = Tensor::from_f32_as(w.dtype, vec![keep.len()], data)?;
    let mut eps_done = norm.epsilon.is_none();
    for &n in &norm.nodes {
        for s in g.input_slots_reading(n, scale) {
            set_const(g, n, s, &nt, &w.name)?;
        }
        if eps_done {
            continue;
        }
        let eps = norm.epsilon.unwrap_or(0.0) as f64;
        if let Op::RmsNorm(a) = &mut g.node_mut(n).op {
            a.epsilon = (eps * f) as f32;
            eps_done = true;
            continue;
        }
        // Decomposed: the Add of the scalar epsilon to the mean of squares.
        if matches!(g.node(n).op, Op::Binary(BinaryOp::Add)) {
            let inputs: Vec<Option<ValueRef>> = g.node(n).inputs().to_vec();
            for (s, v) in inputs.iter().enumerate() {
                let Some(v) = *v else { continue };
                let Some(cw) = g.const_weight(v) else {
                    continue;
                };
                let vals = cw.to_f32_vec().unwrap_or_default();
                if vals.len() == 1 && (vals[0] as f64 - eps).abs() <= 1e-12 + 1e-6 * eps.abs() {
                    let (ew, et) = const_tensor(g, v)?;
                    let ne =
                        Tensor::from_f32_as(ew.dtype, et.shape().to_vec(), vec![(eps * f) as f32])?;
                    set_const(g, n, s, &ne, &ew.name)?;
                    eps_done = true;
                }
            }
        }
    }
    if !eps_done {
        return Err(invalid(
            "the epsilon of a stream RMSNorm was not found to rescale".into(),
        ));
    }
    Ok(())
}

pub fn run(
    g: &mut Graph,
    cx: &mut PassContext,
    skip: &[String],
    s: &StructuredConfig,
) -> Result<Changed, PassError> {
    let idioms = Idioms::find(g)?;
    let stream = find_stream(g, &idioms, StreamUse::SHRINK_HIDDEN)?;
    let d = stream.d;
    let k = (s.ratio * d as f64).round() as usize;
    if k == 0 {
        cx.note("nothing to remove (ratio 0)");
        return Ok(Changed::No);
    }
    if k >= d {
        return Err(invalid(format!(
            "removing {k} of the {d} hidden channels would remove all of them"
        )));
    }
    let linears = stream_linears(g, &idioms, &stream, skip)?;
    let channel_scores = if s.importance.needs_calibration() {
        let calib = cx.calibration(&format!("importance={}", s.importance.name()))?;
        let stats = LayerStats::collect(g, calib, linears.iter().map(|sl| &sl.layer))?;
        activation_scores(g, &stream, &linears, s.importance, &stats)?
    } else {
        scores(g, &stream, &linears)?
    };
    let removed = lowest(&channel_scores, k);
    let keep: Vec<usize> = (0..d)
        .filter(|c| removed.binary_search(c).is_err())
        .collect();
    let before = GraphStats::of(g);
    // The embedding table's columns.
    let (ew, et) = const_tensor(g, stream.embed_table)?;
    let x = et.f32_cow();
    let mut data = Vec::with_capacity(x.len() / d * keep.len());
    for row in x.chunks(d) {
        data.extend(keep.iter().map(|&c| row[c]));
    }
    let rows = x.len() / d;
    let nt = Tensor::from_f32_as(ew.dtype, vec![rows, keep.len()], data)?;
    set_const(g, stream.embed_gather, 0, &nt, &ew.name)?;
    for sl in &linears {
        slice_member(g, &sl.layer, sl.axis, &keep)?;
    }
    for (ni, _) in &stream.norms {
        shrink_norm(g, &idioms, *ni, d, &keep)?;
    }
    // The exporter may size the merged attention heads from the stream's shape
    // (`reshape(x.shape[:-1] + (-1 or hidden,))`): pin it to heads·head_dim, which does
    // not change. Any other use of the stream's width fails shape inference below.
    for (ai, a) in idioms.attention.iter().enumerate() {
        let (Some(h), Some(hd), Some(o)) = (a.num_heads, a.head_dim, a.o) else {
            return Err(invalid(format!(
                "attention[{ai}]: head count, head size or output projection not recognised"
            )));
        };
        let merge = merge_reshape(g, idioms.linears[o].input, ai)?;
        set_shape_element(g, merge, 1, (h * hd) as i64)?;
    }
    reinfer(g)?;
    let dead = crate::dce::remove_dead_nodes(g)?;
    let after = GraphStats::of(g);
    let shown: Vec<String> = removed.iter().take(16).map(|c| c.to_string()).collect();
    cx.note(format!(
        "hidden size {d} → {} by magnitude (channels {}{}): embedding columns, {} readers' \
         input rows, {} writers' output rows, {} norm scales (×√(d/d')) and epsilons (×d/d')",
        keep.len(),
        shown.join(", "),
        if removed.len() > 16 { ", …" } else { "" },
        linears.iter().filter(|l| l.axis == Axis::In).count(),
        stream.writers.len(),
        stream.norms.len()
    ));
    report_parameters(cx, &before, &after, "");
    cx.touch(1 + linears.len() + dead);
    Ok(Changed::Yes)
}

//! `fold-affine{method=qwt}`: QwT's block-wise linear compensation (techniques.md §3.1).
//!
//! For each transformer block, in order: `X` is the block's input as the quantized model
//! computes it with the earlier blocks already compensated; the quantized block gives
//! `Y_q`, the float block (same graph, float twins in place of the quantized weights, no
//! activation quantizers) gives `Y_fp` on that same `X`. [`BlockRegression`] fits
//! `Y_fp − Y_q ≈ X·W_c + b_c`, and when the fit explains anything (`r² > 0`) the block's
//! output becomes `Y_q + (X·W_c + b_c)`: a `MatMul` and two `Add`s in float, `d²+d`
//! parameters per block. Nothing is folded: the compensation reads the block input, which
//! no single layer of the block sees.
//!
//! The float block runs on a float copy of the graph made once before any rewrite, with
//! the block input replaced by the tapped tensors; node ids of everything but the
//! substituted layers are the original graph's, so block inputs and outputs name the same
//! values in both.

use super::layer::{insert_after_value, Form, QLayer};
use super::lstsq::{BlockRegression, LinearFit};
use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::CalibRunner;
use crate::context::{CalibData, PassContext};
use crate::idioms::Idioms;
use crate::pass::PassError;
use compc_ir::op::BinaryOp;
use compc_ir::{Graph, NodeId, Op, ValueRef};
use compc_runtime::Tensor;
use std::collections::HashMap;

fn err(msg: String) -> PassError {
    PassError::Invalid(msg)
}

/// A transformer block as QwT sees it: its input stream and its output.
#[derive(Clone, Copy, Debug)]
pub struct BlockSpan {
    pub input: ValueRef,
    pub output: ValueRef,
}

/// The blocks in topological order. A block's output is the next block's input stream
/// (so everything between them, e.g. a post-norm, belongs to it); the last block's is its
/// last residual `Add`.
pub fn blocks(g: &Graph, idioms: &Idioms) -> Result<Vec<BlockSpan>, PassError> {
    let order = g.topo_order()?;
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut spans: Vec<(usize, ValueRef, ValueRef)> = idioms
        .blocks
        .iter()
        .filter_map(|b| {
            let first = idioms.residuals.get(*b.residuals.first()?)?;
            let last = idioms.residuals.get(*b.residuals.last()?)?;
            let p = *pos.get(&first.add)?;
            Some((p, first.stream, ValueRef::new(last.add, 0)))
        })
        .collect();
    spans.sort_by_key(|s| s.0);
    let mut out = Vec::with_capacity(spans.len());
    for (i, &(_, input, last)) in spans.iter().enumerate() {
        let output = spans.get(i + 1).map_or(last, |next| next.1);
        out.push(BlockSpan { input, output });
    }
    Ok(out)
}

/// `g` with every quantized layer computing with its float twin: QDQ MatMul, Conv and
/// Gemm read the twin instead of their DequantizeLinear and their float input instead of
/// an activation QuantizeLinear/DequantizeLinear; a MatMulNBits is replaced by
/// `MatMul(x, B)` (+ its bias).
pub fn float_graph(g: &Graph, layers: &[QLayer]) -> Result<Graph, PassError> {
    let mut f = g.clone();
    for l in layers {
        let w = ValueRef::new(f.add_const_ref(l.twin), 0);
        match l.form {
            Form::NBits => {
                let ty = f
                    .value_type(l.y)
                    .cloned()
                    .ok_or_else(|| err(format!("layer `{}`: its output has no type", l.name)))?;
                let mm = f.add_node(
                    Op::MatMul,
                    vec![Some(l.x), Some(w)],
                    vec![ty.clone()],
                    format!("{}_float", l.name),
                );
                let mut out = ValueRef::new(mm, 0);
                if let Some(b) = f.node(l.node).input(5) {
                    let add = f.add_node(
                        Op::Binary(BinaryOp::Add),
                        vec![Some(out), Some(b)],
                        vec![ty],
                        format!("{}_float_bias", l.name),
                    );
                    out = ValueRef::new(add, 0);
                }
                f.replace_all_uses(l.y, out);
            }
            Form::QdqMatMul | Form::Conv | Form::Gemm { .. } => {
                f.set_input(l.node, 0, Some(l.x));
                f.set_input(l.node, 1, Some(w));
            }
        }
    }
    Ok(f)
}

/// Totals over the blocks, for the pass report.
#[derive(Default)]
pub struct QwtSummary {
    pub compensated: usize,
    pub blocks: usize,
    pub nodes_added: usize,
    pub parameters: usize,
    pub before: f64,
    pub after: f64,
    pub power: f64,
}

/// Fits and inserts the compensation of every block, in order.
pub fn compensate(
    g: &mut Graph,
    cx: &mut PassContext,
    calib: &CalibData,
    idioms: &Idioms,
    layers: &[QLayer],
) -> Result<QwtSummary, PassError> {
    let spans = blocks(g, idioms)?;
    if spans.is_empty() {
        return Err(err(
            "fold-affine{method=qwt} compensates transformer blocks, and none was found in \
             this graph (method=cwac compensates each quantized layer instead)"
                .into(),
        ));
    }
    let fg = float_graph(g, layers)?;
    let frunner = CalibRunner::new(&fg, calib, DEFAULT_BATCH)?;
    let mut runner = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
    let all: Vec<usize> = (0..runner.num_batches()).collect();
    // Original block value → the value that now stands for it in `g` (a compensated
    // block output is a new Add).
    let mut now: HashMap<ValueRef, ValueRef> = HashMap::new();
    let mut sum = QwtSummary {
        blocks: spans.len(),
        ..Default::default()
    };
    let pb = cx.progress_bar(spans.len() as u64, "fold-affine qwt");
    for (i, span) in spans.iter().enumerate() {
        let x = now.get(&span.input).copied().unwrap_or(span.input);
        let (mut xs, mut yq) = (Vec::new(), Vec::new());
        runner.run(g, &[x, span.output], Some(x), &mut |_, outs| {
            let mut it = outs.into_iter();
            xs.extend(it.next());
            yq.extend(it.next());
            Ok(())
        })?;
        let (d, e) = (last_dim(&xs)?, last_dim(&yq)?);
        let mut reg = BlockRegression::new(d, e);
        frunner.run_with(
            &fg,
            &[(span.input, &xs)],
            &[span.output],
            &all,
            &mut |b, outs| {
                let yf = outs
                    .first()
                    .ok_or_else(|| err("the float block computed nothing".into()))?;
                reg.add(&xs[b].f32_cow(), &yf.f32_cow(), &yq[b].f32_cow())
                    .map_err(|e| err(format!("block {i}: {e}")))
            },
        )?;
        let fit = reg.solve().ok_or_else(|| {
            err(format!(
                "block {i}: the least-squares system cannot be solved"
            ))
        })?;
        let rel = |v: f64| if fit.power > 0.0 { v / fit.power } else { v };
        let decision = accept(&fit);
        cx.note(format!(
            "block {i} ({d}→{e}, {} tokens): r² {:.4}, output rel. MSE {:.3e} → {:.3e}{}",
            reg.tokens,
            fit.r2,
            rel(fit.mse_before),
            rel(if decision.is_ok() {
                fit.mse_after
            } else {
                fit.mse_before
            }),
            match &decision {
                Ok(()) => String::new(),
                Err(why) => format!("; not compensated: {why}"),
            }
        ));
        sum.before += fit.mse_before;
        sum.power += fit.power;
        if decision.is_ok() {
            let y = insert(g, x, span.output, &fit, d, e, i)?;
            now.insert(span.output, y);
            sum.after += fit.mse_after;
            sum.compensated += 1;
            sum.nodes_added += 3;
            sum.parameters += d * e + e;
        } else {
            sum.after += fit.mse_before;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(sum)
}

/// Whether to insert a fit: only when the quantized block differs from the float one and
/// the fit explains some of the difference (QwT's guard is `r² > 0`).
fn accept(fit: &LinearFit) -> Result<(), &'static str> {
    if fit.mse_before <= 0.0 {
        return Err("the quantized block's output equals the float one");
    }
    if fit.w.iter().chain(&fit.b).any(|v| !v.is_finite()) || fit.r2.is_nan() {
        return Err("the fit is not finite");
    }
    if fit.r2 <= 0.0 || fit.mse_after >= fit.mse_before {
        return Err("r² ≤ 0");
    }
    Ok(())
}

fn last_dim(ts: &[Tensor]) -> Result<usize, PassError> {
    let d = ts
        .first()
        .and_then(|t| t.shape().last().copied())
        .ok_or_else(|| err("no calibration batch reached the block".into()))?;
    if ts.iter().any(|t| t.shape().last() != Some(&d)) {
        return Err(err(
            "the block's feature size differs between calibration batches".into(),
        ));
    }
    Ok(d)
}

/// `y' = y + (x·W_c + b_c)`, read by everything that read `y`; returns `y'`.
fn insert(
    g: &mut Graph,
    x: ValueRef,
    y: ValueRef,
    fit: &LinearFit,
    d: usize,
    e: usize,
    block: usize,
) -> Result<ValueRef, PassError> {
    let ty = g
        .value_type(y)
        .cloned()
        .ok_or_else(|| err(format!("block {block}: its output has no type")))?;
    let name = format!("qwt_block{block}");
    let w: Vec<f32> = fit.w.iter().map(|&v| v as f32).collect();
    let b: Vec<f32> = fit.b.iter().map(|&v| v as f32).collect();
    let wt = Tensor::from_f32_as(ty.dtype, vec![d, e], w)?;
    let bt = Tensor::from_f32_as(ty.dtype, vec![e], b)?;
    let wc = g.add_const(wt.to_weight(&format!("{name}_weight"))?);
    let bc = g.add_const(bt.to_weight(&format!("{name}_bias"))?);
    let mm = g.add_node(
        Op::MatMul,
        vec![Some(x), Some(ValueRef::new(wc, 0))],
        vec![ty.clone()],
        format!("{name}_matmul"),
    );
    let comp = g.add_node(
        Op::Binary(BinaryOp::Add),
        vec![Some(ValueRef::new(mm, 0)), Some(ValueRef::new(bc, 0))],
        vec![ty],
        format!("{name}_bias_add"),
    );
    insert_after_value(g, y, BinaryOp::Add, ValueRef::new(comp, 0), &name)
}

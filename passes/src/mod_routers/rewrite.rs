//! The routed block (techniques.md §7.4): score every token, keep the top
//! `ceil(capacity·seq)` per sequence in their original order, run the block on those
//! tokens only (with the position-dependent tensors it reads from outside gathered the
//! same way), and scatter the results back onto the residual stream.

use super::build::Builder;
use super::region::Region;
use crate::pass::PassError;
use compc_ir::op::{BinaryOp, Concat, ReduceOp, UnaryOp};
use compc_ir::{DType, Graph, Op, Shape, ValueRef};
use compc_runtime::Tensor;
use std::collections::HashMap;

/// How a router scores a token from the block input `x`.
#[derive(Clone, Debug)]
pub enum Score {
    /// `s = wᵀ·x̂ + c` with `x̂ = x / sqrt(mean(x²) + eps)`.
    Linear { w: Vec<f32>, bias: f32, eps: f32 },
    /// `s = mean(x²)` (orders tokens by ‖x‖): the calibration-free baseline.
    Norm,
}

/// What multiplies the block's contribution `f(x) = block(x) − x` of a routed token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gate {
    /// Pure skip decision: routed tokens get the block's exact output.
    One,
    /// `scale·σ(s)` (MoD's router weight, rescaled to mean 1 over routed calibration tokens).
    Sigmoid { scale: f32 },
}

fn rank_of(g: &Graph, v: ValueRef) -> Option<usize> {
    match g.value_type(v).map(|t| &t.shape) {
        Some(Shape::Ranked(d)) => Some(d.len()),
        _ => None,
    }
}

/// Rewrites the block of `region` into its routed form; returns the new block output.
pub fn route(
    g: &mut Graph,
    region: &Region,
    block: usize,
    score: &Score,
    capacity: f32,
    gate: Gate,
) -> Result<ValueRef, PassError> {
    let x = region.input;
    let y = region.output;
    let d = region.width;
    let y_users = g.value_users(y);
    // Region readers of the input and of positional tensors, with the reader's rank.
    let mut readers: Vec<(compc_ir::NodeId, usize, ValueRef)> = Vec::new();
    for &n in &region.nodes {
        for (i, v) in g.node(n).inputs().iter().enumerate() {
            if let Some(v) = v {
                if *v == x || region.positional.iter().any(|(p, _)| p == v) {
                    readers.push((n, i, *v));
                }
            }
        }
    }
    let mut b = Builder::new(g, format!("mod_router{block}"));
    let sq = b.bin(BinaryOp::Mul, x, x);
    let ms = b.reduce(ReduceOp::Mean, sq, vec![-1]);
    let s = match score {
        Score::Norm => b.squeeze(ms, vec![-1]),
        Score::Linear { w, bias, eps } => {
            if Some(w.len() as u64) != d {
                return Err(PassError::Invalid(format!(
                    "mod-routers: block[{block}]: router has {} weights for model width {d:?}",
                    w.len()
                )));
            }
            let e = b.constant(Tensor::scalar_f32(*eps), "eps")?;
            let var = b.bin(BinaryOp::Add, ms, e);
            let rms = b.unary(UnaryOp::Sqrt, var);
            let xn = b.bin(BinaryOp::Div, x, rms);
            let wc = b.constant(
                Tensor::from_f32(vec![w.len(), 1], w.clone()),
                "router.weight",
            )?;
            let r = b.one(Op::MatMul, &[xn, wc], "router");
            let c = b.constant(Tensor::scalar_f32(*bias), "router.bias")?;
            let r = b.bin(BinaryOp::Add, r, c);
            b.squeeze(r, vec![-1])
        }
    };
    // k = ceil(capacity · seq), computed from the run-time sequence length.
    let seq = b.dim(x, 1);
    let seqf = b.cast(seq, DType::F32);
    let cap = b.constant(Tensor::scalar_f32(capacity), "capacity")?;
    let kf = b.bin(BinaryOp::Mul, seqf, cap);
    let kf = b.unary(UnaryOp::Ceil, kf);
    let k = b.cast(kf, DType::I64);
    let (_, top) = b.top_k(s, k, 1, true);
    // Ascending token order keeps the causal structure among the routed tokens.
    let topf = b.cast(top, DType::F32);
    let (asc, _) = b.top_k(topf, k, 1, false);
    let idx = b.cast(asc, DType::I64);
    let ix = b.expanded_index(idx, k, x, 1, 3)?;
    let x_sel = b.gather_elements(x, ix, 1);
    // Position-dependent tensors, brought to the reader's rank and batch, gathered on
    // each sequence axis.
    let batch = b.dim(x, 0);
    let mut gathered: HashMap<(ValueRef, usize), ValueRef> = HashMap::new();
    let mut rewires = Vec::new();
    for &(n, i, v) in &readers {
        if v == x {
            rewires.push((n, i, x_sel));
            continue;
        }
        let axes = &region
            .positional
            .iter()
            .find(|(p, _)| *p == v)
            .expect("collected from positional")
            .1;
        let rank = rank_of(b.g, ValueRef::new(n, 0)).ok_or_else(|| {
            PassError::Invalid(format!(
                "mod-routers: block[{block}]: {} has no known rank",
                b.g.node(n).describe(n)
            ))
        })?;
        let vr = rank_of(b.g, v).unwrap_or(0);
        if let Some(&t) = gathered.get(&(v, rank)) {
            rewires.push((n, i, t));
            continue;
        }
        if vr > rank {
            return Err(PassError::Invalid(format!(
                "mod-routers: block[{block}]: positional tensor {} has a higher rank than its reader",
                b.g.node(v.node).describe(v.node)
            )));
        }
        let pad = rank - vr;
        let mut t = if pad > 0 {
            b.unsqueeze(v, (0..pad as i64).collect())
        } else {
            v
        };
        let ones = b.i64s(&vec![1; rank - 1], "ones")?;
        let target = b.one(
            Op::Concat(Concat { axis: 0 }),
            &[batch, ones],
            "batch_shape",
        );
        t = b.one(Op::Expand, &[t, target], "expand_batch");
        for &a in axes {
            let ia = b.expanded_index(idx, k, t, a + pad, rank)?;
            t = b.gather_elements(t, ia, (a + pad) as i64);
        }
        gathered.insert((v, rank), t);
        rewires.push((n, i, t));
    }
    // Reshape targets built from the full sequence: their sequence entries become k.
    for (n, axes) in &region.outside_shapes {
        let shape = b.g.node(*n).input(1).expect("collected with a shape input");
        let rank = match b.g.value_type(shape).map(|t| &t.shape) {
            Some(Shape::Ranked(d)) if d.len() == 1 => d[0].known().map(|r| r as usize),
            _ => None,
        }
        .ok_or_else(|| {
            PassError::Invalid(format!(
                "mod-routers: block[{block}]: the shape input of {} has no known length",
                b.g.node(*n).describe(*n)
            ))
        })?;
        let sel: Vec<bool> = (0..rank).map(|a| axes.contains(&a)).collect();
        let cond = b.constant(Tensor::from_bool(vec![rank], sel), "seq_entries")?;
        let fixed = b.one(Op::Where, &[cond, k, shape], "routed_shape");
        rewires.push((*n, 1, fixed));
    }
    for (n, i, v) in rewires {
        b.g.set_input(n, i, Some(v));
    }
    let y_new = match gate {
        Gate::One => y,
        Gate::Sigmoid { scale } => {
            let sg = b.unary(UnaryOp::Sigmoid, s);
            let sc = b.constant(Tensor::scalar_f32(scale), "gate_scale")?;
            let sg = b.bin(BinaryOp::Mul, sg, sc);
            let gsel = b.gather_elements(sg, idx, 1);
            let g3 = b.unsqueeze(gsel, vec![2]);
            let delta = b.bin(BinaryOp::Sub, y, x_sel);
            let scaled = b.bin(BinaryOp::Mul, delta, g3);
            b.bin(BinaryOp::Add, x_sel, scaled)
        }
    };
    let out = b.scatter_elements(x, ix, y_new, 1);
    for (u, slot) in y_users {
        g.set_input(u, slot as usize, Some(out));
    }
    for o in g.outputs.iter_mut() {
        if o.value == y {
            o.value = out;
        }
    }
    Ok(out)
}

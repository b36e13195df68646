//! Whether a CPU model may be run one sample at a time.
//!
//! A graph whose every sample is computed independently of the others (a CNN: every op
//! works within one image) gives the same result whether it is run on the whole batch at
//! once or on each sample in turn. Run per sample, its intermediate tensors are a batch of
//! one, which stays in the caches between ops; run on a batch of 8, the activations of a
//! small CNN outgrow L2 and every op streams them from memory again. The manifest names
//! the batch dim of such a model ([`compc_runtime::native::manifest::Manifest::split_batch`])
//! and the runtime loops over the samples on one thread.
//!
//! The check is conservative: every value that is not a constant has the batch symbol as
//! its first dim and only static dims after it, and every op is one that works per sample
//! along dim 0 (with attributes that keep it so). Anything else (a sequence dim, a reshape
//! that merges the batch into another dim, an op not listed) leaves the model whole.

use compc_ir::op::{BinaryOp, Op};
use compc_ir::{Dim, Graph, TensorType};

/// `t` is `[sym, static..]` (binding `sym` on first use).
fn batched(t: &TensorType, sym: &mut Option<String>) -> bool {
    let Some(d) = t.shape.dims() else {
        return false;
    };
    let Some(Dim::Sym(s)) = d.first() else {
        return false;
    };
    if !d[1..].iter().all(|x| x.known().is_some()) {
        return false;
    }
    match sym {
        Some(b) => b == s,
        None => {
            *sym = Some(s.clone());
            true
        }
    }
}

/// The batch dim's symbol if `g` may be run one sample at a time.
pub fn split_batch_symbol(g: &Graph) -> Option<String> {
    let mut sym: Option<String> = None;
    for id in g.topo_order().ok()? {
        let node = g.node(id);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        if !node.outputs.iter().all(|t| batched(t, &mut sym)) {
            return None;
        }
        if matches!(node.op, Op::Input) {
            continue;
        }
        let mut consts = Vec::new();
        for (i, v) in node.inputs().iter().enumerate() {
            let Some(v) = *v else { continue };
            if g.const_weight(v).is_some() {
                consts.push(i);
            } else if !batched(g.value_type(v)?, &mut sym) {
                return None;
            }
        }
        let rank = node.outputs.first()?.shape.dims()?.len() as i64;
        let not_batch_axis = |a: i64| a.rem_euclid(rank) != 0;
        let per_sample = match &node.op {
            Op::Unary(_) | Op::Variadic(_) | Op::Clip | Op::HardSigmoid(_) => true,
            Op::Binary(k) => *k != BinaryOp::PRelu || consts.contains(&1),
            Op::Conv(_) => consts.contains(&1),
            Op::MaxPool(_) | Op::AveragePool(_) => true,
            Op::GlobalAveragePool | Op::GlobalMaxPool => true,
            // Constant axes, none of them the batch (the output's dim 0 is the batch, so
            // with `keepdims` off dim 0 is not reduced either).
            Op::Reduce(_, r) => {
                let in_rank = g.value_type(node.input(0)?)?.shape.dims()?.len() as i64;
                r.axes
                    .as_ref()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(|&x| x.rem_euclid(in_rank) != 0))
            }
            Op::BatchNorm(b) => !b.training_mode && (1..5).all(|i| consts.contains(&i)),
            Op::Concat(c) => not_batch_axis(c.axis),
            Op::Flatten(f) => f.axis >= 1,
            // In and out both `[batch, static..]`: a row-major reshape keeps each sample's
            // block of elements.
            Op::Reshape(_) => true,
            Op::Softmax(a) | Op::LogSoftmax(a) => not_batch_axis(a.axis),
            Op::Resize(r) => r.coordinate_transformation_mode != "tf_crop_and_resize",
            // Rows of A are the samples; B (and C) are constants.
            Op::Gemm(gm) => {
                !gm.trans_a
                    && consts.contains(&1)
                    && (node.input(2).is_none() || consts.contains(&2))
            }
            Op::MatMul => consts.contains(&1),
            _ => false,
        };
        if !per_sample {
            return None;
        }
    }
    sym
}

//! Kernels, one file per op family, and `eval_op`, which maps an `Op` and its inputs to
//! the kernel. Optional ONNX inputs arrive as `None`.

pub mod conv;
pub mod einsum;
pub mod elementwise;
pub mod gqa;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod misc;
pub mod norm;
pub mod pool;
pub mod qlinear;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod shape_ops;
pub mod signal;
pub mod training;
pub mod vision;

use crate::error::{bail, Result};
use crate::tensor::Tensor;
use compc_ir::Op;
use reduce::SoftmaxKind;

/// Input `i`, which the op requires.
fn req<'a>(op: &Op, inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor> {
    match inputs.get(i).copied().flatten() {
        Some(t) => Ok(t),
        None => bail!("{} needs input {i}, which is missing", op.name()),
    }
}

/// Every input, all of which the op requires.
fn present<'a>(op: &Op, inputs: &[Option<&'a Tensor>]) -> Result<Vec<&'a Tensor>> {
    (0..inputs.len()).map(|i| req(op, inputs, i)).collect()
}

fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Axes from the attribute or, when it is unset, from an optional integer input.
fn axes_from(attr: &Option<Vec<i64>>, input: Option<&Tensor>) -> Result<Option<Vec<i64>>> {
    Ok(match (attr, input) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(t)) => Some(shape_ops::ints(t, "axes")?),
        (None, None) => None,
    })
}

/// Evaluates one node. `Input` and `Const` are the executor's business; custom ops are
/// rejected ("unsupported op").
pub fn eval_op(op: &Op, inputs: &[Option<&Tensor>], num_outputs: usize) -> Result<Vec<Tensor>> {
    let x = || req(op, inputs, 0);
    let one = |t: Result<Tensor>| t.map(|t| vec![t]);
    match op {
        Op::Input | Op::Const(_) => bail!("{} nodes are not evaluated by eval_op", op.name()),
        Op::Custom(c) => bail!("unsupported op `{}:{}`", c.domain, c.op_type),
        Op::Unary(k) => one(elementwise::unary(*k, x()?)),
        Op::Binary(k) => one(elementwise::binary(*k, x()?, req(op, inputs, 1)?)),
        Op::Variadic(k) => {
            let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
            one(elementwise::variadic(*k, &xs))
        }
        Op::Reduce(k, r) => one(reduce::reduce(*k, r, x()?, opt(inputs, 1))),
        Op::MatMul => one(matmul::matmul(x()?, req(op, inputs, 1)?)),
        Op::Where => one(elementwise::where_op(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
        )),
        Op::Clip => one(elementwise::clip(x()?, opt(inputs, 1), opt(inputs, 2))),
        Op::Expand => one(shape_ops::expand(x()?, req(op, inputs, 1)?)),
        Op::Tile => one(shape_ops::tile(x()?, req(op, inputs, 1)?)),
        Op::Range => one(shape_ops::range(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
        )),
        Op::Size => Ok(vec![shape_ops::size_of(x()?)]),
        Op::NonZero => one(index::non_zero(x()?)),
        Op::Slice => one(shape_ops::slice(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            opt(inputs, 3),
            opt(inputs, 4),
        )),
        Op::GlobalAveragePool => one(pool::global_pool(x()?, false)),
        Op::GlobalMaxPool => one(pool::global_pool(x()?, true)),
        Op::CastLike => one(x()?.cast(req(op, inputs, 1)?.dtype())),
        Op::DynamicQuantizeLinear => quant::dynamic_quantize_linear(x()?),
        Op::Gemm(g) => one(matmul::gemm_op(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            g,
        )),
        Op::Conv(c) => one(conv::conv(x()?, req(op, inputs, 1)?, opt(inputs, 2), c)),
        Op::ConvTranspose(c) => one(conv::conv_transpose(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            c,
        )),
        Op::MaxPool(p) => pool::max_pool(x()?, p, num_outputs),
        Op::AveragePool(p) => one(pool::average_pool(x()?, p)),
        Op::BatchNorm(b) => {
            let ins = [
                x()?,
                req(op, inputs, 1)?,
                req(op, inputs, 2)?,
                req(op, inputs, 3)?,
                req(op, inputs, 4)?,
            ];
            norm::batch_norm(ins, b.epsilon, b.momentum, b.training_mode, num_outputs)
        }
        Op::LayerNorm(n) => norm::layer_norm(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            n.axis,
            n.epsilon,
            false,
            num_outputs,
        ),
        Op::RmsNorm(n) => norm::layer_norm(
            x()?,
            req(op, inputs, 1)?,
            None,
            n.axis,
            n.epsilon,
            true,
            num_outputs,
        ),
        Op::InstanceNorm(n) => one(norm::instance_norm(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            n.epsilon,
        )),
        Op::GroupNorm(n) => one(norm::group_norm(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            n.num_groups,
            n.epsilon,
        )),
        Op::LeakyRelu(a) => {
            let al = a.alpha as f64;
            one(elementwise::activation("leaky_relu", x()?, move |v| {
                if v >= 0.0 {
                    v
                } else {
                    al * v
                }
            }))
        }
        Op::Elu(a) => {
            let al = a.alpha as f64;
            one(elementwise::activation("elu", x()?, move |v| {
                if v > 0.0 {
                    v
                } else {
                    al * (v.exp() - 1.0)
                }
            }))
        }
        Op::Celu(a) => {
            let al = a.alpha as f64;
            one(elementwise::activation("celu", x()?, move |v| {
                v.max(0.0) + (al * ((v / al).exp() - 1.0)).min(0.0)
            }))
        }
        Op::ThresholdedRelu(a) => {
            let al = a.alpha as f64;
            one(elementwise::activation(
                "thresholded_relu",
                x()?,
                move |v| if v > al { v } else { 0.0 },
            ))
        }
        Op::HardSigmoid(h) => {
            let (al, be) = (h.alpha as f64, h.beta as f64);
            one(elementwise::activation("hard_sigmoid", x()?, move |v| {
                (al * v + be).clamp(0.0, 1.0)
            }))
        }
        Op::Selu(s) => {
            let (al, ga) = (s.alpha as f64, s.gamma as f64);
            one(elementwise::activation("selu", x()?, move |v| {
                ga * if v > 0.0 { v } else { al * (v.exp() - 1.0) }
            }))
        }
        Op::Gelu(g) => one(elementwise::gelu(x()?, &g.approximate)),
        Op::Softmax(a) => one(reduce::softmax(x()?, a.axis, SoftmaxKind::Softmax)),
        Op::LogSoftmax(a) => one(reduce::softmax(x()?, a.axis, SoftmaxKind::LogSoftmax)),
        Op::Hardmax(a) => one(reduce::softmax(x()?, a.axis, SoftmaxKind::Hardmax)),
        Op::Flatten(f) => one(shape_ops::flatten(x()?, f.axis)),
        Op::ArgMax(a) => one(reduce::arg_reduce(x()?, a, true)),
        Op::ArgMin(a) => one(reduce::arg_reduce(x()?, a, false)),
        Op::Cast(c) => one(x()?.cast(c.to)),
        Op::Reshape(r) => one(shape_ops::reshape(x()?, req(op, inputs, 1)?, r.allowzero)),
        Op::Transpose(t) => one(shape_ops::transpose(x()?, t.perm.as_deref())),
        Op::Squeeze(a) => one(shape_ops::squeeze(
            x()?,
            axes_from(&a.axes, opt(inputs, 1))?,
        )),
        Op::Unsqueeze(a) => match axes_from(&a.axes, opt(inputs, 1))? {
            Some(ax) => one(shape_ops::unsqueeze(x()?, &ax)),
            None => bail!("unsqueeze needs axes (attribute or second input)"),
        },
        Op::Concat(c) => {
            let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
            one(shape_ops::concat(&xs, c.axis))
        }
        Op::Split(s) => shape_ops::split(x()?, s, opt(inputs, 1), num_outputs),
        Op::Gather(a) => one(index::gather(x()?, req(op, inputs, 1)?, a.axis)),
        Op::GatherElements(a) => one(index::gather_elements(x()?, req(op, inputs, 1)?, a.axis)),
        Op::GatherNd(g) => one(index::gather_nd(x()?, req(op, inputs, 1)?, g.batch_dims)),
        Op::ScatterNd(s) => one(index::scatter_nd(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            &s.reduction,
        )),
        Op::ScatterElements(s) => one(index::scatter_elements(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            s.axis,
            &s.reduction,
        )),
        Op::Shape(s) => Ok(vec![shape_ops::shape_of(x()?, s.start, s.end)]),
        Op::ConstantOfShape(c) => one(shape_ops::constant_of_shape(x()?, c.value.as_ref())),
        Op::Trilu(t) => one(shape_ops::trilu(x()?, opt(inputs, 1), t.upper)),
        Op::Pad(p) => one(shape_ops::pad(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            opt(inputs, 3),
            &p.mode,
        )),
        Op::Resize(r) => one(resize::resize(
            x()?,
            opt(inputs, 1),
            opt(inputs, 2),
            opt(inputs, 3),
            r,
        )),
        Op::TopK(t) => index::top_k(x()?, req(op, inputs, 1)?, t.axis, t.largest),
        Op::CumSum(c) => one(reduce::cumsum(
            x()?,
            req(op, inputs, 1)?,
            c.exclusive,
            c.reverse,
        )),
        Op::Einsum(e) => {
            let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
            one(einsum::einsum(&e.equation, &xs))
        }
        Op::DepthToSpace(d) => one(shape_ops::depth_to_space(x()?, d.blocksize, &d.mode)),
        Op::SpaceToDepth(s) => one(shape_ops::space_to_depth(x()?, s.blocksize)),
        Op::OneHot(o) => one(index::one_hot(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            o.axis,
        )),
        Op::Dropout(_) => elementwise::dropout(x()?, opt(inputs, 1), opt(inputs, 2), num_outputs),
        Op::Mod(m) => one(elementwise::modulo(x()?, req(op, inputs, 1)?, m.fmod)),
        Op::QuantizeLinear(q) => one(quant::quantize_linear(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            q,
        )),
        Op::DequantizeLinear(d) => one(quant::dequantize_linear(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            d,
        )),
        Op::MatMulNBits(m) => one(quant::matmul_nbits(inputs, m)),
        Op::GroupQueryAttention(a) => gqa::group_query_attention(inputs, a, num_outputs),
        Op::Hadamard(h) => one(quant::hadamard_kron(x()?, h.size, opt(inputs, 1))),
        Op::RouterTopK(r) => one(index::router_top_k(x()?, r.capacity)),
        Op::Det => one(misc::det(x()?)),
        Op::MatMulInteger => one(qlinear::matmul_integer(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            opt(inputs, 3),
        )),
        Op::QLinearMatMul => {
            let mut ins = [x()?; 8];
            for (i, t) in ins.iter_mut().enumerate() {
                *t = req(op, inputs, i)?;
            }
            one(qlinear::qlinear_matmul(ins))
        }
        Op::IsInf(a) => one(misc::is_inf(x()?, a.detect_negative, a.detect_positive)),
        Op::Shrink(a) => one(misc::shrink(x()?, a.bias, a.lambd)),
        Op::BitShift(a) => one(misc::bit_shift(x()?, req(op, inputs, 1)?, &a.direction)),
        Op::EyeLike(e) => one(misc::eye_like(x()?, e)),
        Op::MeanVarianceNorm(m) => one(misc::mean_variance_norm(x()?, &m.axes)),
        Op::Lrn(l) => one(misc::lrn(x()?, l)),
        Op::Compress(c) => one(misc::compress(x()?, req(op, inputs, 1)?, c)),
        Op::ReverseSequence(r) => one(misc::reverse_sequence(
            x()?,
            req(op, inputs, 1)?,
            r.batch_axis,
            r.time_axis,
        )),
        Op::Unique(u) => misc::unique(x()?, u, num_outputs),
        Op::MaxUnpool(m) => one(vision::max_unpool(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            m,
        )),
        Op::RoiAlign(r) => one(vision::roi_align(
            x()?,
            req(op, inputs, 1)?,
            req(op, inputs, 2)?,
            r,
        )),
        Op::NonMaxSuppression(n) => one(vision::non_max_suppression(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            opt(inputs, 3),
            opt(inputs, 4),
            n.center_point_box,
        )),
        Op::GridSample(g) => one(vision::grid_sample(x()?, req(op, inputs, 1)?, g)),
        Op::ConvInteger(c) => one(qlinear::conv_integer(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            opt(inputs, 3),
            c,
        )),
        Op::QLinearConv(c) => {
            let mut ins = [x()?; 8];
            for (i, t) in ins.iter_mut().enumerate() {
                *t = req(op, inputs, i)?;
            }
            one(qlinear::qlinear_conv(ins, opt(inputs, 8), c))
        }
        Op::NllLoss(l) => one(loss::nll_loss(x()?, req(op, inputs, 1)?, opt(inputs, 2), l)),
        Op::SoftmaxCrossEntropyLoss(l) => {
            loss::softmax_cross_entropy(x()?, req(op, inputs, 1)?, opt(inputs, 2), l, num_outputs)
        }
        Op::Rnn(r) => rnn::rnn(inputs, r, num_outputs),
        Op::Gru(r) => rnn::gru(inputs, r, num_outputs),
        Op::Lstm(r) => rnn::lstm(inputs, r, num_outputs),
        Op::Dft(d) => one(signal::dft(x()?, opt(inputs, 1), d)),
        Op::Stft(s) => one(signal::stft(
            x()?,
            req(op, inputs, 1)?,
            opt(inputs, 2),
            opt(inputs, 3),
            s.onesided,
        )),
        Op::HannWindow(w) => one(signal::window(
            x()?,
            [0.5, 0.5, 0.0],
            w.periodic,
            w.output_datatype,
        )),
        Op::HammingWindow(w) => one(signal::window(
            x()?,
            [25.0 / 46.0, 21.0 / 46.0, 0.0],
            w.periodic,
            w.output_datatype,
        )),
        Op::BlackmanWindow(w) => one(signal::window(
            x()?,
            [0.42, 0.5, 0.08],
            w.periodic,
            w.output_datatype,
        )),
        Op::MelWeightMatrix(m) => {
            let mut ins = [x()?; 5];
            for (i, t) in ins.iter_mut().enumerate() {
                *t = req(op, inputs, i)?;
            }
            one(signal::mel_weight_matrix(ins, m.output_datatype))
        }
        Op::TfIdfVectorizer(t) => one(misc::tf_idf(x()?, t)),
        Op::Adagrad(a) => training::adagrad(&present(op, inputs)?, a),
        Op::Adam(a) => training::adam(&present(op, inputs)?, a),
        Op::Momentum(a) => training::momentum(&present(op, inputs)?, a),
        // Sequence, optional and control-flow ops take values other than tensors: the
        // executor runs them (`control::eval`).
        Op::If(_)
        | Op::Loop(_)
        | Op::Scan(_)
        | Op::SequenceMap(_)
        | Op::SequenceEmpty(_)
        | Op::ConcatFromSequence(_)
        | Op::SplitToSequence(_)
        | Op::Optional(_)
        | Op::SequenceConstruct
        | Op::SequenceAt
        | Op::SequenceInsert
        | Op::SequenceErase
        | Op::SequenceLength
        | Op::OptionalHasElement
        | Op::OptionalGetElement
        | Op::StringNormalizer(_) => bail!("{} is run by the executor, not eval_op", op.name()),
    }
}

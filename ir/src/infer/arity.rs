//! How many inputs and outputs each op takes (ONNX's counts, opsets 13–23). The verifier
//! checks nodes against it; importers use it to drop trailing omitted inputs.

use crate::op::Op;
use std::fmt;

/// Accepted input and output counts of an op. Input counts include omitted optional
/// inputs (`None` entries); the first `min_inputs` inputs must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    pub min_inputs: usize,
    /// `None`: any number (variadic ops, `Concat`, `Einsum`, custom ops).
    pub max_inputs: Option<usize>,
    pub min_outputs: usize,
    /// `None`: any number (`Split`, custom ops).
    pub max_outputs: Option<usize>,
}

impl Arity {
    const fn new(
        min_in: usize,
        max_in: Option<usize>,
        min_out: usize,
        max_out: Option<usize>,
    ) -> Self {
        Arity {
            min_inputs: min_in,
            max_inputs: max_in,
            min_outputs: min_out,
            max_outputs: max_out,
        }
    }

    pub fn accepts_inputs(&self, n: usize) -> bool {
        n >= self.min_inputs && self.max_inputs.is_none_or(|m| n <= m)
    }

    pub fn accepts_outputs(&self, n: usize) -> bool {
        n >= self.min_outputs && self.max_outputs.is_none_or(|m| n <= m)
    }

    /// "2", "2 to 3", "at least 1": for messages.
    pub fn inputs_text(&self) -> String {
        count_text(self.min_inputs, self.max_inputs)
    }

    pub fn outputs_text(&self) -> String {
        count_text(self.min_outputs, self.max_outputs)
    }
}

fn count_text(min: usize, max: Option<usize>) -> String {
    match max {
        Some(m) if m == min => format!("{m}"),
        Some(m) => format!("{min} to {m}"),
        None => format!("at least {min}"),
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} inputs, {} outputs",
            self.inputs_text(),
            self.outputs_text()
        )
    }
}

/// The input/output counts `op` accepts.
pub fn arity(op: &Op) -> Arity {
    let one = |min_in: usize, max_in: usize| Arity::new(min_in, Some(max_in), 1, Some(1));
    match op {
        Op::Input | Op::Const(_) => one(0, 0),
        Op::Unary(_) => one(1, 1),
        Op::Binary(_) => one(2, 2),
        Op::Variadic(_) => Arity::new(1, None, 1, Some(1)),
        Op::Reduce(..) => one(1, 2),
        Op::Custom(_) => Arity::new(0, None, 0, None),
        Op::MatMul | Op::Expand | Op::Tile | Op::CastLike => one(2, 2),
        Op::Where | Op::Range => one(3, 3),
        Op::Clip => one(1, 3),
        Op::Size | Op::NonZero | Op::GlobalAveragePool | Op::GlobalMaxPool => one(1, 1),
        Op::Slice => one(3, 5),
        Op::DynamicQuantizeLinear => Arity::new(1, Some(1), 3, Some(3)),
        Op::Gemm(_) | Op::Conv(_) | Op::ConvTranspose(_) => one(2, 3),
        Op::MaxPool(_) => Arity::new(1, Some(1), 1, Some(2)),
        Op::AveragePool(_) => one(1, 1),
        // Outputs 2 and 3 (running mean and variance) exist in training mode only.
        Op::BatchNorm(_) => Arity::new(5, Some(5), 1, Some(3)),
        Op::LayerNorm(_) => Arity::new(2, Some(3), 1, Some(3)),
        Op::RmsNorm(_) => one(2, 2),
        Op::InstanceNorm(_) | Op::GroupNorm(_) => one(3, 3),
        Op::LeakyRelu(_)
        | Op::Elu(_)
        | Op::Celu(_)
        | Op::ThresholdedRelu(_)
        | Op::HardSigmoid(_)
        | Op::Selu(_)
        | Op::Gelu(_)
        | Op::Softmax(_)
        | Op::LogSoftmax(_)
        | Op::Hardmax(_)
        | Op::Flatten(_)
        | Op::ArgMax(_)
        | Op::ArgMin(_)
        | Op::Cast(_)
        | Op::Transpose(_)
        | Op::Shape(_)
        | Op::ConstantOfShape(_)
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_)
        | Op::RouterTopK(_) => one(1, 1),
        // The optional second input is the Kronecker factor of a non-power-of-two size.
        Op::Hadamard(_) => one(1, 2),
        Op::Reshape(_)
        | Op::Gather(_)
        | Op::GatherElements(_)
        | Op::GatherNd(_)
        | Op::CumSum(_)
        | Op::Mod(_) => one(2, 2),
        // The axes come from the attribute or, when not constant, the second input.
        Op::Squeeze(_) | Op::Unsqueeze(_) => one(1, 2),
        Op::Concat(_) | Op::Einsum(_) => Arity::new(1, None, 1, Some(1)),
        Op::Split(_) => Arity::new(1, Some(2), 1, None),
        Op::ScatterNd(_) | Op::ScatterElements(_) | Op::OneHot(_) => one(3, 3),
        Op::Trilu(_) => one(1, 2),
        Op::Pad(_) => one(2, 4),
        Op::Resize(_) => one(1, 4),
        Op::TopK(_) => Arity::new(2, Some(2), 2, Some(2)),
        Op::Dropout(_) => Arity::new(1, Some(3), 1, Some(2)),
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) => one(2, 3),
        // A, B, scales, then optional zero points, g_idx and bias.
        Op::MatMulNBits(_) => one(3, 6),
        // query, key, value, past_key, past_value, seqlens_k, total_sequence_length, then
        // cos/sin caches, position ids, bias, head sink, KV scales, q/k norms, query lengths.
        // Key to past_value are optional before the required seqlens_k and
        // total_sequence_length, which shape inference checks (the count here is a prefix).
        Op::GroupQueryAttention(_) => Arity::new(1, Some(16), 1, Some(3)),
        Op::Det
        | Op::IsInf(_)
        | Op::Shrink(_)
        | Op::EyeLike(_)
        | Op::MeanVarianceNorm(_)
        | Op::Lrn(_)
        | Op::TfIdfVectorizer(_) => one(1, 1),
        Op::BitShift(_) | Op::Compress(_) | Op::ReverseSequence(_) | Op::GridSample(_) => one(2, 2),
        Op::Unique(_) => Arity::new(1, Some(1), 1, Some(4)),
        Op::MaxUnpool(_) => one(2, 3),
        Op::RoiAlign(_) => one(3, 3),
        Op::NonMaxSuppression(_) => one(2, 5),
        Op::MatMulInteger => one(2, 4),
        Op::ConvInteger(_) => one(2, 4),
        Op::QLinearMatMul => one(8, 8),
        Op::QLinearConv(_) => one(8, 9),
        Op::NllLoss(_) => one(2, 3),
        Op::SoftmaxCrossEntropyLoss(_) => Arity::new(2, Some(3), 1, Some(2)),
        // X, W, R, then optional B, sequence_lens, initial_h (and initial_c, P for LSTM);
        // every output is optional.
        Op::Rnn(_) | Op::Gru(_) => Arity::new(3, Some(6), 0, Some(2)),
        Op::Lstm(_) => Arity::new(3, Some(8), 0, Some(3)),
        Op::Dft(_) => one(1, 3),
        Op::Stft(_) => one(2, 4),
        Op::HannWindow(_) | Op::HammingWindow(_) | Op::BlackmanWindow(_) => one(1, 1),
        Op::MelWeightMatrix(_) => one(5, 5),
        // R, T, then the per-tensor inputs; one output per updated tensor and state.
        Op::Adagrad(_) | Op::Adam(_) | Op::Momentum(_) => Arity::new(3, None, 1, None),
        // Control flow: the declared inputs, then the captured outer values.
        Op::If(_) => Arity::new(1, None, 0, None),
        // M and cond may both be omitted (their slots stay, as `None`).
        Op::Loop(_) => Arity::new(0, None, 0, None),
        Op::Scan(_) | Op::SequenceMap(_) => Arity::new(1, None, 1, None),
        Op::SequenceConstruct => Arity::new(1, None, 1, Some(1)),
        Op::SequenceEmpty(_) => one(0, 0),
        Op::SequenceAt => one(2, 2),
        Op::SequenceInsert => one(2, 3),
        Op::SequenceErase => one(1, 2),
        Op::SequenceLength | Op::ConcatFromSequence(_) | Op::OptionalGetElement => one(1, 1),
        Op::SplitToSequence(_) => one(1, 2),
        Op::Optional(_) | Op::OptionalHasElement => one(0, 1),
        Op::StringNormalizer(_) => one(1, 1),
    }
}

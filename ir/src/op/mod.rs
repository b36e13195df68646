//! Operations. `Op` is one enum: typed attributes for every op compc understands, the
//! compression ops as first-class variants (`MatMulNBits`, `Hadamard`, `RouterTopK`,
//! blocked `DequantizeLinear`), and `Custom` for anything else, which passes through
//! import and export untouched.
//!
//! Each variant has a text-format name (snake case) and an ONNX (domain, op type); both
//! come from the single table in `define_ops!` below so they cannot drift apart.

pub mod attr_struct;
pub mod attrs;
pub mod attrs_ext;
pub mod control;
pub mod kinds;

pub use attrs::*;
pub use attrs_ext::*;
pub use control::*;
pub use kinds::{BinaryOp, ReduceOp, UnaryOp, VariadicOp};

use crate::attr::{AttrReader, Attrs};
use crate::weights::WeightId;

/// The ONNX domain compc uses for its own ops before the backend lowers them.
pub const COMPC_DOMAIN: &str = "ai.compc";
pub const MS_DOMAIN: &str = "com.microsoft";
/// ONNX's domain of training operators (optimizers).
pub const TRAINING_DOMAIN: &str = "ai.onnx.preview.training";

/// An op outside compc's vocabulary, kept verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomOp {
    pub domain: String,
    pub op_type: String,
    pub attrs: Attrs,
}

macro_rules! define_ops {
    (
        unit { $($u:ident = $utext:literal / $udom:expr, $uonnx:literal;)* }
        with_attrs { $($a:ident($aty:ident) = $atext:literal / $adom:expr, $aonnx:literal;)* }
    ) => {
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            /// A graph input; the node's single output carries its type, its name is the
            /// input's name.
            Input,
            /// A weight or constant from the graph's `WeightStore`.
            Const(WeightId),
            Unary(UnaryOp),
            Binary(BinaryOp),
            Variadic(VariadicOp),
            Reduce(ReduceOp, Reduce),
            Custom(CustomOp),
            $($u,)*
            $($a($aty),)*
        }

        impl Op {
            /// Name in the text format (`"matmul"`, `"reduce_mean"`, `"custom:dom:Type"` is
            /// spelled by [`Op::text_name`]).
            pub fn name(&self) -> &'static str {
                match self {
                    Op::Input => "input",
                    Op::Const(_) => "const",
                    Op::Unary(k) => k.name(),
                    Op::Binary(k) => k.name(),
                    Op::Variadic(k) => k.name(),
                    Op::Reduce(k, _) => k.name(),
                    Op::Custom(_) => "custom",
                    $(Op::$u => $utext,)*
                    $(Op::$a(_) => $atext,)*
                }
            }

            /// ONNX domain and op type this op is written as (`Input`/`Const` have none).
            pub fn onnx_op(&self) -> Option<(&str, &str)> {
                Some(match self {
                    Op::Input | Op::Const(_) => return None,
                    Op::Unary(k) => ("", k.onnx_type()),
                    Op::Binary(k) => ("", k.onnx_type()),
                    Op::Variadic(k) => ("", k.onnx_type()),
                    Op::Reduce(k, _) => ("", k.onnx_type()),
                    Op::Custom(c) => (c.domain.as_str(), c.op_type.as_str()),
                    $(Op::$u => ($udom, $uonnx),)*
                    $(Op::$a(_) => ($adom, $aonnx),)*
                })
            }

            /// Attributes as the generic map (defaults left out). `Const`'s weight is not an
            /// attribute here: the text format and the backends handle it.
            pub fn attrs(&self) -> Attrs {
                match self {
                    Op::Reduce(_, r) => r.to_attrs(),
                    Op::Custom(c) => c.attrs.clone(),
                    $(Op::$a(x) => x.to_attrs(),)*
                    _ => Attrs::new(),
                }
            }

            /// Builds an op from its text name and attributes. `Input`, `Const` and custom
            /// ops are built by their callers, which know the extra context they need.
            pub fn from_name(name: &str, attrs: Attrs) -> Result<Op, String> {
                if let Some(k) = UnaryOp::from_name(name) {
                    return no_attrs(name, attrs).map(|_| Op::Unary(k));
                }
                if let Some(k) = BinaryOp::from_name(name) {
                    return no_attrs(name, attrs).map(|_| Op::Binary(k));
                }
                if let Some(k) = VariadicOp::from_name(name) {
                    return no_attrs(name, attrs).map(|_| Op::Variadic(k));
                }
                if let Some(k) = ReduceOp::from_name(name) {
                    return Reduce::from_attrs(name, attrs).map(|r| Op::Reduce(k, r));
                }
                match name {
                    $($utext => no_attrs(name, attrs).map(|_| Op::$u),)*
                    $($atext => $aty::from_attrs(name, attrs).map(Op::$a),)*
                    _ => Err(format!("unknown op `{name}`")),
                }
            }

            /// Maps an ONNX (domain, op type) to the text name of the op compc has for it.
            pub fn name_for_onnx(domain: &str, op_type: &str) -> Option<&'static str> {
                let domain = if domain == "ai.onnx" { "" } else { domain };
                if domain.is_empty() {
                    if let Some(k) = UnaryOp::from_onnx_type(op_type) {
                        return Some(k.name());
                    }
                    if let Some(k) = BinaryOp::from_onnx_type(op_type) {
                        return Some(k.name());
                    }
                    if let Some(k) = VariadicOp::from_onnx_type(op_type) {
                        return Some(k.name());
                    }
                    if let Some(k) = ReduceOp::from_onnx_type(op_type) {
                        return Some(k.name());
                    }
                }
                $(if domain == $udom && op_type == $uonnx { return Some($utext); })*
                $(if domain == $adom && op_type == $aonnx { return Some($atext); })*
                None
            }

            /// Every text name, for `compc passes`-style listings and error messages.
            pub fn all_names() -> Vec<&'static str> {
                let mut v: Vec<&'static str> = Vec::new();
                v.extend(UnaryOp::ALL.iter().map(|k| k.name()));
                v.extend(BinaryOp::ALL.iter().map(|k| k.name()));
                v.extend(VariadicOp::ALL.iter().map(|k| k.name()));
                v.extend(ReduceOp::ALL.iter().map(|k| k.name()));
                $(v.push($utext);)*
                $(v.push($atext);)*
                v
            }
        }
    };
}

fn no_attrs(name: &str, attrs: Attrs) -> Result<(), String> {
    AttrReader::new(name, attrs).finish(&[])
}

define_ops! {
    unit {
        MatMul = "matmul" / "", "MatMul";
        Where = "where" / "", "Where";
        Clip = "clip" / "", "Clip";
        Expand = "expand" / "", "Expand";
        Tile = "tile" / "", "Tile";
        Range = "range" / "", "Range";
        Size = "size" / "", "Size";
        NonZero = "non_zero" / "", "NonZero";
        Slice = "slice" / "", "Slice";
        GlobalAveragePool = "global_average_pool" / "", "GlobalAveragePool";
        GlobalMaxPool = "global_max_pool" / "", "GlobalMaxPool";
        CastLike = "cast_like" / "", "CastLike";
        DynamicQuantizeLinear = "dynamic_quantize_linear" / "", "DynamicQuantizeLinear";
        Det = "det" / "", "Det";
        MatMulInteger = "matmul_integer" / "", "MatMulInteger";
        QLinearMatMul = "qlinear_matmul" / "", "QLinearMatMul";
        SequenceConstruct = "sequence_construct" / "", "SequenceConstruct";
        SequenceAt = "sequence_at" / "", "SequenceAt";
        SequenceInsert = "sequence_insert" / "", "SequenceInsert";
        SequenceErase = "sequence_erase" / "", "SequenceErase";
        SequenceLength = "sequence_length" / "", "SequenceLength";
        OptionalHasElement = "optional_has_element" / "", "OptionalHasElement";
        OptionalGetElement = "optional_get_element" / "", "OptionalGetElement";
    }
    with_attrs {
        Gemm(Gemm) = "gemm" / "", "Gemm";
        Conv(Conv) = "conv" / "", "Conv";
        ConvTranspose(ConvTranspose) = "conv_transpose" / "", "ConvTranspose";
        MaxPool(Pool) = "max_pool" / "", "MaxPool";
        AveragePool(Pool) = "average_pool" / "", "AveragePool";
        BatchNorm(BatchNorm) = "batch_normalization" / "", "BatchNormalization";
        LayerNorm(Norm) = "layer_normalization" / "", "LayerNormalization";
        RmsNorm(Norm) = "rms_normalization" / "", "RMSNormalization";
        InstanceNorm(InstanceNorm) = "instance_normalization" / "", "InstanceNormalization";
        GroupNorm(GroupNorm) = "group_normalization" / "", "GroupNormalization";
        LeakyRelu(Alpha) = "leaky_relu" / "", "LeakyRelu";
        Elu(AlphaOne) = "elu" / "", "Elu";
        Celu(AlphaOne) = "celu" / "", "Celu";
        ThresholdedRelu(AlphaOne) = "thresholded_relu" / "", "ThresholdedRelu";
        HardSigmoid(HardSigmoid) = "hard_sigmoid" / "", "HardSigmoid";
        Selu(Selu) = "selu" / "", "Selu";
        Gelu(Gelu) = "gelu" / "", "Gelu";
        Softmax(Axis) = "softmax" / "", "Softmax";
        LogSoftmax(Axis) = "log_softmax" / "", "LogSoftmax";
        Hardmax(Axis) = "hardmax" / "", "Hardmax";
        Flatten(Flatten) = "flatten" / "", "Flatten";
        ArgMax(ArgReduce) = "arg_max" / "", "ArgMax";
        ArgMin(ArgReduce) = "arg_min" / "", "ArgMin";
        Cast(Cast) = "cast" / "", "Cast";
        Reshape(Reshape) = "reshape" / "", "Reshape";
        Transpose(Transpose) = "transpose" / "", "Transpose";
        Squeeze(Axes) = "squeeze" / "", "Squeeze";
        Unsqueeze(Axes) = "unsqueeze" / "", "Unsqueeze";
        Concat(Concat) = "concat" / "", "Concat";
        Split(Split) = "split" / "", "Split";
        Gather(Axis0) = "gather" / "", "Gather";
        GatherElements(Axis0) = "gather_elements" / "", "GatherElements";
        GatherNd(GatherNd) = "gather_nd" / "", "GatherND";
        ScatterNd(ScatterNd) = "scatter_nd" / "", "ScatterND";
        ScatterElements(Scatter) = "scatter_elements" / "", "ScatterElements";
        Shape(ShapeOf) = "shape" / "", "Shape";
        ConstantOfShape(ConstantOfShape) = "constant_of_shape" / "", "ConstantOfShape";
        Trilu(Trilu) = "trilu" / "", "Trilu";
        Pad(Pad) = "pad" / "", "Pad";
        Resize(Resize) = "resize" / "", "Resize";
        TopK(TopK) = "top_k" / "", "TopK";
        CumSum(CumSum) = "cum_sum" / "", "CumSum";
        Einsum(Einsum) = "einsum" / "", "Einsum";
        DepthToSpace(DepthToSpace) = "depth_to_space" / "", "DepthToSpace";
        SpaceToDepth(SpaceToDepth) = "space_to_depth" / "", "SpaceToDepth";
        OneHot(OneHot) = "one_hot" / "", "OneHot";
        Dropout(Dropout) = "dropout" / "", "Dropout";
        Mod(Mod) = "mod" / "", "Mod";
        QuantizeLinear(Quantize) = "quantize_linear" / "", "QuantizeLinear";
        DequantizeLinear(Dequantize) = "dequantize_linear" / "", "DequantizeLinear";
        MatMulNBits(MatMulNBits) = "matmul_nbits" / MS_DOMAIN, "MatMulNBits";
        GroupQueryAttention(GroupQueryAttention) = "group_query_attention" / MS_DOMAIN, "GroupQueryAttention";
        Hadamard(Hadamard) = "hadamard" / COMPC_DOMAIN, "Hadamard";
        RouterTopK(RouterTopK) = "router_top_k" / COMPC_DOMAIN, "RouterTopK";
        IsInf(IsInf) = "is_inf" / "", "IsInf";
        Shrink(Shrink) = "shrink" / "", "Shrink";
        BitShift(BitShift) = "bit_shift" / "", "BitShift";
        EyeLike(EyeLike) = "eye_like" / "", "EyeLike";
        MeanVarianceNorm(Mvn) = "mean_variance_normalization" / "", "MeanVarianceNormalization";
        Lrn(Lrn) = "lrn" / "", "LRN";
        Compress(Compress) = "compress" / "", "Compress";
        ReverseSequence(ReverseSequence) = "reverse_sequence" / "", "ReverseSequence";
        Unique(Unique) = "unique" / "", "Unique";
        MaxUnpool(MaxUnpool) = "max_unpool" / "", "MaxUnpool";
        RoiAlign(RoiAlign) = "roi_align" / "", "RoiAlign";
        NonMaxSuppression(Nms) = "non_max_suppression" / "", "NonMaxSuppression";
        GridSample(GridSample) = "grid_sample" / "", "GridSample";
        ConvInteger(Conv) = "conv_integer" / "", "ConvInteger";
        QLinearConv(Conv) = "qlinear_conv" / "", "QLinearConv";
        NllLoss(Loss) = "negative_log_likelihood_loss" / "", "NegativeLogLikelihoodLoss";
        SoftmaxCrossEntropyLoss(Loss) = "softmax_cross_entropy_loss" / "", "SoftmaxCrossEntropyLoss";
        Rnn(Rnn) = "rnn" / "", "RNN";
        Gru(Gru) = "gru" / "", "GRU";
        Lstm(Lstm) = "lstm" / "", "LSTM";
        Dft(Dft) = "dft" / "", "DFT";
        Stft(Stft) = "stft" / "", "STFT";
        HannWindow(Window) = "hann_window" / "", "HannWindow";
        HammingWindow(Window) = "hamming_window" / "", "HammingWindow";
        BlackmanWindow(Window) = "blackman_window" / "", "BlackmanWindow";
        MelWeightMatrix(MelWeightMatrix) = "mel_weight_matrix" / "", "MelWeightMatrix";
        TfIdfVectorizer(TfIdf) = "tf_idf_vectorizer" / "", "TfIdfVectorizer";
        Adagrad(Adagrad) = "adagrad" / TRAINING_DOMAIN, "Adagrad";
        Adam(Adam) = "adam" / TRAINING_DOMAIN, "Adam";
        Momentum(Momentum) = "momentum" / TRAINING_DOMAIN, "Momentum";
        If(IfOp) = "if" / "", "If";
        Loop(LoopOp) = "loop" / "", "Loop";
        Scan(ScanOp) = "scan" / "", "Scan";
        SequenceMap(SequenceMapOp) = "sequence_map" / "", "SequenceMap";
        SequenceEmpty(SequenceEmpty) = "sequence_empty" / "", "SequenceEmpty";
        ConcatFromSequence(ConcatFromSequence) = "concat_from_sequence" / "", "ConcatFromSequence";
        SplitToSequence(SplitToSequence) = "split_to_sequence" / "", "SplitToSequence";
        Optional(OptionalOp) = "optional" / "", "Optional";
        StringNormalizer(StringNormalizer) = "string_normalizer" / "", "StringNormalizer";
    }
}

impl Op {
    /// The name the text format prints: `"custom:<domain>:<op_type>"` for custom ops,
    /// [`Op::name`] otherwise.
    pub fn text_name(&self) -> String {
        match self {
            Op::Custom(c) => format!("custom:{}:{}", c.domain, c.op_type),
            other => other.name().to_string(),
        }
    }

    /// The bodies of a control-flow op (none for other ops).
    pub fn subgraphs(&self) -> Vec<&Subgraph> {
        match self {
            Op::If(i) => vec![&i.then_branch, &i.else_branch],
            Op::Loop(l) => vec![&l.body],
            Op::Scan(s) => vec![&s.body],
            Op::SequenceMap(m) => vec![&m.body],
            _ => vec![],
        }
    }

    pub fn subgraphs_mut(&mut self) -> Vec<&mut Subgraph> {
        match self {
            Op::If(i) => vec![&mut i.then_branch, &mut i.else_branch],
            Op::Loop(l) => vec![&mut l.body],
            Op::Scan(s) => vec![&mut s.body],
            Op::SequenceMap(m) => vec![&mut m.body],
            _ => vec![],
        }
    }

    /// Ops whose values are sequences, optionals or strings, which tensor kernels do not
    /// take.
    pub fn handles_non_tensors(&self) -> bool {
        matches!(
            self,
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
                | Op::StringNormalizer(_)
        )
    }

    /// Ops that compute nothing from inputs: graph inputs and constants.
    pub fn is_source(&self) -> bool {
        matches!(self, Op::Input | Op::Const(_))
    }

    /// A pure op's outputs depend only on its inputs and attributes, so it may be
    /// deduplicated, folded or deleted when unused. Custom ops are assumed impure because
    /// compc cannot know what they do; `Dropout` is pure at inference.
    pub fn is_pure(&self) -> bool {
        !matches!(self, Op::Custom(_) | Op::Input)
    }
}

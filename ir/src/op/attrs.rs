//! Typed attribute structs, one per op that has attributes. Field names are Rust's, the
//! strings are ONNX's attribute names (used verbatim by the text format and the ONNX
//! frontend/backend), the values after `=` are ONNX's defaults.

use crate::attr::Literal;
use crate::attr_struct;
use crate::dtype::DType;

attr_struct!(
    /// `y = alpha * A' * B' + beta * C`.
    Gemm {
        alpha: f32 = 1.0 => "alpha",
        beta: f32 = 1.0 => "beta",
        trans_a: bool = false => "transA",
        trans_b: bool = false => "transB",
    }
);

attr_struct!(
    /// Convolution (and, with `output_padding`/`output_shape`, its transpose).
    Conv {
        auto_pad: String = "NOTSET".into() => "auto_pad",
        dilations: Vec<i64> = vec![] => "dilations",
        group: i64 = 1 => "group",
        kernel_shape: Vec<i64> = vec![] => "kernel_shape",
        pads: Vec<i64> = vec![] => "pads",
        strides: Vec<i64> = vec![] => "strides",
    }
);

attr_struct!(
    ConvTranspose {
        auto_pad: String = "NOTSET".into() => "auto_pad",
        dilations: Vec<i64> = vec![] => "dilations",
        group: i64 = 1 => "group",
        kernel_shape: Vec<i64> = vec![] => "kernel_shape",
        output_padding: Vec<i64> = vec![] => "output_padding",
        output_shape: Vec<i64> = vec![] => "output_shape",
        pads: Vec<i64> = vec![] => "pads",
        strides: Vec<i64> = vec![] => "strides",
    }
);

attr_struct!(
    /// MaxPool and AveragePool (`count_include_pad` only applies to the average,
    /// `storage_order` only to the max).
    Pool {
        auto_pad: String = "NOTSET".into() => "auto_pad",
        ceil_mode: bool = false => "ceil_mode",
        count_include_pad: bool = false => "count_include_pad",
        dilations: Vec<i64> = vec![] => "dilations",
        kernel_shape: Vec<i64> = vec![] => "kernel_shape",
        pads: Vec<i64> = vec![] => "pads",
        storage_order: i64 = 0 => "storage_order",
        strides: Vec<i64> = vec![] => "strides",
    }
);

attr_struct!(
    BatchNorm {
        epsilon: f32 = 1e-5 => "epsilon",
        momentum: f32 = 0.9 => "momentum",
        training_mode: bool = false => "training_mode",
    }
);

attr_struct!(
    /// LayerNormalization and RMS normalization (ONNX `RMSNormalization`, opset 23, or
    /// the older `SimplifiedLayerNormalization` contrib form): normalize over axes
    /// `axis..rank`, then scale (and shift, for LayerNorm).
    Norm {
        axis: i64 = -1 => "axis",
        epsilon: f32 = 1e-5 => "epsilon",
        stash_type: i64 = 1 => "stash_type",
    }
);

attr_struct!(
    InstanceNorm {
        epsilon: f32 = 1e-5 => "epsilon",
    }
);

attr_struct!(
    GroupNorm {
        epsilon: f32 = 1e-5 => "epsilon",
        num_groups: i64 = 0 => "num_groups",
        stash_type: i64 = 1 => "stash_type",
    }
);

attr_struct!(
    /// Activations with one scalar parameter (LeakyRelu, Elu, Celu, ThresholdedRelu).
    Alpha {
        alpha: f32 = 0.01 => "alpha",
    }
);

attr_struct!(
    /// Activations whose `alpha` defaults to 1 (Elu, Celu, ThresholdedRelu).
    AlphaOne {
        alpha: f32 = 1.0 => "alpha",
    }
);

attr_struct!(
    /// Concat: `axis` is required by ONNX, so it is always written.
    Concat {
        axis: i64 = 0 => "axis",
    }
    required ["axis"]
);

attr_struct!(
    ScatterNd {
        reduction: String = "none".into() => "reduction",
    }
);

attr_struct!(
    SpaceToDepth {
        blocksize: i64 = 0 => "blocksize",
    }
    required ["blocksize"]
);

attr_struct!(
    HardSigmoid {
        alpha: f32 = 0.2 => "alpha",
        beta: f32 = 0.5 => "beta",
    }
);

attr_struct!(
    Selu {
        alpha: f32 = 1.673_263_2 => "alpha",
        gamma: f32 = 1.050_701 => "gamma",
    }
);

attr_struct!(
    /// `approximate` is "none" (exact, erf) or "tanh".
    Gelu {
        approximate: String = "none".into() => "approximate",
    }
);

attr_struct!(
    /// One axis, default -1 (Softmax, LogSoftmax, Hardmax, Concat uses its own default).
    Axis {
        axis: i64 = -1 => "axis",
    }
);

attr_struct!(
    /// One axis, default 0 (Gather, GatherElements, Concat, CumSum-free ops).
    Axis0 {
        axis: i64 = 0 => "axis",
    }
);

attr_struct!(
    Flatten {
        axis: i64 = 1 => "axis",
    }
);

attr_struct!(
    /// Reductions. `axes` is set when the axes are constant; otherwise they come from the
    /// second input.
    Reduce {
        axes: Option<Vec<i64>> = None => "axes",
        keepdims: bool = true => "keepdims",
        noop_with_empty_axes: bool = false => "noop_with_empty_axes",
    }
);

attr_struct!(
    ArgReduce {
        axis: i64 = 0 => "axis",
        keepdims: bool = true => "keepdims",
        select_last_index: bool = false => "select_last_index",
    }
);

attr_struct!(
    Cast {
        to: DType = DType::F32 => "to",
        saturate: bool = true => "saturate",
    }
    required ["to"]
);

attr_struct!(
    Reshape {
        allowzero: bool = false => "allowzero",
    }
);

attr_struct!(
    /// `perm` unset means reverse the axes.
    Transpose {
        perm: Option<Vec<i64>> = None => "perm",
    }
);

attr_struct!(
    /// Squeeze and Unsqueeze: `axes` set when constant, else the second input.
    Axes {
        axes: Option<Vec<i64>> = None => "axes",
    }
);

attr_struct!(
    /// Split: `split` (sizes) when constant, else the second input or equal parts
    /// (`num_outputs`, or the number of outputs).
    Split {
        axis: i64 = 0 => "axis",
        num_outputs: Option<i64> = None => "num_outputs",
        split: Option<Vec<i64>> = None => "split",
    }
);

attr_struct!(
    GatherNd {
        batch_dims: i64 = 0 => "batch_dims",
    }
);

attr_struct!(
    Scatter {
        axis: i64 = 0 => "axis",
        reduction: String = "none".into() => "reduction",
    }
);

attr_struct!(
    ShapeOf {
        end: Option<i64> = None => "end",
        start: i64 = 0 => "start",
    }
);

attr_struct!(
    /// `value` unset means a scalar float 0.
    ConstantOfShape {
        value: Option<Literal> = None => "value",
    }
);

attr_struct!(
    Trilu {
        upper: bool = true => "upper",
    }
);

attr_struct!(
    Pad {
        mode: String = "constant".into() => "mode",
    }
);

attr_struct!(
    Resize {
        antialias: bool = false => "antialias",
        axes: Option<Vec<i64>> = None => "axes",
        coordinate_transformation_mode: String = "half_pixel".into() => "coordinate_transformation_mode",
        cubic_coeff_a: f32 = -0.75 => "cubic_coeff_a",
        exclude_outside: bool = false => "exclude_outside",
        extrapolation_value: f32 = 0.0 => "extrapolation_value",
        keep_aspect_ratio_policy: String = "stretch".into() => "keep_aspect_ratio_policy",
        mode: String = "nearest".into() => "mode",
        nearest_mode: String = "round_prefer_floor".into() => "nearest_mode",
    }
);

attr_struct!(
    TopK {
        axis: i64 = -1 => "axis",
        largest: bool = true => "largest",
        sorted: bool = true => "sorted",
    }
);

attr_struct!(
    CumSum {
        exclusive: bool = false => "exclusive",
        reverse: bool = false => "reverse",
    }
);

attr_struct!(
    Einsum {
        equation: String = String::new() => "equation",
    }
    required ["equation"]
);

attr_struct!(
    DepthToSpace {
        blocksize: i64 = 0 => "blocksize",
        mode: String = "DCR".into() => "mode",
    }
    required ["blocksize"]
);

attr_struct!(
    OneHot {
        axis: i64 = -1 => "axis",
    }
);

attr_struct!(
    Dropout {
        seed: Option<i64> = None => "seed",
    }
);

attr_struct!(
    Mod {
        fmod: bool = false => "fmod",
    }
);

attr_struct!(
    /// QuantizeLinear: `block_size` > 0 means blocked scales along `axis` (opset 21).
    Quantize {
        axis: i64 = 1 => "axis",
        block_size: i64 = 0 => "block_size",
        output_dtype: Option<DType> = None => "output_dtype",
        saturate: bool = true => "saturate",
    }
);

attr_struct!(
    Dequantize {
        axis: i64 = 1 => "axis",
        block_size: i64 = 0 => "block_size",
    }
);

attr_struct!(
    /// `com.microsoft.MatMulNBits`: `Y = A · dequant(B)ᵀ + bias`, B quantized block-wise
    /// along K and packed N-major (see techniques.md §1.6 for the layout).
    MatMulNBits {
        k: i64 = 0 => "K",
        n: i64 = 0 => "N",
        bits: i64 = 4 => "bits",
        block_size: i64 = 0 => "block_size",
        accuracy_level: i64 = 0 => "accuracy_level",
    }
    required ["K", "N", "bits", "block_size"]
);

attr_struct!(
    /// `com.microsoft.GroupQueryAttention`: causal self-attention with `num_heads` query
    /// heads reading `kv_num_heads` KV heads (query head `h` reads KV head
    /// `h / (num_heads / kv_num_heads)`), query `[B, S, H·d]`, key/value `[B, S, G·d]`,
    /// optional rotary embedding from `cos_cache`/`sin_cache` `[max_seq, rotary_dim / 2]`.
    /// `scale` = 0 means `1/√d`. Inputs: query, key, value, past_key, past_value, seqlens_k,
    /// total_sequence_length, cos_cache, sin_cache, then optional extras; outputs: output,
    /// present_key, present_value.
    GroupQueryAttention {
        num_heads: i64 = 0 => "num_heads",
        kv_num_heads: i64 = 0 => "kv_num_heads",
        scale: f32 = 0.0 => "scale",
        softcap: f32 = 0.0 => "softcap",
        do_rotary: bool = false => "do_rotary",
        rotary_interleaved: bool = false => "rotary_interleaved",
        local_window_size: i64 = -1 => "local_window_size",
        smooth_softmax: i64 = 0 => "smooth_softmax",
    }
    required ["num_heads", "kv_num_heads"]
);

attr_struct!(
    /// Normalized Walsh–Hadamard transform of the last axis, applied independently to
    /// consecutive blocks of `size` elements (`size` = 0: the whole axis). Orthogonal, so
    /// `hadamard ∘ hadamard = identity`. Used by the rotation pass for online rotations.
    ///
    /// An optional second input, a constant orthonormal `F` of shape `[K, K]`, makes the
    /// transform of each block of `K·size` elements `x ↦ x·(F ⊗ H_size)` (row-major view
    /// `[K, size]`: `Fᵀ X H`): the Kronecker form of Hadamard sizes that are not powers of
    /// two (688 = 344·2, 11008 = 344·32). With `F` the op is no longer its own inverse.
    Hadamard {
        size: i64 = 0 => "size",
    }
);

attr_struct!(
    /// Mixture-of-Depths routing: from router scores `[batch, seq]`, the indices of the
    /// top `ceil(capacity * seq)` tokens per sequence in their original order.
    RouterTopK {
        capacity: f32 = 0.5 => "capacity",
    }
);

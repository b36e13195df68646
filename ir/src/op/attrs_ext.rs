//! Attribute structs of the ops beyond the core inference set: recurrent layers, losses,
//! integer and quantized linear algebra, detection and sampling, signal processing, text
//! features and the training-domain optimizers. Same conventions as `attrs.rs`: ONNX's
//! attribute names and defaults.

use crate::attr_struct;
use crate::dtype::DType;

attr_struct!(
    IsInf {
        detect_negative: bool = true => "detect_negative",
        detect_positive: bool = true => "detect_positive",
    }
);

attr_struct!(
    /// `x - bias` above `lambd`, `x + bias` below `-lambd`, 0 between.
    Shrink {
        bias: f32 = 0.0 => "bias",
        lambd: f32 = 0.5 => "lambd",
    }
);

attr_struct!(
    /// `direction` is "LEFT" or "RIGHT".
    BitShift {
        direction: String = String::new() => "direction",
    }
    required ["direction"]
);

attr_struct!(
    /// Ones on the `k`-th diagonal of a 2-D tensor shaped like the input; the element type
    /// is `dtype`, else the input's.
    EyeLike {
        dtype: Option<DType> = None => "dtype",
        k: i64 = 0 => "k",
    }
);

attr_struct!(
    /// `(x - mean) / sqrt(var)` over `axes`.
    Mvn {
        axes: Vec<i64> = vec![0, 2, 3] => "axes",
    }
);

attr_struct!(
    /// Local response normalization across `size` neighbouring channels.
    Lrn {
        alpha: f32 = 1e-4 => "alpha",
        beta: f32 = 0.75 => "beta",
        bias: f32 = 1.0 => "bias",
        size: i64 = 0 => "size",
    }
    required ["size"]
);

attr_struct!(
    /// Selects slices along `axis` (unset: of the flattened input) where the condition holds.
    Compress {
        axis: Option<i64> = None => "axis",
    }
);

attr_struct!(
    ReverseSequence {
        batch_axis: i64 = 1 => "batch_axis",
        time_axis: i64 = 0 => "time_axis",
    }
);

attr_struct!(
    /// Unique elements (or slices along `axis`), sorted or in order of first occurrence,
    /// with their first indices, inverse indices and counts.
    Unique {
        axis: Option<i64> = None => "axis",
        sorted: bool = true => "sorted",
    }
);

attr_struct!(
    MaxUnpool {
        kernel_shape: Vec<i64> = vec![] => "kernel_shape",
        pads: Vec<i64> = vec![] => "pads",
        strides: Vec<i64> = vec![] => "strides",
    }
    required ["kernel_shape"]
);

attr_struct!(
    RoiAlign {
        coordinate_transformation_mode: String = "half_pixel".into() => "coordinate_transformation_mode",
        mode: String = "avg".into() => "mode",
        output_height: i64 = 1 => "output_height",
        output_width: i64 = 1 => "output_width",
        sampling_ratio: i64 = 0 => "sampling_ratio",
        spatial_scale: f32 = 1.0 => "spatial_scale",
    }
);

attr_struct!(
    /// Boxes are `[y1, x1, y2, x2]` (0) or `[x_center, y_center, width, height]` (1).
    Nms {
        center_point_box: i64 = 0 => "center_point_box",
    }
);

attr_struct!(
    GridSample {
        align_corners: bool = false => "align_corners",
        mode: String = "bilinear".into() => "mode",
        padding_mode: String = "zeros".into() => "padding_mode",
    }
);

attr_struct!(
    /// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss. `reduction` is "none", "sum"
    /// or "mean" (weighted by the targets' weights).
    Loss {
        ignore_index: Option<i64> = None => "ignore_index",
        reduction: String = "mean".into() => "reduction",
    }
);

attr_struct!(
    /// The simple recurrent layer (`Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)`). `layout` 0 is
    /// `[seq, batch, ...]`, 1 is `[batch, seq, ...]`.
    Rnn {
        activation_alpha: Option<Vec<f32>> = None => "activation_alpha",
        activation_beta: Option<Vec<f32>> = None => "activation_beta",
        activations: Option<Vec<String>> = None => "activations",
        clip: Option<f32> = None => "clip",
        direction: String = "forward".into() => "direction",
        hidden_size: Option<i64> = None => "hidden_size",
        layout: i64 = 0 => "layout",
    }
);

attr_struct!(
    Gru {
        activation_alpha: Option<Vec<f32>> = None => "activation_alpha",
        activation_beta: Option<Vec<f32>> = None => "activation_beta",
        activations: Option<Vec<String>> = None => "activations",
        clip: Option<f32> = None => "clip",
        direction: String = "forward".into() => "direction",
        hidden_size: Option<i64> = None => "hidden_size",
        layout: i64 = 0 => "layout",
        linear_before_reset: bool = false => "linear_before_reset",
    }
);

attr_struct!(
    Lstm {
        activation_alpha: Option<Vec<f32>> = None => "activation_alpha",
        activation_beta: Option<Vec<f32>> = None => "activation_beta",
        activations: Option<Vec<String>> = None => "activations",
        clip: Option<f32> = None => "clip",
        direction: String = "forward".into() => "direction",
        hidden_size: Option<i64> = None => "hidden_size",
        input_forget: bool = false => "input_forget",
        layout: i64 = 0 => "layout",
    }
);

attr_struct!(
    /// Discrete Fourier transform along `axis` of a real (`[..., 1]`) or complex
    /// (`[..., 2]`) signal.
    Dft {
        axis: i64 = 1 => "axis",
        inverse: bool = false => "inverse",
        onesided: bool = false => "onesided",
    }
);

attr_struct!(
    Stft {
        onesided: bool = true => "onesided",
    }
);

attr_struct!(
    /// Hann, Hamming and Blackman windows of the length given as input.
    Window {
        output_datatype: DType = DType::F32 => "output_datatype",
        periodic: bool = true => "periodic",
    }
);

attr_struct!(
    MelWeightMatrix {
        output_datatype: DType = DType::F32 => "output_datatype",
    }
);

attr_struct!(
    /// n-gram counts (TF, IDF or TFIDF) of an integer or string pool.
    TfIdf {
        max_gram_length: i64 = 0 => "max_gram_length",
        max_skip_count: i64 = 0 => "max_skip_count",
        min_gram_length: i64 = 0 => "min_gram_length",
        mode: String = String::new() => "mode",
        ngram_counts: Vec<i64> = vec![] => "ngram_counts",
        ngram_indexes: Vec<i64> = vec![] => "ngram_indexes",
        pool_int64s: Option<Vec<i64>> = None => "pool_int64s",
        pool_strings: Option<Vec<String>> = None => "pool_strings",
        weights: Option<Vec<f32>> = None => "weights",
    }
    required ["max_gram_length", "max_skip_count", "min_gram_length", "mode", "ngram_counts", "ngram_indexes"]
);

attr_struct!(
    /// `ai.onnx.preview.training` Adagrad.
    Adagrad {
        decay_factor: f32 = 0.0 => "decay_factor",
        epsilon: f32 = 0.0 => "epsilon",
        norm_coefficient: f32 = 0.0 => "norm_coefficient",
    }
);

attr_struct!(
    /// `ai.onnx.preview.training` Adam.
    Adam {
        alpha: f32 = 0.9 => "alpha",
        beta: f32 = 0.999 => "beta",
        epsilon: f32 = 0.0 => "epsilon",
        norm_coefficient: f32 = 0.0 => "norm_coefficient",
        norm_coefficient_post: f32 = 0.0 => "norm_coefficient_post",
    }
);

attr_struct!(
    /// `ai.onnx.preview.training` Momentum; `mode` is "standard" or "nesterov".
    Momentum {
        alpha: f32 = 0.0 => "alpha",
        beta: f32 = 0.0 => "beta",
        mode: String = String::new() => "mode",
        norm_coefficient: f32 = 0.0 => "norm_coefficient",
    }
    required ["alpha", "beta", "mode", "norm_coefficient"]
);

attr_struct!(
    /// Removes `stopwords` from a 1-D or `[1, C]` string tensor, then changes case
    /// (`case_change_action` "NONE", "LOWER" or "UPPER").
    StringNormalizer {
        case_change_action: String = "NONE".into() => "case_change_action",
        is_case_sensitive: bool = false => "is_case_sensitive",
        locale: String = String::new() => "locale",
        stopwords: Option<Vec<String>> = None => "stopwords",
    }
);

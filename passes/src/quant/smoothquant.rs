//! SmoothQuant (Xiao et al., ICML 2023; `mit-han-lab/smoothquant:smoothquant/smooth.py`),
//! techniques.md §1.4: for W8A8, move part of the activation outliers' range into the
//! weights. Per group of layers behind one norm: `amax_j` = max |x_j| over calibration
//! tokens, `wmax_j` = max over every row of every layer in the group of |W[:, j]|
//! (≥ 1e−5), `s_j = amax_j^α / wmax_j^(1−α)` (≥ 1e−5); the norm takes `γ/s` (and `β/s`),
//! the layers `W·diag(s)`. Like the reference, only groups whose `1/s` folds exactly
//! into a norm are smoothed; weights are then quantized per channel and activations
//! statically (see `act_calib`).

/// Per-channel max |w| over several W-form matrices of `cols` columns.
pub fn weight_col_max(ws: &[(&[f32], usize)], cols: usize) -> Vec<f32> {
    let mut m = vec![0f32; cols];
    for (w, c) in ws {
        if *c != cols {
            continue;
        }
        for row in w.chunks(cols.max(1)) {
            for (a, &v) in m.iter_mut().zip(row) {
                *a = a.max(v.abs());
            }
        }
    }
    m
}

/// SmoothQuant's scales.
pub fn smooth_scales(act_max: &[f32], w_max: &[f32], alpha: f32) -> Vec<f32> {
    act_max
        .iter()
        .zip(w_max)
        .map(|(&a, &w)| {
            let s = a.max(1e-5).powf(alpha) / w.max(1e-5).powf(1.0 - alpha);
            if s.is_finite() {
                s.max(1e-5)
            } else {
                1.0
            }
        })
        .collect()
}

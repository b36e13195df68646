//! Signal processing: DFT, STFT, the Hann/Hamming/Blackman windows and
//! MelWeightMatrix. Transforms are direct sums in f64 (the sizes ONNX models use them at
//! are small); complex values are the last axis of size 2.

use crate::error::{bail, Result};
use crate::tensor::{checked_numel, Tensor};
use compc_ir::op::Dft;
use compc_ir::DType;
use std::f64::consts::PI;

fn scalar_i64(t: &Tensor, what: &str) -> Result<i64> {
    match t.to_i64_vec().as_slice() {
        [v] if t.dtype().is_int() => Ok(*v),
        _ => bail!(
            "{what} must be an integer scalar, got {} {:?}",
            t.dtype(),
            t.shape()
        ),
    }
}

/// The DFT of `n_in` complex samples (`re`, `im`), zero-padded or cut to `n`, keeping the
/// first `bins` outputs.
fn dft_1d(re: &[f64], im: &[f64], n: usize, bins: usize, inverse: bool) -> (Vec<f64>, Vec<f64>) {
    let sign = if inverse { 1.0 } else { -1.0 };
    let m = re.len().min(n);
    let mut or = vec![0f64; bins];
    let mut oi = vec![0f64; bins];
    for k in 0..bins {
        let (mut sr, mut si) = (0.0, 0.0);
        for j in 0..m {
            let ang = sign * 2.0 * PI * ((j * k) % n.max(1)) as f64 / n as f64;
            let (s, c) = ang.sin_cos();
            sr += re[j] * c - im[j] * s;
            si += re[j] * s + im[j] * c;
        }
        if inverse {
            sr /= n as f64;
            si /= n as f64;
        }
        or[k] = sr;
        oi[k] = si;
    }
    (or, oi)
}

pub fn dft(x: &Tensor, length: Option<&Tensor>, d: &Dft) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() < 2 {
        bail!(
            "dft needs a float input [batch, ..., 1 or 2], got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let r = x.rank();
    let comp = x.shape()[r - 1];
    if comp != 1 && comp != 2 {
        bail!("dft input's last axis must be 1 (real) or 2 (complex), got {comp}");
    }
    let axis = crate::broadcast::norm_axis(d.axis, r - 1)?;
    let n_in = x.shape()[axis];
    let n = match length {
        Some(t) => {
            let v = scalar_i64(t, "dft_length")?;
            if v <= 0 {
                bail!("dft_length {v} must be positive");
            }
            v as usize
        }
        None => n_in,
    };
    let bins = if d.onesided { n / 2 + 1 } else { n };
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..r - 1].iter().product();
    let mut shape = x.shape().to_vec();
    shape[axis] = bins;
    shape[r - 1] = 2;
    checked_numel(&shape, "dft")?;
    let v = x.to_f64_vec();
    let mut out = vec![0f64; outer * bins * inner * 2];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| ((o * n_in + j) * inner + i) * comp;
            let re: Vec<f64> = (0..n_in).map(|j| v[at(j)]).collect();
            let im: Vec<f64> = (0..n_in)
                .map(|j| if comp == 2 { v[at(j) + 1] } else { 0.0 })
                .collect();
            let (fr, fi) = dft_1d(&re, &im, n, bins, d.inverse);
            for k in 0..bins {
                let p = ((o * bins + k) * inner + i) * 2;
                out[p] = fr[k];
                out[p + 1] = fi[k];
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), shape, out)
}

pub fn stft(
    x: &Tensor,
    step: &Tensor,
    window: Option<&Tensor>,
    frame_length: Option<&Tensor>,
    onesided: bool,
) -> Result<Tensor> {
    let (batch, len, comp) = match x.shape() {
        [b, l, c] if (*c == 1 || *c == 2) && x.dtype().is_float() => (*b, *l, *c),
        s => bail!(
            "stft needs a float signal [batch, length, 1 or 2], got {} {s:?}",
            x.dtype()
        ),
    };
    let step = scalar_i64(step, "frame_step")?;
    if step <= 0 {
        bail!("stft frame_step {step} must be positive");
    }
    let win: Option<Vec<f64>> = match window {
        Some(w) if w.rank() != 1 => bail!("stft window must be 1-D, got {:?}", w.shape()),
        Some(w) => Some(w.to_f64_vec()),
        None => None,
    };
    let fl = match (frame_length, &win) {
        (Some(t), _) => scalar_i64(t, "frame_length")?,
        (None, Some(w)) => w.len() as i64,
        (None, None) => bail!("stft needs a window or a frame_length"),
    };
    if fl <= 0 || fl as usize > len {
        bail!("stft frame length {fl} does not fit a signal of {len}");
    }
    let fl = fl as usize;
    if win.as_ref().is_some_and(|w| w.len() != fl) {
        bail!("stft window length differs from frame_length {fl}");
    }
    let frames = (len - fl) / step as usize + 1;
    let bins = if onesided { fl / 2 + 1 } else { fl };
    let shape = vec![batch, frames, bins, 2];
    checked_numel(&shape, "stft")?;
    let v = x.to_f64_vec();
    let mut out = Vec::with_capacity(batch * frames * bins * 2);
    for b in 0..batch {
        for f in 0..frames {
            let start = f * step as usize;
            let wv = |j: usize| win.as_ref().map_or(1.0, |w| w[j]);
            let at = |j: usize| (b * len + start + j) * comp;
            let re: Vec<f64> = (0..fl).map(|j| v[at(j)] * wv(j)).collect();
            let im: Vec<f64> = (0..fl)
                .map(|j| if comp == 2 { v[at(j) + 1] * wv(j) } else { 0.0 })
                .collect();
            let (fr, fi) = dft_1d(&re, &im, fl, bins, false);
            for k in 0..bins {
                out.push(fr[k]);
                out.push(fi[k]);
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), shape, out)
}

/// Hann (`[0.5, 0.5]`), Hamming (`[25/46, 21/46]`) and Blackman windows:
/// `a0 - a1 cos(2πn/N) + a2 cos(4πn/N)` with N the size (periodic) or size - 1.
pub fn window(size: &Tensor, coeffs: [f64; 3], periodic: bool, dtype: DType) -> Result<Tensor> {
    let n = scalar_i64(size, "window size")?;
    if n < 0 {
        bail!("window size {n} is negative");
    }
    let n = n as usize;
    checked_numel(&[n], "window")?;
    let denom = if periodic { n } else { n.saturating_sub(1) } as f64;
    let v = (0..n)
        .map(|i| {
            let t = 2.0 * PI * i as f64 / denom;
            coeffs[0] - coeffs[1] * t.cos() + coeffs[2] * (2.0 * t).cos()
        })
        .collect();
    Tensor::from_f64_as(dtype, vec![n], v)
}

/// Triangular mel filters as ONNX's reference builds them.
pub fn mel_weight_matrix(ins: [&Tensor; 5], dtype: DType) -> Result<Tensor> {
    let bins = scalar_i64(ins[0], "num_mel_bins")?;
    let dft_len = scalar_i64(ins[1], "dft_length")?;
    let rate = scalar_i64(ins[2], "sample_rate")?;
    let f = |t: &Tensor, what: &str| match t.to_f64_vec().as_slice() {
        [v] => Ok(*v),
        _ => bail!("{what} must be a scalar"),
    };
    let (lo, hi) = (
        f(ins[3], "lower_edge_hertz")?,
        f(ins[4], "upper_edge_hertz")?,
    );
    if bins <= 0 || dft_len <= 0 || rate <= 0 {
        bail!("mel_weight_matrix sizes must be positive: {bins}, {dft_len}, {rate}");
    }
    let (bins, spec) = (bins as usize, dft_len as usize / 2 + 1);
    checked_numel(&[spec, bins], "mel_weight_matrix")?;
    let mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
    let (ml, mh) = (mel(lo), mel(hi));
    let step = (mh - ml) / (bins + 2) as f64;
    let points: Vec<i64> = (0..bins + 2)
        .map(|i| {
            let m = i as f64 * step + ml;
            let hz = 700.0 * (10f64.powf(m / 2595.0) - 1.0);
            (((dft_len + 1) as f64 * hz) / rate as f64).floor() as i64
        })
        .collect();
    let mut out = vec![0f64; spec * bins];
    let mut set = |j: i64, i: usize, v: f64| -> Result<()> {
        match usize::try_from(j).ok().filter(|&j| j < spec) {
            Some(j) => {
                out[j * bins + i] = v;
                Ok(())
            }
            None => bail!("mel_weight_matrix: frequency bin {j} is outside 0..{spec}"),
        }
    };
    for i in 0..bins {
        let (l, c, h) = (points[i], points[i + 1], points[i + 2]);
        let up = c - l;
        if up == 0 {
            set(c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(j, i, (j - l) as f64 / up as f64)?;
            }
        }
        let down = h - c;
        if down > 0 {
            for j in c..h {
                set(j, i, (h - j) as f64 / down as f64)?;
            }
        }
    }
    Tensor::from_f64_as(dtype, vec![spec, bins], out)
}

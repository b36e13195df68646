//! The uniform affine quantizer every method shares (techniques.md §1.1).
//!
//! Codes are always kept unsigned, `0..=2^b − 1`, with a zero point `z`: asymmetric grids
//! take `z` from the range, symmetric grids use `z = 2^(b−1)` (so a signed code is
//! `q − 2^(b−1)`). Symmetric scales follow two conventions, recorded in the report:
//! 8-bit uses ONNX/TensorRT's restricted range (`s = max|x| / 127`, what ORT's QDQ
//! quantizer writes), fewer bits use GPTQ's full range (`s = 2·max|x| / (2^b − 1)`),
//! which is also what MatMulNBits' default zero point 2^(b−1) means.
//!
//! Rounding is half to even, as ONNX QuantizeLinear does. It is done with the
//! `(t + 1.5·2^23) − 1.5·2^23` trick rather than `round_ties_even`, which the default
//! x86-64 target (SSE2) lowers to a libm call per element; the argument is clamped to a
//! few steps outside the code range first, where the trick is exact.

/// Smallest scale used: a scale of 0 (an all-zero group) or a subnormal one would make
/// `x / s` infinite or NaN.
pub const MIN_SCALE: f32 = 1e-12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub bits: u32,
    pub sym: bool,
}

impl Grid {
    pub fn new(bits: u32, sym: bool) -> Grid {
        Grid { bits, sym }
    }

    /// Largest code.
    pub fn qmax(self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// The zero point of symmetric grids (and MatMulNBits' default): 2^(b−1).
    pub fn mid(self) -> f32 {
        (1u32 << (self.bits - 1)) as f32
    }

    /// "restricted (±127)" or "full range", for the report.
    pub fn sym_convention(self) -> &'static str {
        if !self.sym {
            "asymmetric"
        } else if self.bits == 8 {
            "symmetric restricted (s = max|x|/127, zero point 128)"
        } else {
            "symmetric full range (s = 2·max|x|/(2^b−1), zero point 2^(b−1))"
        }
    }

    /// Scale and zero point for values in `[lo, hi]`. The range is widened to contain 0
    /// (so 0 is exact); an empty range (all zeros) uses `[−1, 1]`.
    pub fn params(self, lo: f32, hi: f32) -> (f32, f32) {
        let (mut lo, mut hi) = (lo.min(0.0), hi.max(0.0));
        if hi - lo <= 0.0 || (hi - lo).is_nan() {
            lo = -1.0;
            hi = 1.0;
        }
        let qmax = self.qmax();
        if self.sym {
            let m = (-lo).max(hi);
            let s = if self.bits == 8 {
                m / 127.0
            } else {
                2.0 * m / qmax
            };
            (clamp_scale(s), self.mid())
        } else {
            let s = clamp_scale((hi - lo) / qmax);
            let z = round_even((-lo / s).clamp(-1.0, qmax + 1.0)).clamp(0.0, qmax);
            (s, z)
        }
    }

    /// Parameters from the values themselves (min/max of the slice).
    pub fn params_of(self, x: &[f32]) -> (f32, f32) {
        let (lo, hi) = min_max(x);
        self.params(lo, hi)
    }
}

fn clamp_scale(s: f32) -> f32 {
    if s.is_finite() {
        s.max(MIN_SCALE)
    } else {
        f32::MAX
    }
}

/// Round half to even, exact for |x| ≤ 2^22.
#[inline(always)]
pub fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (x + MAGIC) - MAGIC
}

/// The code of `x`: `clamp(round(x / s) + z, 0, qmax)`.
#[inline(always)]
pub fn code(x: f32, s: f32, z: f32, qmax: f32) -> f32 {
    let t = (x / s).clamp(-z - 1.0, qmax - z + 1.0);
    (round_even(t) + z).clamp(0.0, qmax)
}

/// The value a code stands for: `(q − z)·s`, computed as DequantizeLinear does.
#[inline(always)]
pub fn dequant(q: f32, s: f32, z: f32) -> f32 {
    (q - z) * s
}

/// Quantize-dequantize of one value.
#[inline(always)]
pub fn fake(x: f32, s: f32, z: f32, qmax: f32) -> f32 {
    dequant(code(x, s, z, qmax), s, z)
}

/// Minimum and maximum of a slice (NaNs ignored; `(0, 0)` when empty). Eight
/// independent lanes let the compiler vectorize the reduction.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; 8];
    let mut hi = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            lo[j] = lo[j].min(c[j]);
            hi[j] = hi[j].max(c[j]);
        }
    }
    let (mut l, mut h) = (f32::INFINITY, f32::NEG_INFINITY);
    for j in 0..8 {
        l = l.min(lo[j]);
        h = h.max(hi[j]);
    }
    for &v in rest {
        l = l.min(v);
        h = h.max(v);
    }
    if l > h {
        (0.0, 0.0)
    } else {
        (l, h)
    }
}

/// Writes the codes of `x` (one group sharing `s`, `z`) into `out`.
#[inline]
pub fn quantize_into(x: &[f32], s: f32, z: f32, qmax: f32, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = code(v, s, z, qmax) as u8;
    }
}

/// GPTQ's MSE clipping search (`quant.py`, `mse=True`): shrink the range by
/// `p = 1 − i/grid` for `i < maxshrink·grid` and keep the range whose quantization
/// error `Σ|x̂ − x|^norm` is least. Returns the chosen `(lo, hi)`.
pub fn mse_clip_range(
    x: &[f32],
    grid: Grid,
    steps: usize,
    maxshrink: f32,
    norm: f32,
) -> (f32, f32) {
    let (lo, hi) = min_max(x);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let qmax = grid.qmax();
    let mut best = (f32::INFINITY, lo, hi);
    let n = (maxshrink * steps as f32) as usize;
    for i in 0..n.max(1) {
        let p = 1.0 - i as f32 / steps as f32;
        let (l, h) = if grid.sym {
            let m = (-lo).max(hi) * p;
            (-m, m)
        } else {
            (lo * p, hi * p)
        };
        let (s, z) = grid.params(l, h);
        let err: f32 = x
            .iter()
            .map(|&v| (fake(v, s, z, qmax) - v).abs().powf(norm))
            .sum();
        if err < best.0 {
            best = (err, l, h);
        }
    }
    (best.1, best.2)
}

//! Quantization ops: QuantizeLinear / DequantizeLinear (per-tensor, per-axis, blocked),
//! DynamicQuantizeLinear, `com.microsoft.MatMulNBits` (layout of techniques.md §1.6) and
//! compc's Hadamard. Arithmetic follows ORT's CPU kernels: `x / scale` in f32, rounded
//! half to even, plus the zero point, saturated to the type's range.

use crate::broadcast::{cartesian_index, norm_axis};
use crate::error::{bail, Result};
use crate::ops::matmul::{gemm_into, Mat};
use crate::tensor::Tensor;
use compc_ir::op::{Dequantize, MatMulNBits, Quantize};
use compc_ir::DType;
use rayon::prelude::*;

/// For every element of `x`, the index of its scale: per-tensor (one scale), per-axis
/// (1-D scale along `axis`) or blocked (`block > 0`: scale has x's rank and
/// `ceil(D_axis / block)` entries along `axis`).
fn scale_index(
    xs: &[usize],
    ss: &[usize],
    axis: i64,
    block: i64,
    what: &str,
) -> Result<Vec<usize>> {
    let n: usize = xs.iter().product();
    let sn: usize = ss.iter().product();
    if block <= 0 && sn == 1 {
        return Ok(vec![0; n]);
    }
    let ax = norm_axis(axis, xs.len())?;
    if block <= 0 {
        if ss.len() != 1 || ss[0] != xs[ax] {
            bail!("{what}: per-axis scale of shape {ss:?} does not match axis {ax} of {xs:?}");
        }
        let mut pseudo = vec![1; xs.len()];
        pseudo[ax] = xs[ax];
        let per_axis: Vec<Vec<usize>> = xs
            .iter()
            .enumerate()
            .map(|(d, &m)| {
                if d == ax {
                    (0..m).collect()
                } else {
                    vec![0; m]
                }
            })
            .collect();
        return Ok(cartesian_index(&pseudo, &per_axis));
    }
    let b = block as usize;
    let ok = ss.len() == xs.len()
        && (0..xs.len()).all(|d| {
            if d == ax {
                ss[d] == xs[d].div_ceil(b)
            } else {
                ss[d] == xs[d]
            }
        });
    if !ok {
        bail!("{what}: blocked scale of shape {ss:?} does not match {xs:?} with block_size {b} on axis {ax}");
    }
    let per_axis: Vec<Vec<usize>> = xs
        .iter()
        .enumerate()
        .map(|(d, &m)| {
            if d == ax {
                (0..m).map(|i| i / b).collect()
            } else {
                (0..m).collect()
            }
        })
        .collect();
    Ok(cartesian_index(ss, &per_axis))
}

/// Value range of a quantized type, as floats (the native backends clamp with the same
/// bounds).
pub fn qrange(d: DType) -> Result<(f32, f32)> {
    Ok(match d {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        other => bail!("quantize_linear cannot produce {other}"),
    })
}

fn zero_points(zp: Option<&Tensor>, scale: &Tensor, what: &str) -> Result<Option<Vec<f32>>> {
    let Some(z) = zp else { return Ok(None) };
    if z.shape() != scale.shape() && !(z.numel() == 1 && scale.numel() == 1) {
        bail!(
            "{what}: zero point shape {:?} differs from scale shape {:?}",
            z.shape(),
            scale.shape()
        );
    }
    Ok(Some(z.to_f32_vec()))
}

pub fn quantize_linear(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    a: &Quantize,
) -> Result<Tensor> {
    if !x.dtype().is_float() || !scale.dtype().is_float() {
        bail!(
            "quantize_linear needs float x and scale, got {} and {}",
            x.dtype(),
            scale.dtype()
        );
    }
    let out = match (zp, a.output_dtype) {
        (Some(z), Some(o)) if z.dtype() != o => bail!(
            "quantize_linear zero point is {} but output_dtype is {o}",
            z.dtype()
        ),
        (Some(z), _) => z.dtype(),
        (None, Some(o)) => o,
        (None, None) => DType::U8,
    };
    let (lo, hi) = qrange(out)?;
    let si = scale_index(
        x.shape(),
        scale.shape(),
        a.axis,
        a.block_size,
        "quantize_linear",
    )?;
    let (xv, sv) = (x.f32_cow(), scale.to_f32_vec());
    let zv = zero_points(zp, scale, "quantize_linear")?;
    let q: Vec<f64> = xv
        .par_iter()
        .zip(si.par_iter())
        .map(|(&v, &s)| {
            let z = zv.as_ref().map_or(0.0, |z| z[s]);
            ((v / sv[s]).round_ties_even() + z).clamp(lo, hi) as f64
        })
        .collect();
    Tensor::from_f64_as(out, x.shape().to_vec(), q)
}

pub fn dequantize_linear(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    a: &Dequantize,
) -> Result<Tensor> {
    if !x.dtype().is_int() || !scale.dtype().is_float() {
        bail!(
            "dequantize_linear needs integer x and float scale, got {} and {}",
            x.dtype(),
            scale.dtype()
        );
    }
    if let Some(z) = zp {
        if z.dtype() != x.dtype() {
            bail!(
                "dequantize_linear zero point is {}, x is {}",
                z.dtype(),
                x.dtype()
            );
        }
    }
    let si = scale_index(
        x.shape(),
        scale.shape(),
        a.axis,
        a.block_size,
        "dequantize_linear",
    )?;
    let (xv, sv) = (x.to_i64_vec(), scale.to_f32_vec());
    let zv = zp.map(|z| z.to_i64_vec());
    let y: Vec<f32> = xv
        .par_iter()
        .zip(si.par_iter())
        .map(|(&q, &s)| (q - zv.as_ref().map_or(0, |z| z[s])) as f32 * sv[s])
        .collect();
    Tensor::from_f32_as(scale.dtype(), x.shape().to_vec(), y)
}

/// DynamicQuantizeLinear: uint8 asymmetric with the range extended to include 0.
pub fn dynamic_quantize_linear(x: &Tensor) -> Result<Vec<Tensor>> {
    if !x.dtype().is_float() {
        bail!(
            "dynamic_quantize_linear needs a float input, got {}",
            x.dtype()
        );
    }
    let xv = x.f32_cow();
    let lo = xv.iter().copied().fold(0f32, f32::min);
    let hi = xv.iter().copied().fold(0f32, f32::max);
    let scale = (hi - lo) / 255.0;
    let (zp, q): (f32, Vec<u8>) = if scale == 0.0 || !scale.is_finite() {
        (0.0, vec![0; xv.len()])
    } else {
        let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
        (
            zp,
            xv.iter()
                .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
                .collect(),
        )
    };
    let y = Tensor::new(
        DType::U8,
        x.shape().to_vec(),
        crate::tensor::TensorData::U8(q),
    )?;
    let zp = Tensor::new(
        DType::U8,
        vec![],
        crate::tensor::TensorData::U8(vec![zp as u8]),
    )?;
    Ok(vec![
        y,
        Tensor::scalar_f32(if scale.is_finite() { scale } else { 0.0 }),
        zp,
    ])
}

/// Code `t` of a little-endian bit-packed byte row (`bits` per code, lowest bits first).
fn code(bytes: &[u8], t: usize, bits: usize) -> u8 {
    let per = 8 / bits;
    (bytes[t / per] >> ((t % per) * bits)) & ((1u16 << bits) - 1) as u8
}

/// The dequantized weight `W[N, K]` of a MatMulNBits node.
pub fn matmul_nbits_weight(
    b: &Tensor,
    scales: &Tensor,
    zp: Option<&Tensor>,
    g_idx: Option<&Tensor>,
    a: &MatMulNBits,
) -> Result<Vec<f32>> {
    let (k, n, bits, bs) = (a.k, a.n, a.bits, a.block_size);
    if !matches!(bits, 2 | 4 | 8) || k <= 0 || n <= 0 || bs < 16 || (bs & (bs - 1)) != 0 {
        bail!("matmul_nbits needs bits in {{2, 4, 8}}, K, N > 0 and a power-of-two block_size ≥ 16; got bits={bits} K={k} N={n} block_size={bs}");
    }
    let (k, n, bits, bs) = (k as usize, n as usize, bits as usize, bs as usize);
    let kb = k.div_ceil(bs);
    let blob = bs * bits / 8;
    let Some(bv) = (match b.data() {
        crate::tensor::TensorData::U8(v) if b.dtype() == DType::U8 => Some(v),
        _ => None,
    }) else {
        bail!("matmul_nbits B must be uint8, got {}", b.dtype());
    };
    if bv.len() != n * kb * blob {
        bail!(
            "matmul_nbits B has {} bytes, expected N·k_blocks·blob = {n}·{kb}·{blob}",
            bv.len()
        );
    }
    if scales.numel() != n * kb || !scales.dtype().is_float() {
        bail!(
            "matmul_nbits scales have {} {} values, expected {} floats",
            scales.numel(),
            scales.dtype(),
            n * kb
        );
    }
    let sv = scales.to_f32_vec();
    let zrow = kb.div_ceil(8 / bits);
    let zf: Option<Vec<f32>> = match zp {
        None => None,
        Some(z) if z.dtype() == DType::U8 => {
            let zb = z.to_i64_vec();
            if zb.len() != n * zrow {
                bail!(
                    "matmul_nbits packed zero points have {} bytes, expected {}",
                    zb.len(),
                    n * zrow
                );
            }
            let zb: Vec<u8> = zb.into_iter().map(|v| v as u8).collect();
            Some(
                (0..n * kb)
                    .map(|i| code(&zb[(i / kb) * zrow..], i % kb, bits) as f32)
                    .collect(),
            )
        }
        Some(z) if z.dtype().is_float() && z.numel() == n * kb => Some(z.to_f32_vec()),
        Some(z) => bail!(
            "matmul_nbits zero points: {} {:?} fit neither packed uint8 nor float [N, k_blocks]",
            z.dtype(),
            z.shape()
        ),
    };
    let groups: Option<Vec<usize>> = match g_idx {
        None => None,
        Some(g) => {
            let gv = g.to_i64_vec();
            if gv.len() != k || gv.iter().any(|&v| v < 0 || v as usize >= kb) {
                bail!("matmul_nbits g_idx must have K={k} block indices below {kb}");
            }
            Some(gv.into_iter().map(|v| v as usize).collect())
        }
    };
    let def_zp = (1u32 << (bits - 1)) as f32;
    let mut w = vec![0f32; n * k];
    w.par_chunks_mut(k).enumerate().for_each(|(row, wr)| {
        for (kk, wv) in wr.iter_mut().enumerate() {
            let blk = groups.as_ref().map_or(kk / bs, |g| g[kk]);
            let c = code(&bv[(row * kb + kk / bs) * blob..], kk % bs, bits) as f32;
            let z = zf.as_ref().map_or(def_zp, |z| z[row * kb + blk]);
            *wv = (c - z) * sv[row * kb + blk];
        }
    });
    Ok(w)
}

pub fn matmul_nbits(inputs: &[Option<&Tensor>], a: &MatMulNBits) -> Result<Tensor> {
    let (Some(x), Some(b), Some(scales)) = (
        inputs.first().copied().flatten(),
        inputs.get(1).copied().flatten(),
        inputs.get(2).copied().flatten(),
    ) else {
        bail!("matmul_nbits needs inputs A, B and scales");
    };
    let get = |i: usize| inputs.get(i).copied().flatten();
    if !x.dtype().is_float() {
        bail!("matmul_nbits A must be float, got {}", x.dtype());
    }
    let w = matmul_nbits_weight(b, scales, get(3), get(4), a)?;
    let (k, n) = (a.k as usize, a.n as usize);
    if x.shape().last() != Some(&k) {
        bail!(
            "matmul_nbits A of shape {:?} does not end in K={k}",
            x.shape()
        );
    }
    let m = x.numel() / k;
    let mut y = vec![0f32; m * n];
    gemm_into(
        m,
        n,
        k,
        Mat::rows(&x.f32_cow(), k),
        Mat::transposed(&w, k),
        &mut y,
        true,
    )?;
    if let Some(bias) = get(5) {
        if bias.numel() != n {
            bail!("matmul_nbits bias has {} values for N={n}", bias.numel());
        }
        let bv = bias.to_f32_vec();
        y.chunks_mut(n)
            .for_each(|r| r.iter_mut().zip(&bv).for_each(|(v, b)| *v += b));
    }
    let mut shape = x.shape().to_vec();
    if let Some(l) = shape.last_mut() {
        *l = n;
    }
    Tensor::from_f32_as(x.dtype(), shape, y)
}

/// Normalized Walsh–Hadamard transform (Sylvester order) of consecutive blocks of `size`
/// elements of the last axis (`size = 0`: the whole axis).
pub fn hadamard(x: &Tensor, size: i64) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() == 0 {
        bail!(
            "hadamard needs a float input of rank ≥ 1, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let l = x.shape()[x.rank() - 1];
    let s = if size == 0 {
        l
    } else {
        usize::try_from(size).unwrap_or(0)
    };
    if s == 0 || !s.is_power_of_two() || !l.is_multiple_of(s) {
        bail!("hadamard size {s} must be a power of two dividing the last axis ({l})");
    }
    let norm = 1.0 / (s as f64).sqrt();
    let mut v = x.to_f32_vec();
    v.par_chunks_mut(s).for_each(|blk| {
        let mut b: Vec<f64> = blk.iter().map(|&t| t as f64).collect();
        let mut h = 1;
        while h < s {
            for i in (0..s).step_by(2 * h) {
                for j in i..i + h {
                    let (p, q) = (b[j], b[j + h]);
                    b[j] = p + q;
                    b[j + h] = p - q;
                }
            }
            h *= 2;
        }
        blk.iter_mut()
            .zip(&b)
            .for_each(|(o, &t)| *o = (t * norm) as f32);
    });
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)
}

/// [`hadamard`] with an optional Kronecker factor `F` ([K, K], orthonormal): each block of
/// `K·size` elements, viewed row-major as `X[K, size]`, becomes `Fᵀ X H_size`, i.e. the
/// row vector times `F ⊗ H_size`.
pub fn hadamard_kron(x: &Tensor, size: i64, factor: Option<&Tensor>) -> Result<Tensor> {
    let Some(f) = factor else {
        return hadamard(x, size);
    };
    let k = match f.shape() {
        [a, b] if a == b && *a > 0 => *a,
        s => bail!("hadamard factor must be a square [K, K] matrix, got {s:?}"),
    };
    if !x.dtype().is_float() || x.rank() == 0 {
        bail!(
            "hadamard needs a float input of rank ≥ 1, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let l = x.shape()[x.rank() - 1];
    if !l.is_multiple_of(k) {
        bail!("hadamard factor of order {k} does not divide the last axis ({l})");
    }
    let s = if size == 0 {
        l / k
    } else {
        usize::try_from(size).unwrap_or(0)
    };
    if s == 0 || !s.is_power_of_two() || !l.is_multiple_of(k * s) {
        bail!("hadamard size {s} must be a power of two with {k}·{s} dividing the last axis ({l})");
    }
    // The power-of-two part first (blocks of `s`), then the mixing of the K rows.
    let inner = hadamard(x, s as i64)?.to_f32_vec();
    let fv: Vec<f64> = f.to_f32_vec().iter().map(|&v| v as f64).collect();
    let mut out = vec![0f32; inner.len()];
    out.par_chunks_mut(k * s)
        .zip(inner.par_chunks(k * s))
        .for_each(|(o, xb)| {
            let mut acc = vec![0f64; s];
            for i in 0..k {
                acc.iter_mut().for_each(|a| *a = 0.0);
                for r in 0..k {
                    let c = fv[r * k + i];
                    if c == 0.0 {
                        continue;
                    }
                    for (a, &v) in acc.iter_mut().zip(&xb[r * s..(r + 1) * s]) {
                        *a += c * v as f64;
                    }
                }
                for (dst, a) in o[i * s..(i + 1) * s].iter_mut().zip(&acc) {
                    *dst = *a as f32;
                }
            }
        });
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), out)
}

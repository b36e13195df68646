//! `com.microsoft.GroupQueryAttention` for a first prompt (no past KV cache), following
//! onnxruntime's CPU kernel: query `[B, S, H·d]` and key/value `[B, S, G·d]` are split
//! into heads, rotary embedding (when `do_rotary`) is applied to Q and K at positions
//! `0..S`, query head `h` reads KV head `h / (H / G)`, key `j` is visible to query `i`
//! iff `j ≤ i` and `j ≤ seqlens_k[b]` (causal, right padding), softmax in f32.
//! `present_key`/`present_value` are the rotated K and V in `[B, G, S, d]`.

use crate::error::{bail, Result};
use crate::tensor::Tensor;
use compc_ir::op::GroupQueryAttention;
use rayon::prelude::*;

fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32]> {
    match t.as_f32() {
        Some(v) => Ok(v),
        None => bail!(
            "group_query_attention: {what} must be float32 (compc's runtime), got {}",
            t.dtype()
        ),
    }
}

/// Rotates one head vector in place at position `pos`. `cos`/`sin` rows hold
/// `rotary_dim / 2` values; dims past `rotary_dim` are left alone. Half-split pairs
/// `(i, i + rotary_dim/2)`; interleaved pairs `(2i, 2i + 1)`.
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (x1, x2) = (x[a], x[b]);
        x[a] = x1 * cos[i] - x2 * sin[i];
        x[b] = x2 * cos[i] + x1 * sin[i];
    }
}

/// `[B, S, N·d]` → `[B, N, S, d]`, rotating each head vector when `rot` is given.
fn to_heads(
    x: &[f32],
    (b, s, n, d): (usize, usize, usize, usize),
    rot: Option<(&[f32], &[f32], usize, bool)>,
) -> Vec<f32> {
    let mut out = vec![0f32; b * n * s * d];
    out.par_chunks_mut(s * d)
        .enumerate()
        .for_each(|(bn, head)| {
            let (bi, ni) = (bn / n, bn % n);
            for si in 0..s {
                let src = &x[(bi * s + si) * n * d + ni * d..][..d];
                let dst = &mut head[si * d..(si + 1) * d];
                dst.copy_from_slice(src);
                if let Some((cos, sin, half, inter)) = rot {
                    rotate(
                        dst,
                        &cos[si * half..(si + 1) * half],
                        &sin[si * half..(si + 1) * half],
                        inter,
                    );
                }
            }
        });
    out
}

pub fn group_query_attention(
    inputs: &[Option<&Tensor>],
    a: &GroupQueryAttention,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    let get = |i: usize| inputs.get(i).copied().flatten();
    let (h, g) = (a.num_heads, a.kv_num_heads);
    if h <= 0 || g <= 0 || h % g != 0 {
        bail!("group_query_attention: num_heads = {h} must be a positive multiple of kv_num_heads = {g}");
    }
    let (h, g) = (h as usize, g as usize);
    if a.local_window_size != -1 || a.smooth_softmax != 0 {
        bail!("group_query_attention: local_window_size and smooth_softmax are not supported by compc's runtime");
    }
    let (Some(q), Some(k), Some(v)) = (get(0), get(1), get(2)) else {
        bail!("group_query_attention: compc's runtime needs separate query, key and value (packed QKV is not supported)");
    };
    for (i, what) in [(3, "past_key"), (4, "past_value")] {
        if get(i).is_some_and(|t| t.numel() > 0) {
            bail!("group_query_attention: a non-empty {what} (decoding with a KV cache) is not supported by compc's runtime; only a first prompt is");
        }
    }
    if (9..inputs.len()).any(|i| get(i).is_some()) {
        bail!("group_query_attention: inputs past sin_cache (position ids, bias, head sink, KV scales, norms, query lengths) are not supported by compc's runtime");
    }
    let (Some(seqlens), Some(total)) = (get(5), get(6)) else {
        bail!("group_query_attention: seqlens_k and total_sequence_length are required");
    };
    let [b, s, hidden] = *q.shape() else {
        bail!(
            "group_query_attention: query must be [batch, seq, hidden], got {:?}",
            q.shape()
        );
    };
    if hidden % h != 0 {
        bail!("group_query_attention: query hidden size {hidden} is not a multiple of num_heads = {h}");
    }
    let d = hidden / h;
    for (t, what) in [(k, "key"), (v, "value")] {
        if t.shape() != [b, s, g * d] {
            bail!(
                "group_query_attention: {what} has shape {:?}, expected [{b}, {s}, {}]",
                t.shape(),
                g * d
            );
        }
    }
    let total_len = total.to_i64_vec();
    if total_len.len() != 1 || total_len[0] != s as i64 {
        bail!(
            "group_query_attention: total_sequence_length {:?} must equal the sequence length {s} for a first prompt",
            total_len
        );
    }
    let lens = seqlens.to_i64_vec();
    if lens.len() != b || lens.iter().any(|&l| l < 0 || l >= s as i64) {
        bail!("group_query_attention: seqlens_k {lens:?} must hold {b} values in [0, {s})");
    }
    let rot = if a.do_rotary {
        let (Some(c), Some(sn)) = (get(7), get(8)) else {
            bail!("group_query_attention: do_rotary needs cos_cache and sin_cache");
        };
        let (&[rows, half], true) = (c.shape(), c.shape() == sn.shape()) else {
            bail!(
                "group_query_attention: cos_cache {:?} and sin_cache {:?} must both be [max_seq, rotary_dim/2]",
                c.shape(),
                sn.shape()
            );
        };
        if rows < s || 2 * half > d {
            bail!("group_query_attention: cos_cache [{rows}, {half}] must have at least {s} rows and at most {} columns", d / 2);
        }
        Some((f32s(c, "cos_cache")?, f32s(sn, "sin_cache")?, half))
    } else {
        None
    };
    let rot = rot.map(|(c, sn, half)| (c, sn, half, a.rotary_interleaved));
    let qh = to_heads(f32s(q, "query")?, (b, s, h, d), rot);
    let kh = to_heads(f32s(k, "key")?, (b, s, g, d), rot);
    let vh = to_heads(f32s(v, "value")?, (b, s, g, d), None);
    let scale = if a.scale == 0.0 {
        1.0 / (d as f32).sqrt()
    } else {
        a.scale
    };
    let reps = h / g;
    // One (batch, query head) per task, written into [B, S, H·d] afterwards.
    let heads: Vec<Vec<f32>> = (0..b * h)
        .into_par_iter()
        .map(|bh| {
            let (bi, hi) = (bh / h, bh % h);
            let kv = bi * g + hi / reps;
            let (qm, km, vm) = (
                &qh[bh * s * d..][..s * d],
                &kh[kv * s * d..][..s * d],
                &vh[kv * s * d..][..s * d],
            );
            let valid = lens[bi] as usize + 1;
            let mut out = vec![0f32; s * d];
            let mut p = vec![0f32; s];
            for i in 0..s {
                let n = (i + 1).min(valid);
                let qi = &qm[i * d..(i + 1) * d];
                let mut max = f32::NEG_INFINITY;
                for (j, pj) in p[..n].iter_mut().enumerate() {
                    let kj = &km[j * d..(j + 1) * d];
                    let mut dot = 0f32;
                    for (x, y) in qi.iter().zip(kj) {
                        dot += x * y;
                    }
                    let mut sc = dot * scale;
                    if a.softcap > 0.0 {
                        sc = a.softcap * (sc / a.softcap).tanh();
                    }
                    *pj = sc;
                    max = max.max(sc);
                }
                let mut sum = 0f32;
                for pj in &mut p[..n] {
                    *pj = (*pj - max).exp();
                    sum += *pj;
                }
                let oi = &mut out[i * d..(i + 1) * d];
                for (j, pj) in p[..n].iter().enumerate() {
                    let w = pj / sum;
                    for (o, x) in oi.iter_mut().zip(&vm[j * d..(j + 1) * d]) {
                        *o += w * x;
                    }
                }
            }
            out
        })
        .collect();
    let mut out = vec![0f32; b * s * h * d];
    for (bh, head) in heads.iter().enumerate() {
        let (bi, hi) = (bh / h, bh % h);
        for si in 0..s {
            out[(bi * s + si) * h * d + hi * d..][..d].copy_from_slice(&head[si * d..(si + 1) * d]);
        }
    }
    let mut res = vec![Tensor::from_f32(vec![b, s, h * d], out)];
    if num_outputs > 1 {
        res.push(Tensor::from_f32(vec![b, g, s, d], kh));
    }
    if num_outputs > 2 {
        res.push(Tensor::from_f32(vec![b, g, s, d], vh));
    }
    Ok(res)
}

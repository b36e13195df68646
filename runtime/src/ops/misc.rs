//! Smaller ops without a family of their own: IsInf, Shrink, BitShift, Det, EyeLike,
//! MeanVarianceNormalization, LRN, Compress, ReverseSequence, Unique and
//! TfIdfVectorizer.

use crate::broadcast::{map2, norm_axis, split_at_axis};
use crate::error::{bail, Result};
use crate::ops::elementwise::float_map;
use crate::ops::shape_ops::ints;
use crate::tensor::{checked_numel, Tensor, TensorData};
use compc_ir::op::{Compress, EyeLike, Lrn, TfIdf, Unique};
use compc_ir::DType;
use std::cmp::Ordering;
use std::collections::HashMap;

pub fn is_inf(x: &Tensor, neg: bool, pos: bool) -> Result<Tensor> {
    if !x.dtype().is_float() {
        bail!("is_inf needs a float input, got {}", x.dtype());
    }
    let v = x
        .to_f64_vec()
        .into_iter()
        .map(|v| v.is_infinite() && ((v > 0.0 && pos) || (v < 0.0 && neg)))
        .collect();
    Ok(Tensor::from_bool(x.shape().to_vec(), v))
}

pub fn shrink(x: &Tensor, bias: f32, lambd: f32) -> Result<Tensor> {
    let (b, l) = (bias as f64, lambd as f64);
    let f = move |v: f64| {
        if v < -l {
            v + b
        } else if v > l {
            v - b
        } else {
            0.0
        }
    };
    if x.dtype().is_float() {
        float_map(x, "shrink", f)
    } else if x.dtype().is_int() {
        let v = x.to_f64_vec().into_iter().map(f).collect();
        Tensor::from_f64_as(x.dtype(), x.shape().to_vec(), v)
    } else {
        bail!("shrink is not defined for {} inputs", x.dtype())
    }
}

/// Shifts of unsigned integers; bits shifted past the type's width are lost.
pub fn bit_shift(x: &Tensor, y: &Tensor, direction: &str) -> Result<Tensor> {
    let width = match x.dtype() {
        DType::U8 => 8,
        DType::U16 => 16,
        DType::U32 => 32,
        DType::U64 => 64,
        other => bail!("bit_shift needs an unsigned integer input, got {other}"),
    };
    if y.dtype() != x.dtype() {
        bail!(
            "bit_shift needs inputs of one type, got {} and {}",
            x.dtype(),
            y.dtype()
        );
    }
    let left = match direction {
        "LEFT" => true,
        "RIGHT" => false,
        other => bail!("bit_shift direction `{other}` is not LEFT or RIGHT"),
    };
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    // Unsigned values round-trip through i64 bit for bit.
    let a: Vec<u64> = x.to_i64_vec().into_iter().map(|v| v as u64).collect();
    let b: Vec<u64> = y.to_i64_vec().into_iter().map(|v| v as u64).collect();
    let (shape, v) = map2(&a, x.shape(), &b, y.shape(), |p, q| {
        if q >= width {
            0
        } else if left {
            (p << q) & mask
        } else {
            p >> q
        }
    })?;
    Tensor::from_i64_as(x.dtype(), shape, v.into_iter().map(|v| v as i64).collect())
}

/// Determinants of `[..., M, M]` by LU decomposition with partial pivoting.
pub fn det(x: &Tensor) -> Result<Tensor> {
    if !x.dtype().is_float() {
        bail!("det needs a float input, got {}", x.dtype());
    }
    let r = x.rank();
    if r < 2 || x.shape()[r - 1] != x.shape()[r - 2] {
        bail!("det needs square matrices [..., M, M], got {:?}", x.shape());
    }
    let m = x.shape()[r - 1];
    let v = x.to_f64_vec();
    let out: Vec<f64> = v
        .chunks(m * m)
        .take(if m == 0 { 0 } else { v.len() / (m * m) })
        .map(|a| {
            let mut a = a.to_vec();
            let mut d = 1.0;
            for col in 0..m {
                let p = (col..m)
                    .max_by(|&i, &j| {
                        a[i * m + col]
                            .abs()
                            .partial_cmp(&a[j * m + col].abs())
                            .unwrap_or(Ordering::Equal)
                    })
                    .unwrap_or(col);
                if a[p * m + col] == 0.0 {
                    return 0.0;
                }
                if p != col {
                    for k in 0..m {
                        a.swap(p * m + k, col * m + k);
                    }
                    d = -d;
                }
                let piv = a[col * m + col];
                d *= piv;
                for i in col + 1..m {
                    let f = a[i * m + col] / piv;
                    for k in col..m {
                        a[i * m + k] -= f * a[col * m + k];
                    }
                }
            }
            d
        })
        .collect();
    let shape = x.shape()[..r - 2].to_vec();
    // A batch of 0×0 matrices has determinant 1 each.
    let out = if m == 0 {
        vec![1.0; shape.iter().product()]
    } else {
        out
    };
    Tensor::from_f64_as(x.dtype(), shape, out)
}

pub fn eye_like(x: &Tensor, e: &EyeLike) -> Result<Tensor> {
    if x.rank() != 2 {
        bail!("eye_like needs a 2-D input, got {:?}", x.shape());
    }
    let (r, c) = (x.shape()[0], x.shape()[1]);
    let mut v = vec![0i64; r * c];
    for i in 0..r {
        let j = i as i64 + e.k;
        if (0..c as i64).contains(&j) {
            v[i * c + j as usize] = 1;
        }
    }
    Tensor::from_i64_as(e.dtype.unwrap_or(x.dtype()), vec![r, c], v)
}

/// `(x - mean) / (std + 1e-9)` over `axes` (ONNX's function body).
pub fn mean_variance_norm(x: &Tensor, axes: &[i64]) -> Result<Tensor> {
    if !x.dtype().is_float() {
        bail!(
            "mean_variance_normalization needs a float input, got {}",
            x.dtype()
        );
    }
    let r = x.rank();
    let mut red = vec![false; r];
    for &a in axes {
        red[norm_axis(a, r)?] = true;
    }
    let v = x.to_f64_vec();
    let shape = x.shape();
    // Group the elements by their position on the kept axes.
    let strides = crate::broadcast::strides(shape);
    let key = |mut i: usize| {
        let mut k = 0usize;
        for d in 0..r {
            let c = i / strides[d];
            i %= strides[d];
            if !red[d] {
                k = k * shape[d] + c;
            }
        }
        k
    };
    let groups: usize = (0..r).filter(|&d| !red[d]).map(|d| shape[d]).product();
    let mut sum = vec![0f64; groups];
    let mut sq = vec![0f64; groups];
    let mut cnt = vec![0usize; groups];
    let keys: Vec<usize> = (0..v.len()).map(key).collect();
    for (i, &k) in keys.iter().enumerate() {
        sum[k] += v[i];
        sq[k] += v[i] * v[i];
        cnt[k] += 1;
    }
    let out = keys
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let n = cnt[k].max(1) as f64;
            let mean = sum[k] / n;
            let var = sq[k] / n - mean * mean;
            (v[i] - mean) / (var.max(0.0).sqrt() + 1e-9)
        })
        .collect();
    Tensor::from_f64_as(x.dtype(), shape.to_vec(), out)
}

/// Local response normalization over channels (axis 1).
pub fn lrn(x: &Tensor, a: &Lrn) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() < 2 {
        bail!(
            "lrn needs a float input [N, C, ...], got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    if a.size <= 0 {
        bail!("lrn size {} must be positive", a.size);
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let inner: usize = x.shape()[2..].iter().product();
    let v = x.to_f64_vec();
    let size = a.size as usize;
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let mut out = vec![0f64; v.len()];
    for b in 0..n {
        for ch in 0..c {
            let from = ch.saturating_sub(lo);
            let to = (ch + hi).min(c - 1);
            for i in 0..inner {
                let s: f64 = (from..=to)
                    .map(|k| v[(b * c + k) * inner + i].powi(2))
                    .sum();
                let at = (b * c + ch) * inner + i;
                let base = a.bias as f64 + a.alpha as f64 / size as f64 * s;
                out[at] = v[at] / base.powf(a.beta as f64);
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), x.shape().to_vec(), out)
}

pub fn compress(x: &Tensor, cond: &Tensor, c: &Compress) -> Result<Tensor> {
    let Some(cv) = cond.as_bool() else {
        bail!("compress needs a bool condition, got {}", cond.dtype());
    };
    if cond.rank() != 1 {
        bail!(
            "compress needs a 1-D condition, got shape {:?}",
            cond.shape()
        );
    }
    let (shape, outer, n, inner) = match c.axis {
        None => (vec![x.numel()], 1, x.numel(), 1),
        Some(a) => {
            let ax = norm_axis(a, x.rank())?;
            let (o, n, i) = split_at_axis(x.shape(), ax);
            (x.shape().to_vec(), o, n, i)
        }
    };
    if cv.len() > n {
        bail!(
            "compress condition has {} entries for an axis of {n}",
            cv.len()
        );
    }
    let keep: Vec<usize> = (0..cv.len()).filter(|&i| cv[i]).collect();
    let mut idx = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in &keep {
            idx.extend((0..inner).map(|j| (o * n + k) * inner + j));
        }
    }
    let out_shape = match c.axis {
        None => vec![keep.len()],
        Some(a) => {
            let mut s = shape;
            s[norm_axis(a, x.rank())?] = keep.len();
            s
        }
    };
    x.take(&idx, out_shape, None)
}

pub fn reverse_sequence(
    x: &Tensor,
    lens: &Tensor,
    batch_axis: i64,
    time_axis: i64,
) -> Result<Tensor> {
    if x.rank() < 2 {
        bail!("reverse_sequence needs rank ≥ 2, got {:?}", x.shape());
    }
    let (b, t) = (
        norm_axis(batch_axis, x.rank())?,
        norm_axis(time_axis, x.rank())?,
    );
    if b == t || b > 1 || t > 1 {
        bail!(
            "reverse_sequence needs batch and time axes 0 and 1, got {batch_axis} and {time_axis}"
        );
    }
    let lv = ints(lens, "sequence_lens")?;
    let (nb, nt) = (x.shape()[b], x.shape()[t]);
    if lv.len() != nb {
        bail!("sequence_lens has {} entries for a batch of {nb}", lv.len());
    }
    let inner: usize = x.shape()[2..].iter().product();
    let st = crate::broadcast::strides(x.shape());
    let mut idx: Vec<usize> = (0..x.numel()).collect();
    for (bi, &l) in lv.iter().enumerate() {
        if l < 0 || l as usize > nt {
            bail!("sequence length {l} is out of range for {nt} steps");
        }
        let l = l as usize;
        for ti in 0..l {
            for k in 0..inner {
                let dst = bi * st[b] + ti * st[t] + k;
                idx[dst] = bi * st[b] + (l - 1 - ti) * st[t] + k;
            }
        }
    }
    x.take(&idx, x.shape().to_vec(), None)
}

/// Elements (or slices) as keys that order like numpy's sort: floats by value (NaN
/// last), integers exactly.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    F(f64),
    I(i64),
}

fn cmp_keys(a: &[Key], b: &[Key]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Key::F(p), Key::F(q)) => p.total_cmp(q),
            (Key::I(p), Key::I(q)) => p.cmp(q),
            _ => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

pub fn unique(x: &Tensor, u: &Unique, num_outputs: usize) -> Result<Vec<Tensor>> {
    let keys: Vec<Key> = match x.data() {
        TensorData::F32(_) | TensorData::F64(_) => x.to_f64_vec().into_iter().map(Key::F).collect(),
        _ => x.to_i64_vec().into_iter().map(Key::I).collect(),
    };
    let (outer, n, inner, ax) = match u.axis {
        None => (1, x.numel(), 1, None),
        Some(a) => {
            let ax = norm_axis(a, x.rank())?;
            let (o, n, i) = split_at_axis(x.shape(), ax);
            (o, n, i, Some(ax))
        }
    };
    // Slice j along the axis, gathered over the outer and inner positions.
    let slice = |j: usize| -> Vec<Key> {
        let mut s = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            s.extend_from_slice(&keys[(o * n + j) * inner..][..inner]);
        }
        s
    };
    let slices: Vec<Vec<Key>> = (0..n).map(slice).collect();
    let mut firsts: Vec<usize> = Vec::new();
    for j in 0..n {
        if !firsts
            .iter()
            .any(|&f| cmp_keys(&slices[f], &slices[j]) == Ordering::Equal)
        {
            firsts.push(j);
        }
    }
    if u.sorted {
        firsts.sort_by(|&a, &b| cmp_keys(&slices[a], &slices[b]));
    }
    let mut inverse = vec![0i64; n];
    let mut counts = vec![0i64; firsts.len()];
    for j in 0..n {
        let k = firsts
            .iter()
            .position(|&f| cmp_keys(&slices[f], &slices[j]) == Ordering::Equal)
            .unwrap_or(0);
        inverse[j] = k as i64;
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
    }
    let mut idx = Vec::with_capacity(outer * firsts.len() * inner);
    for o in 0..outer {
        for &f in &firsts {
            idx.extend((0..inner).map(|i| (o * n + f) * inner + i));
        }
    }
    let shape = match ax {
        None => vec![firsts.len()],
        Some(ax) => {
            let mut s = x.shape().to_vec();
            s[ax] = firsts.len();
            s
        }
    };
    let y = x.take(&idx, shape, None)?;
    let k = firsts.len();
    let mut out = vec![y];
    if num_outputs > 1 {
        out.push(Tensor::from_i64(
            vec![k],
            firsts.iter().map(|&f| f as i64).collect(),
        ));
    }
    if num_outputs > 2 {
        out.push(Tensor::from_i64(vec![n], inverse));
    }
    if num_outputs > 3 {
        out.push(Tensor::from_i64(vec![k], counts));
    }
    Ok(out)
}

/// n-gram counts over an integer pool (ONNX's TfIdfVectorizer): unigrams are counted
/// once, longer n-grams once per skip distance `1..=max_skip_count + 1`.
pub fn tf_idf(x: &Tensor, t: &TfIdf) -> Result<Tensor> {
    if t.pool_strings.is_some() {
        bail!("tf_idf_vectorizer over a string pool is not supported");
    }
    let pool = t.pool_int64s.clone().unwrap_or_default();
    if !x.dtype().is_int() {
        bail!("tf_idf_vectorizer needs integer input, got {}", x.dtype());
    }
    if t.min_gram_length < 1 || t.max_gram_length < t.min_gram_length || t.max_skip_count < 0 {
        bail!(
            "tf_idf_vectorizer gram lengths {}..{} or skip count {} are invalid",
            t.min_gram_length,
            t.max_gram_length,
            t.max_skip_count
        );
    }
    // The pool: n-grams of length k start at ngram_counts[k-1]; the j-th n-gram overall
    // goes to output column ngram_indexes[j].
    let mut table: HashMap<Vec<i64>, usize> = HashMap::new();
    let mut j = 0usize;
    for (k, &start) in t.ngram_counts.iter().enumerate() {
        let len = k + 1;
        let end = t
            .ngram_counts
            .get(k + 1)
            .map_or(pool.len(), |&e| e as usize)
            .min(pool.len());
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        if start > end {
            bail!(
                "tf_idf_vectorizer ngram_counts {:?} are not increasing",
                t.ngram_counts
            );
        }
        for g in pool[start..end].chunks(len) {
            let Some(&col) = t.ngram_indexes.get(j) else {
                bail!("tf_idf_vectorizer has fewer ngram_indexes than pool n-grams");
            };
            if col < 0 {
                bail!("tf_idf_vectorizer ngram index {col} is negative");
            }
            table.insert(g.to_vec(), col as usize);
            j += 1;
        }
    }
    let cols = t
        .ngram_indexes
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m.max(-1) + 1) as usize;
    let (rows, len, shape) = match x.shape() {
        [] => (1, 1, vec![cols]),
        [c] => (1, *c, vec![cols]),
        [n, c] => (*n, *c, vec![*n, cols]),
        s => bail!("tf_idf_vectorizer needs a 1-D or 2-D input, got {s:?}"),
    };
    checked_numel(&shape, "tf_idf_vectorizer")?;
    let xv = x.to_i64_vec();
    let mut counts = vec![0f64; rows * cols];
    let (lo, hi) = (t.min_gram_length as usize, t.max_gram_length as usize);
    for r in 0..rows {
        let row = &xv[r * len..][..len];
        for skip in 1..=(t.max_skip_count as usize + 1) {
            for start in 0..len {
                let first = if skip == 1 { lo } else { lo.max(2) };
                for n in first..=hi {
                    let last = start + (n - 1) * skip;
                    if last >= len {
                        break;
                    }
                    let g: Vec<i64> = (0..n).map(|m| row[start + m * skip]).collect();
                    if let Some(&col) = table.get(&g) {
                        counts[r * cols + col] += 1.0;
                    }
                }
            }
        }
    }
    // Weights are indexed by output column (as onnxruntime and ONNX's reference read them).
    let weight = |col: usize| {
        t.weights
            .as_ref()
            .and_then(|w| w.get(col))
            .map_or(1.0, |&v| v as f64)
    };
    for (i, c) in counts.iter_mut().enumerate() {
        let col = i % cols.max(1);
        *c = match t.mode.as_str() {
            "TF" => *c,
            "IDF" => {
                if *c > 0.0 {
                    weight(col)
                } else {
                    0.0
                }
            }
            "TFIDF" => *c * weight(col),
            other => bail!("tf_idf_vectorizer mode `{other}` is not TF, IDF or TFIDF"),
        };
    }
    Tensor::from_f64_as(DType::F32, shape, counts)
}

//! Reductions over axes, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax (opset-13 single-axis
//! semantics) and CumSum. Float accumulation is f64; integer reductions stay integers.

use crate::broadcast::{cartesian_index, norm_axis, split_at_axis};
use crate::error::{bail, Result};
use crate::ops::elementwise::i64_cow;
use crate::tensor::Tensor;
use compc_ir::op::{ArgReduce, Reduce, ReduceOp};
use rayon::prelude::*;

/// Base offset of every output position and the offsets of the reduced positions
/// relative to it.
fn reduce_plan(shape: &[usize], red: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let kept: Vec<Vec<usize>> = shape
        .iter()
        .zip(red)
        .map(|(&n, &r)| if r { vec![0] } else { (0..n).collect() })
        .collect();
    let redd: Vec<Vec<usize>> = shape
        .iter()
        .zip(red)
        .map(|(&n, &r)| if r { (0..n).collect() } else { vec![0] })
        .collect();
    (cartesian_index(shape, &kept), cartesian_index(shape, &redd))
}

fn axes_mask(rank: usize, axes: &[i64]) -> Result<Vec<bool>> {
    let mut m = vec![false; rank];
    for &a in axes {
        m[norm_axis(a, rank)?] = true;
    }
    Ok(m)
}

fn out_shape(shape: &[usize], red: &[bool], keep: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(red)
        .filter_map(|(&n, &r)| if r { keep.then_some(1) } else { Some(n) })
        .collect()
}

fn reduce_f64(k: ReduceOp, it: impl Iterator<Item = f64> + Clone, n: usize) -> f64 {
    match k {
        ReduceOp::Sum => it.sum(),
        ReduceOp::Mean => it.sum::<f64>() / n as f64,
        ReduceOp::Max => it.fold(
            f64::NEG_INFINITY,
            |a, b| if b > a || b.is_nan() { b } else { a },
        ),
        ReduceOp::Min => it.fold(
            f64::INFINITY,
            |a, b| if b < a || b.is_nan() { b } else { a },
        ),
        ReduceOp::Prod => it.product(),
        ReduceOp::L1 => it.map(f64::abs).sum(),
        ReduceOp::L2 => it.map(|x| x * x).sum::<f64>().sqrt(),
        ReduceOp::LogSum => it.sum::<f64>().ln(),
        ReduceOp::LogSumExp => {
            let m = it.clone().fold(f64::NEG_INFINITY, f64::max);
            if m.is_infinite() {
                return it.map(f64::exp).sum::<f64>().ln();
            }
            m + it.map(|x| (x - m).exp()).sum::<f64>().ln()
        }
        ReduceOp::SumSquare => it.map(|x| x * x).sum(),
    }
}

fn reduce_i64(k: ReduceOp, it: impl Iterator<Item = i64>, n: usize) -> i64 {
    match k {
        ReduceOp::Max => it.max().unwrap_or(i64::MIN),
        ReduceOp::Min => it.min().unwrap_or(i64::MAX),
        ReduceOp::Prod => it.fold(1i64, i64::wrapping_mul),
        ReduceOp::L1 => it.fold(0i64, |a, b| a.wrapping_add(b.wrapping_abs())),
        ReduceOp::SumSquare => it.fold(0i64, |a, b| a.wrapping_add(b.wrapping_mul(b))),
        ReduceOp::Mean => it.fold(0i64, i64::wrapping_add) / (n.max(1) as i64),
        _ => it.fold(0i64, i64::wrapping_add),
    }
}

pub fn reduce(k: ReduceOp, r: &Reduce, x: &Tensor, axes_in: Option<&Tensor>) -> Result<Tensor> {
    let axes: Vec<i64> = match (&r.axes, axes_in) {
        (Some(a), _) => a.clone(),
        (None, Some(t)) => t.to_i64_vec(),
        (None, None) => vec![],
    };
    if axes.is_empty() && r.noop_with_empty_axes {
        return Ok(x.clone());
    }
    let rank = x.rank();
    let red = if axes.is_empty() {
        vec![true; rank]
    } else {
        axes_mask(rank, &axes)?
    };
    let (base, offs) = reduce_plan(x.shape(), &red);
    let shape = out_shape(x.shape(), &red, r.keepdims);
    let n = offs.len();
    let int_path =
        x.dtype().is_int() && !matches!(k, ReduceOp::L2 | ReduceOp::LogSum | ReduceOp::LogSumExp);
    if int_path {
        let v = i64_cow(x);
        let out: Vec<i64> = base
            .par_iter()
            .map(|&b| reduce_i64(k, offs.iter().map(|&o| v[b + o]), n))
            .collect();
        return Tensor::from_i64_as(x.dtype(), shape, out);
    }
    if !x.dtype().is_float() && !x.dtype().is_int() {
        bail!("{} is not defined for {} inputs", k.name(), x.dtype());
    }
    let v = x.to_f64_vec();
    let out: Vec<f64> = base
        .par_iter()
        .map(|&b| reduce_f64(k, offs.iter().map(|&o| v[b + o]), n))
        .collect();
    Tensor::from_f64_as(x.dtype(), shape, out)
}

pub fn arg_reduce(x: &Tensor, a: &ArgReduce, max: bool) -> Result<Tensor> {
    let rank = x.rank();
    let ax = norm_axis(a.axis, rank.max(1))?;
    if rank == 0 {
        bail!("arg_max/arg_min need an input of rank ≥ 1");
    }
    let (outer, n, inner) = split_at_axis(x.shape(), ax);
    if n == 0 {
        bail!("arg_max/arg_min over an empty axis");
    }
    let v = x.to_f64_vec();
    let out: Vec<i64> = (0..outer * inner)
        .into_par_iter()
        .map(|p| {
            let (o, i) = (p / inner, p % inner);
            let at = |j: usize| v[(o * n + j) * inner + i];
            let mut best = 0;
            for j in 1..n {
                let better = if max {
                    at(j) > at(best)
                } else {
                    at(j) < at(best)
                };
                let tie = at(j) == at(best) && a.select_last_index;
                if better || tie {
                    best = j;
                }
            }
            best as i64
        })
        .collect();
    let mut shape = x.shape().to_vec();
    if a.keepdims {
        shape[ax] = 1;
    } else {
        shape.remove(ax);
    }
    Ok(Tensor::from_i64(shape, out))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

pub fn softmax(x: &Tensor, axis: i64, kind: SoftmaxKind) -> Result<Tensor> {
    if !x.dtype().is_float() {
        bail!("softmax needs a float input, got {}", x.dtype());
    }
    if x.rank() == 0 {
        return Tensor::from_f32_as(
            x.dtype(),
            vec![],
            vec![if kind == SoftmaxKind::LogSoftmax {
                0.0
            } else {
                1.0
            }],
        );
    }
    let ax = norm_axis(axis, x.rank())?;
    let (_, n, inner) = split_at_axis(x.shape(), ax);
    let mut v = x.to_f32_vec();
    if n * inner > 0 {
        v.par_chunks_mut(n * inner).for_each(|blk| {
            for i in 0..inner {
                let m = (0..n)
                    .map(|j| blk[j * inner + i])
                    .fold(f32::NEG_INFINITY, f32::max);
                match kind {
                    SoftmaxKind::Hardmax => {
                        let first = (0..n).find(|&j| blk[j * inner + i] == m).unwrap_or(0);
                        (0..n).for_each(|j| blk[j * inner + i] = (j == first) as u8 as f32);
                    }
                    _ => {
                        let s: f64 = (0..n)
                            .map(|j| ((blk[j * inner + i] - m) as f64).exp())
                            .sum();
                        for j in 0..n {
                            let d = (blk[j * inner + i] - m) as f64;
                            blk[j * inner + i] = if kind == SoftmaxKind::Softmax {
                                (d.exp() / s) as f32
                            } else {
                                (d - s.ln()) as f32
                            };
                        }
                    }
                }
            }
        });
    }
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), v)
}

pub fn cumsum(x: &Tensor, axis: &Tensor, exclusive: bool, reverse: bool) -> Result<Tensor> {
    if axis.numel() != 1 || !axis.dtype().is_int() {
        bail!(
            "cum_sum axis must be an integer scalar, got {} {:?}",
            axis.dtype(),
            axis.shape()
        );
    }
    let ax = norm_axis(axis.to_i64_vec()[0], x.rank().max(1))?;
    if x.rank() == 0 {
        return Ok(x.clone());
    }
    let (outer, n, inner) = split_at_axis(x.shape(), ax);
    let order = |j: usize| if reverse { n - 1 - j } else { j };
    if x.dtype().is_int() {
        let mut v = x.to_i64_vec();
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = 0i64;
                for j in 0..n {
                    let p = (o * n + order(j)) * inner + i;
                    let cur = v[p];
                    v[p] = if exclusive {
                        acc
                    } else {
                        acc.wrapping_add(cur)
                    };
                    acc = acc.wrapping_add(cur);
                }
            }
        }
        return Tensor::from_i64_as(x.dtype(), x.shape().to_vec(), v);
    }
    if !x.dtype().is_float() {
        bail!("cum_sum is not defined for {} inputs", x.dtype());
    }
    let mut v = x.to_f64_vec();
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = 0f64;
            for j in 0..n {
                let p = (o * n + order(j)) * inner + i;
                let cur = v[p];
                v[p] = if exclusive { acc } else { acc + cur };
                acc += cur;
            }
        }
    }
    Tensor::from_f64_as(x.dtype(), x.shape().to_vec(), v)
}

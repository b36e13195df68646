//! Numpy broadcasting and the index helpers data-movement kernels share. Element-wise
//! maps split large outputs into chunks that rayon computes in parallel; each chunk
//! recomputes its starting multi-index, so the order of work never changes results.

use crate::error::{bail, Result};
use rayon::prelude::*;

/// Outputs at least this large are computed in parallel chunks.
pub const PAR_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The numpy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

/// Strides of `shape` read as `out` (right-aligned, 0 on broadcast dims). `shape` must
/// broadcast to `out`.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

/// Calls `f(i, offsets)` for output positions `start..start+len` in order, where
/// `offsets[k]` is the position in input k (given by its strides over `out`).
fn walk<const K: usize>(
    out: &[usize],
    st: &[Vec<usize>; K],
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, &[usize; K]),
) {
    let r = out.len();
    let mut idx = vec![0usize; r];
    let mut rem = start;
    for d in (0..r).rev() {
        if out[d] > 0 {
            idx[d] = rem % out[d];
            rem /= out[d];
        }
    }
    let mut offs = [0usize; K];
    for k in 0..K {
        offs[k] = (0..r).map(|d| idx[d] * st[k][d]).sum();
    }
    for i in 0..len {
        f(i, &offs);
        let mut d = r;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            for k in 0..K {
                offs[k] += st[k][d];
            }
            if idx[d] < out[d] {
                break;
            }
            for k in 0..K {
                offs[k] -= st[k][d] * out[d];
            }
            idx[d] = 0;
        }
    }
}

/// Fills `n` outputs with `g(start, chunk)` over chunks, in parallel when large.
fn fill_chunks<O: Send + Copy + Default>(n: usize, g: impl Fn(usize, &mut [O]) + Sync) -> Vec<O> {
    let mut out = vec![O::default(); n];
    if n == 0 {
        return out;
    }
    if n >= PAR_MIN {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, ch)| g(c * CHUNK, ch));
    } else {
        g(0, &mut out);
    }
    out
}

/// Element-wise map of one slice.
pub fn map1<A: Copy + Sync, O: Send + Copy + Default>(
    a: &[A],
    f: impl Fn(A) -> O + Sync,
) -> Vec<O> {
    fill_chunks(a.len(), |s, ch| {
        for (o, &x) in ch.iter_mut().zip(&a[s..]) {
            *o = f(x);
        }
    })
}

/// Broadcasting element-wise map of two inputs; returns the output shape and values.
pub fn map2<A: Copy + Sync, B: Copy + Sync, O: Send + Copy + Default>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) -> Result<(Vec<usize>, Vec<O>)> {
    let out = broadcast_shapes(sa, sb)?;
    let n: usize = out.iter().product();
    let v = if sa == sb {
        fill_chunks(n, |s, ch| {
            for (i, o) in ch.iter_mut().enumerate() {
                *o = f(a[s + i], b[s + i]);
            }
        })
    } else if b.len() == 1 && out == sa {
        let y = b[0];
        fill_chunks(n, |s, ch| {
            for (o, &x) in ch.iter_mut().zip(&a[s..]) {
                *o = f(x, y);
            }
        })
    } else if a.len() == 1 && out == sb {
        let x = a[0];
        fill_chunks(n, |s, ch| {
            for (o, &y) in ch.iter_mut().zip(&b[s..]) {
                *o = f(x, y);
            }
        })
    } else {
        let st = [broadcast_strides(sa, &out), broadcast_strides(sb, &out)];
        fill_chunks(n, |s, ch| {
            walk(&out, &st, s, ch.len(), |i, o| ch[i] = f(a[o[0]], b[o[1]]));
        })
    };
    Ok((out, v))
}

/// Broadcasting map of three inputs (Where, Clip with tensor bounds).
pub fn map3<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, O: Send + Copy + Default>(
    (a, sa): (&[A], &[usize]),
    (b, sb): (&[B], &[usize]),
    (c, sc): (&[C], &[usize]),
    f: impl Fn(A, B, C) -> O + Sync,
) -> Result<(Vec<usize>, Vec<O>)> {
    let out = broadcast_shapes(&broadcast_shapes(sa, sb)?, sc)?;
    let n: usize = out.iter().product();
    let st = [
        broadcast_strides(sa, &out),
        broadcast_strides(sb, &out),
        broadcast_strides(sc, &out),
    ];
    let v = fill_chunks(n, |s, ch| {
        walk(&out, &st, s, ch.len(), |i, o| {
            ch[i] = f(a[o[0]], b[o[1]], c[o[2]])
        });
    });
    Ok((out, v))
}

/// Source index of every output element when `shape` is broadcast to `out`.
pub fn expand_index(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = [broadcast_strides(shape, out)];
    let n: usize = out.iter().product();
    fill_chunks(n, |s, ch| walk(out, &st, s, ch.len(), |i, o| ch[i] = o[0]))
}

/// Source index of every output element when output axis d takes input index
/// `per_axis[d][i]` (`usize::MAX` marks a position outside the input: the result is
/// `usize::MAX` there). The output shape is the lengths of `per_axis`.
pub fn cartesian_index(in_shape: &[usize], per_axis: &[Vec<usize>]) -> Vec<usize> {
    let st = strides(in_shape);
    let out: Vec<usize> = per_axis.iter().map(|v| v.len()).collect();
    let n: usize = out.iter().product();
    let r = out.len();
    fill_chunks(n, |s, ch| {
        let mut idx = vec![0usize; r];
        let mut rem = s;
        for d in (0..r).rev() {
            idx[d] = rem % out[d];
            rem /= out[d];
        }
        for o in ch.iter_mut() {
            let mut off = 0usize;
            for d in 0..r {
                let j = per_axis[d][idx[d]];
                if j == usize::MAX {
                    off = usize::MAX;
                    break;
                }
                off += j * st[d];
            }
            *o = off;
            let mut d = r;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                if idx[d] < out[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    })
}

/// Source index of every output element of a transpose by `perm`.
pub fn permute_index(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let pst = [perm.iter().map(|&p| st[p]).collect::<Vec<_>>()];
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let n: usize = out.iter().product();
    fill_chunks(n, |s, ch| {
        walk(&out, &pst, s, ch.len(), |i, o| ch[i] = o[0])
    })
}

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// (product of dims before `axis`, dim at `axis`, product of dims after `axis`).
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

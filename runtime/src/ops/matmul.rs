//! MatMul (batched, broadcasting batch dims, 1-D operands) and Gemm. The inner products
//! are the `gemm` crate's kernels; batches run in parallel on rayon, a single large
//! product lets gemm parallelize internally.

use crate::broadcast::{broadcast_shapes, expand_index};
use crate::error::{bail, Result};
use crate::ops::elementwise::{i64_cow, same_dtype};
use crate::tensor::{Tensor, TensorData};
use compc_ir::DType;
use gemm::Parallelism;
use rayon::prelude::*;

/// Products with at least this many multiply-adds are worth threading.
const PAR_FLOPS: usize = 1 << 18;

/// A matrix view: a slice and its row/column strides.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A dense row-major `rows × cols` matrix.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a dense row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// Element types the gemm kernels support.
pub(crate) trait GemmElem: Copy + Default + Send + Sync + 'static {
    const ONE: Self;
}
impl GemmElem for f32 {
    const ONE: f32 = 1.0;
}
impl GemmElem for f64 {
    const ONE: f64 = 1.0;
}

/// `c[m×n] = a[m×k] · b[k×n]` (`c` dense row-major, overwritten). Bounds are checked
/// here so the unsafe call below cannot read or write outside the slices.
pub(crate) fn gemm_into<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    threads: bool,
) -> Result<()> {
    if c.len() < m * n || !a.fits(m, k) || !b.fits(k, n) {
        bail!("internal: matrix product {m}x{k} · {k}x{n} does not fit its buffers");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|x| *x = T::default());
        return Ok(());
    }
    let par = if threads && m * n * k >= PAR_FLOPS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every index gemm touches is (i*rs + j*cs) with i, j inside the given sizes,
    // which `fits` checked against the slice lengths; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::default(),
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Dense row-major `a[m×k] · b[k×n]`.
pub fn matmul_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    let mut c = vec![0.0; m * n];
    gemm_into(m, n, k, Mat::rows(a, k), Mat::rows(b, n), &mut c, true)?;
    Ok(c)
}

/// Batched product of `a[batch.., m, k]` and `b[batch.., k, n]` (batch dims broadcast).
pub(crate) fn batched<T: GemmElem>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
) -> Result<(Vec<usize>, Vec<T>)> {
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = (sa[ra - 2], sa[ra - 1]);
    let (k2, n) = (sb[rb - 2], sb[rb - 1]);
    if k != k2 {
        bail!("matmul inner dimensions differ: {sa:?} · {sb:?}");
    }
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    let batch = broadcast_shapes(ba, bb)?;
    let nb: usize = batch.iter().product();
    // Offsets of each batch's matrix: expand the batch index over each operand.
    let ia = expand_index(ba, &batch);
    let ib = expand_index(bb, &batch);
    let mut out = vec![T::default(); nb * m * n];
    if nb <= 1 || m * n == 0 {
        for (i, c) in out.chunks_mut((m * n).max(1)).enumerate().take(nb) {
            gemm_into(
                m,
                n,
                k,
                Mat::rows(&a[ia[i] * m * k..], k),
                Mat::rows(&b[ib[i] * k * n..], n),
                c,
                true,
            )?;
        }
    } else {
        out.par_chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, c)| {
                gemm_into(
                    m,
                    n,
                    k,
                    Mat::rows(&a[ia[i] * m * k..], k),
                    Mat::rows(&b[ib[i] * k * n..], n),
                    c,
                    false,
                )
            })?;
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Ok((shape, out))
}

fn batched_i64(a: &[i64], sa: &[usize], b: &[i64], sb: &[usize]) -> Result<(Vec<usize>, Vec<i64>)> {
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = (sa[ra - 2], sa[ra - 1]);
    let (k2, n) = (sb[rb - 2], sb[rb - 1]);
    if k != k2 {
        bail!("matmul inner dimensions differ: {sa:?} · {sb:?}");
    }
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    let batch = broadcast_shapes(ba, bb)?;
    let (ia, ib) = (expand_index(ba, &batch), expand_index(bb, &batch));
    let mut out = vec![0i64; ia.len() * m * n];
    for (bi, c) in out.chunks_mut((m * n).max(1)).enumerate().take(ia.len()) {
        let (pa, pb) = (&a[ia[bi] * m * k..], &b[ib[bi] * k * n..]);
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).fold(0i64, |s, t| {
                    s.wrapping_add(pa[i * k + t].wrapping_mul(pb[t * n + j]))
                });
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Ok((shape, out))
}

/// ONNX MatMul (numpy `matmul` semantics).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_dtype("matmul", a, b)?;
    if a.rank() == 0 || b.rank() == 0 {
        bail!(
            "matmul needs inputs of rank ≥ 1, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let mut sa = a.shape().to_vec();
    let mut sb = b.shape().to_vec();
    let (va, vb) = (sa.len() == 1, sb.len() == 1);
    if va {
        sa.insert(0, 1);
    }
    if vb {
        sb.push(1);
    }
    let (mut shape, data) = match (a.data(), b.data()) {
        (TensorData::F64(x), TensorData::F64(y)) => {
            let (s, v) = batched(x, &sa, y, &sb)?;
            (s, TensorData::F64(v))
        }
        _ if a.dtype().is_float() => {
            let (s, v) = batched(&a.f32_cow(), &sa, &b.f32_cow(), &sb)?;
            (s, TensorData::F32(v))
        }
        _ if a.dtype().is_int() => {
            let (s, v) = batched_i64(&i64_cow(a), &sa, &i64_cow(b), &sb)?;
            return finish_int(a.dtype(), s, v, va, vb);
        }
        _ => bail!("matmul is not defined for {} inputs", a.dtype()),
    };
    drop_vec_dims(&mut shape, va, vb);
    match data {
        TensorData::F32(v) => Tensor::from_f32_as(a.dtype(), shape, v),
        other => Tensor::new(DType::F64, shape, other),
    }
}

fn drop_vec_dims(shape: &mut Vec<usize>, va: bool, vb: bool) {
    if vb {
        shape.pop();
    }
    if va {
        let r = shape.len();
        shape.remove(r - if vb { 1 } else { 2 });
    }
}

fn finish_int(
    dtype: DType,
    mut shape: Vec<usize>,
    v: Vec<i64>,
    va: bool,
    vb: bool,
) -> Result<Tensor> {
    drop_vec_dims(&mut shape, va, vb);
    Tensor::from_i64_as(dtype, shape, v)
}

/// ONNX Gemm: `alpha · A' · B' + beta · C`, C broadcast to `[M, N]`.
pub fn gemm_op(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    g: &compc_ir::op::Gemm,
) -> Result<Tensor> {
    same_dtype("gemm", a, b)?;
    if !a.dtype().is_float() {
        bail!("gemm needs float inputs, got {}", a.dtype());
    }
    if a.rank() != 2 || b.rank() != 2 {
        bail!(
            "gemm needs 2-D inputs, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let (ar, ac) = (a.shape()[0], a.shape()[1]);
    let (br, bc) = (b.shape()[0], b.shape()[1]);
    let (m, k) = if g.trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if g.trans_b { (bc, br) } else { (br, bc) };
    if k != k2 {
        bail!(
            "gemm inner dimensions differ: A {:?} (transA={}) · B {:?} (transB={})",
            a.shape(),
            g.trans_a,
            b.shape(),
            g.trans_b
        );
    }
    let (av, bv) = (a.f32_cow(), b.f32_cow());
    let am = if g.trans_a {
        Mat::transposed(&av, ac)
    } else {
        Mat::rows(&av, ac)
    };
    let bm = if g.trans_b {
        Mat::transposed(&bv, bc)
    } else {
        Mat::rows(&bv, bc)
    };
    let mut y = vec![0f32; m * n];
    gemm_into(m, n, k, am, bm, &mut y, true)?;
    if g.alpha != 1.0 {
        y.iter_mut().for_each(|v| *v *= g.alpha);
    }
    if let Some(c) = c {
        let out = [m, n];
        if broadcast_shapes(c.shape(), &out)? != out {
            bail!(
                "gemm C of shape {:?} does not broadcast to [{m}, {n}]",
                c.shape()
            );
        }
        let cv = c.f32_cow();
        let idx = expand_index(c.shape(), &out);
        for (v, &i) in y.iter_mut().zip(&idx) {
            *v += g.beta * cv[i];
        }
    }
    Tensor::from_f32_as(a.dtype(), vec![m, n], y)
}

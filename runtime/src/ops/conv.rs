//! Conv and ConvTranspose for any number of spatial dims (1-D and 2-D in practice):
//! im2col + gemm per (image, group), the (image, group) blocks in parallel. ConvTranspose
//! is the adjoint: gemm with the transposed weight, then col2im scatter-add.

use crate::broadcast::cartesian_index;
use crate::error::{bail, Result};
use crate::ops::elementwise::same_dtype;
use crate::ops::matmul::{gemm_into, GemmElem, Mat};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Per-axis geometry shared by Conv, ConvTranspose and the pools.
#[derive(Clone, Debug)]
pub(crate) struct Geom {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dils: Vec<usize>,
    pub pb: Vec<usize>,
    pub pe: Vec<usize>,
}

fn list(v: &[i64], r: usize, default: usize, what: &str) -> Result<Vec<usize>> {
    if v.is_empty() {
        return Ok(vec![default; r]);
    }
    if v.len() != r || v.iter().any(|&x| x < 0 || (x == 0 && default == 1)) {
        bail!(
            "{what} {v:?} must have {r} {} values",
            if default == 1 {
                "positive"
            } else {
                "non-negative"
            }
        );
    }
    Ok(v.iter().map(|&x| x as usize).collect())
}

impl Geom {
    /// Resolves strides/dilations/pads (incl. `auto_pad`) for inputs of spatial shape `ins`.
    pub fn new(
        ins: &[usize],
        kernel: Vec<usize>,
        strides: &[i64],
        dils: &[i64],
        pads: &[i64],
        auto_pad: &str,
    ) -> Result<Geom> {
        let r = ins.len();
        let strides = list(strides, r, 1, "strides")?;
        let dils = list(dils, r, 1, "dilations")?;
        let (mut pb, mut pe) = if pads.is_empty() {
            (vec![0; r], vec![0; r])
        } else {
            let p = list(pads, 2 * r, 0, "pads")?;
            (p[..r].to_vec(), p[r..].to_vec())
        };
        match auto_pad {
            "NOTSET" | "" => {}
            "VALID" => {
                pb = vec![0; r];
                pe = vec![0; r];
            }
            "SAME_UPPER" | "SAME_LOWER" => {
                for d in 0..r {
                    let out = ins[d].div_ceil(strides[d]);
                    let ek = (kernel[d].max(1) - 1) * dils[d] + 1;
                    let total = ((out.max(1) - 1) * strides[d] + ek).saturating_sub(ins[d]);
                    let small = total / 2;
                    (pb[d], pe[d]) = if auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
            }
            other => bail!("unknown auto_pad `{other}`"),
        }
        Ok(Geom {
            kernel,
            strides,
            dils,
            pb,
            pe,
        })
    }

    /// Output spatial shape of a sliding window (Conv, pools); `ceil` rounds up but drops a
    /// last window that would start inside the end padding (PyTorch/ORT rule).
    pub fn out_shape(&self, ins: &[usize], ceil: bool) -> Result<Vec<usize>> {
        let mut out = Vec::with_capacity(ins.len());
        for d in 0..ins.len() {
            let ek = (self.kernel[d].max(1) - 1) * self.dils[d] + 1;
            let span = ins[d] + self.pb[d] + self.pe[d];
            if span < ek {
                bail!(
                    "kernel extent {ek} is larger than the padded input {span} on spatial axis {d}"
                );
            }
            let s = self.strides[d];
            let mut o = if ceil {
                (span - ek).div_ceil(s) + 1
            } else {
                (span - ek) / s + 1
            };
            if ceil && (o - 1) * s >= ins[d] + self.pb[d] {
                o -= 1;
            }
            out.push(o);
        }
        Ok(out)
    }

    /// For each kernel offset, the input-plane index read by every output position
    /// (`usize::MAX` in the padding).
    pub fn window_index(&self, ins: &[usize], outs: &[usize]) -> Vec<Vec<usize>> {
        let kn: usize = self.kernel.iter().product();
        let mut kk = vec![0usize; self.kernel.len()];
        let mut res = Vec::with_capacity(kn);
        for _ in 0..kn {
            let per_axis: Vec<Vec<usize>> = (0..ins.len())
                .map(|d| {
                    (0..outs[d])
                        .map(|o| {
                            let p = (o * self.strides[d] + kk[d] * self.dils[d]) as i64
                                - self.pb[d] as i64;
                            if p >= 0 && (p as usize) < ins[d] {
                                p as usize
                            } else {
                                usize::MAX
                            }
                        })
                        .collect()
                })
                .collect();
            res.push(cartesian_index(ins, &per_axis));
            for d in (0..kk.len()).rev() {
                kk[d] += 1;
                if kk[d] < self.kernel[d] {
                    break;
                }
                kk[d] = 0;
            }
        }
        res
    }
}

fn check_conv_inputs(x: &Tensor, w: &Tensor, b: Option<&Tensor>, what: &str) -> Result<()> {
    same_dtype(what, x, w)?;
    if !x.dtype().is_float() {
        bail!("{what} needs float inputs, got {}", x.dtype());
    }
    if x.rank() < 3 || w.rank() != x.rank() {
        bail!(
            "{what} needs X of rank ≥ 3 and W of the same rank, got {:?} and {:?}",
            x.shape(),
            w.shape()
        );
    }
    if let Some(b) = b {
        same_dtype(what, x, b)?;
    }
    Ok(())
}

fn kernel_of(w: &Tensor, attr: &[i64]) -> Result<Vec<usize>> {
    let k: Vec<usize> = w.shape()[2..].to_vec();
    if !attr.is_empty() && attr.iter().map(|&v| v as usize).ne(k.iter().copied()) {
        bail!("kernel_shape {attr:?} does not match the weight's spatial dims {k:?}");
    }
    Ok(k)
}

pub fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, a: &compc_ir::op::Conv) -> Result<Tensor> {
    check_conv_inputs(x, w, b, "conv")?;
    let bias = b.map(|b| b.f32_cow());
    let (shape, out) = conv_core(
        &x.f32_cow(),
        x.shape(),
        &w.f32_cow(),
        w.shape(),
        bias.as_deref(),
        a,
    )?;
    Tensor::from_f32_as(x.dtype(), shape, out)
}

/// The convolution of `xv` (shape `xs`) by `wv` (shape `ws`) in any gemm element type:
/// f32 for Conv, f64 for the integer convolutions (exact for their int32 sums).
pub(crate) fn conv_core<T: GemmElem + std::ops::AddAssign>(
    xv: &[T],
    xs: &[usize],
    wv: &[T],
    ws: &[usize],
    bias: Option<&[T]>,
    a: &compc_ir::op::Conv,
) -> Result<(Vec<usize>, Vec<T>)> {
    if xs.len() < 3 || ws.len() != xs.len() {
        bail!("conv needs X of rank ≥ 3 and W of the same rank, got {xs:?} and {ws:?}");
    }
    let (n, c) = (xs[0], xs[1]);
    let ins = &xs[2..];
    let m = ws[0];
    let g = usize::try_from(a.group).unwrap_or(0);
    if g == 0 || c % g != 0 || !m.is_multiple_of(g) || ws[1] * g != c {
        bail!("conv group {} does not fit C={c}, W {ws:?}", a.group);
    }
    let k: Vec<usize> = ws[2..].to_vec();
    if !a.kernel_shape.is_empty()
        && a.kernel_shape
            .iter()
            .map(|&v| v as usize)
            .ne(k.iter().copied())
    {
        bail!(
            "kernel_shape {:?} does not match the weight's spatial dims {k:?}",
            a.kernel_shape
        );
    }
    let kernel = k;
    let geom = Geom::new(
        ins,
        kernel.clone(),
        &a.strides,
        &a.dilations,
        &a.pads,
        &a.auto_pad,
    )?;
    let outs = geom.out_shape(ins, false)?;
    let (cg, mg) = (c / g, m / g);
    let kn: usize = kernel.iter().product();
    let (ip, op): (usize, usize) = (ins.iter().product(), outs.iter().product());
    let win = geom.window_index(ins, &outs);
    if let Some(bv) = bias {
        if bv.len() != m {
            bail!("conv bias has {} values for {m} output channels", bv.len());
        }
    }
    let mut out = vec![T::default(); n * m * op];
    let threads = n * g == 1;
    let block = |i: usize, dst: &mut [T]| -> Result<()> {
        let (ni, gi) = (i / g, i % g);
        let mut col = vec![T::default(); cg * kn * op];
        for ci in 0..cg {
            let plane = &xv[(ni * c + gi * cg + ci) * ip..][..ip];
            for (kk, idx) in win.iter().enumerate() {
                let row = &mut col[(ci * kn + kk) * op..][..op];
                for (r, &j) in row.iter_mut().zip(idx) {
                    *r = if j == usize::MAX {
                        T::default()
                    } else {
                        plane[j]
                    };
                }
            }
        }
        let wg = &wv[gi * mg * cg * kn..][..mg * cg * kn];
        gemm_into(
            mg,
            op,
            cg * kn,
            Mat::rows(wg, cg * kn),
            Mat::rows(&col, op),
            dst,
            threads,
        )?;
        if let Some(bv) = bias {
            for (mi, row) in dst.chunks_mut(op.max(1)).enumerate() {
                row.iter_mut().for_each(|v| *v += bv[gi * mg + mi]);
            }
        }
        Ok(())
    };
    if mg * op > 0 {
        out.par_chunks_mut(mg * op)
            .enumerate()
            .try_for_each(|(i, dst)| block(i, dst))?;
    }
    let mut shape = vec![n, m];
    shape.extend(outs);
    Ok((shape, out))
}

pub fn conv_transpose(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    a: &compc_ir::op::ConvTranspose,
) -> Result<Tensor> {
    check_conv_inputs(x, w, b, "conv_transpose")?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let ins = x.shape()[2..].to_vec();
    let r = ins.len();
    let g = usize::try_from(a.group).unwrap_or(0);
    if g == 0 || c % g != 0 || w.shape()[0] != c {
        bail!(
            "conv_transpose group {} does not fit C={c}, W {:?}",
            a.group,
            w.shape()
        );
    }
    let (cg, mg) = (c / g, w.shape()[1]);
    let m = mg * g;
    let kernel = kernel_of(w, &a.kernel_shape)?;
    let strides = list(&a.strides, r, 1, "strides")?;
    let dils = list(&a.dilations, r, 1, "dilations")?;
    let opad = list(&a.output_padding, r, 0, "output_padding")?;
    let full: Vec<usize> = (0..r)
        .map(|d| strides[d] * (ins[d].max(1) - 1) + opad[d] + (kernel[d].max(1) - 1) * dils[d] + 1)
        .collect();
    let (mut pb, mut pe) = if a.pads.is_empty() {
        (vec![0; r], vec![0; r])
    } else {
        let p = list(&a.pads, 2 * r, 0, "pads")?;
        (p[..r].to_vec(), p[r..].to_vec())
    };
    let target: Option<Vec<usize>> = if !a.output_shape.is_empty() {
        let os = &a.output_shape[a.output_shape.len().saturating_sub(r)..];
        Some(list(os, r, 0, "output_shape")?)
    } else if a.auto_pad.starts_with("SAME") {
        Some((0..r).map(|d| ins[d] * strides[d]).collect())
    } else {
        None
    };
    // With an explicit output size ORT pads by the (non-negative) excess; a larger target
    // just extends the output at the end with positions no input reaches.
    if let Some(t) = &target {
        for d in 0..r {
            let total = full[d].saturating_sub(t[d]);
            let half = total / 2;
            (pb[d], pe[d]) = if a.auto_pad == "SAME_UPPER" {
                (half, total - half)
            } else {
                (total - half, half)
            };
        }
    }
    let mut outs = Vec::with_capacity(r);
    for d in 0..r {
        match (&target, full[d].checked_sub(pb[d] + pe[d])) {
            (Some(t), _) => outs.push(t[d]),
            (None, Some(o)) => outs.push(o),
            (None, None) => bail!(
                "conv_transpose pads {:?}/{:?} exceed the output extent {}",
                pb,
                pe,
                full[d]
            ),
        }
    }
    let mut full_shape = vec![n, m];
    full_shape.extend(&outs);
    crate::tensor::checked_numel(&full_shape, "conv_transpose")?;
    let kn: usize = kernel.iter().product();
    let (ip, op): (usize, usize) = (ins.iter().product(), outs.iter().product());
    // Output-plane index each input position lands on for every kernel offset.
    let geom = Geom {
        kernel: kernel.clone(),
        strides,
        dils,
        pb,
        pe,
    };
    let scatter: Vec<Vec<usize>> = {
        let mut kk = vec![0usize; r];
        let mut res = Vec::with_capacity(kn);
        for _ in 0..kn {
            let per_axis: Vec<Vec<usize>> = (0..r)
                .map(|d| {
                    (0..ins[d])
                        .map(|i| {
                            let p = (i * geom.strides[d] + kk[d] * geom.dils[d]) as i64
                                - geom.pb[d] as i64;
                            if p >= 0 && (p as usize) < outs[d] {
                                p as usize
                            } else {
                                usize::MAX
                            }
                        })
                        .collect()
                })
                .collect();
            res.push(cartesian_index(&outs, &per_axis));
            for d in (0..r).rev() {
                kk[d] += 1;
                if kk[d] < kernel[d] {
                    break;
                }
                kk[d] = 0;
            }
        }
        res
    };
    let (xv, wv) = (x.f32_cow(), w.f32_cow());
    let bias = b.map(|b| b.f32_cow());
    if let Some(bv) = &bias {
        if bv.len() != m {
            bail!(
                "conv_transpose bias has {} values for {m} output channels",
                bv.len()
            );
        }
    }
    let mut out = vec![0f32; n * m * op];
    let threads = n * g == 1;
    let block = |i: usize, dst: &mut [f32]| -> Result<()> {
        let (ni, gi) = (i / g, i % g);
        let xg = &xv[(ni * c + gi * cg) * ip..][..cg * ip];
        let wg = &wv[gi * cg * mg * kn..][..cg * mg * kn];
        let mut cols = vec![0f32; mg * kn * ip];
        gemm_into(
            mg * kn,
            ip,
            cg,
            Mat::transposed(wg, mg * kn),
            Mat::rows(xg, ip),
            &mut cols,
            threads,
        )?;
        for mi in 0..mg {
            let plane = &mut dst[mi * op..][..op];
            for (kk, idx) in scatter.iter().enumerate() {
                let row = &cols[(mi * kn + kk) * ip..][..ip];
                for (&v, &j) in row.iter().zip(idx) {
                    if j != usize::MAX {
                        plane[j] += v;
                    }
                }
            }
            if let Some(bv) = &bias {
                plane.iter_mut().for_each(|v| *v += bv[gi * mg + mi]);
            }
        }
        Ok(())
    };
    if mg * op > 0 {
        out.par_chunks_mut(mg * op)
            .enumerate()
            .try_for_each(|(i, dst)| block(i, dst))?;
    }
    let mut shape = vec![n, m];
    shape.extend(outs);
    Tensor::from_f32_as(x.dtype(), shape, out)
}

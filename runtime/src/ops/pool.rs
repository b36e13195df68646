//! MaxPool, AveragePool (pads, dilations, ceil_mode, count_include_pad) and the global
//! pools, for any number of spatial dims; planes (image × channel) run in parallel.

use crate::error::{bail, Result};
use crate::ops::conv::Geom;
use crate::tensor::Tensor;
use compc_ir::op::Pool;
use compc_ir::DType;
use rayon::prelude::*;

fn setup(x: &Tensor, a: &Pool, what: &str) -> Result<(Geom, Vec<usize>)> {
    // MaxPool also takes 8-bit integers (exact in f32); AveragePool only floats.
    let int8 = what == "max_pool" && matches!(x.dtype(), DType::I8 | DType::U8);
    if !x.dtype().is_float() && !int8 {
        bail!("{what} needs a float input, got {}", x.dtype());
    }
    if x.rank() < 3 {
        bail!("{what} needs an input of rank ≥ 3, got {:?}", x.shape());
    }
    let ins = &x.shape()[2..];
    if a.kernel_shape.len() != ins.len() || a.kernel_shape.iter().any(|&k| k <= 0) {
        bail!(
            "{what} kernel_shape {:?} does not fit {} spatial dims",
            a.kernel_shape,
            ins.len()
        );
    }
    let kernel = a.kernel_shape.iter().map(|&k| k as usize).collect();
    let geom = Geom::new(ins, kernel, &a.strides, &a.dilations, &a.pads, &a.auto_pad)?;
    let outs = geom.out_shape(ins, a.ceil_mode)?;
    Ok((geom, outs))
}

pub fn max_pool(x: &Tensor, a: &Pool, num_outputs: usize) -> Result<Vec<Tensor>> {
    let (geom, outs) = setup(x, a, "max_pool")?;
    let ins = &x.shape()[2..];
    let (ip, op): (usize, usize) = (ins.iter().product(), outs.iter().product());
    let planes = x.shape()[0] * x.shape()[1];
    let win = geom.window_index(ins, &outs);
    let xv = x.f32_cow();
    let mut y = vec![f32::NEG_INFINITY; planes * op];
    let mut arg = vec![usize::MAX; planes * op];
    if op > 0 {
        y.par_chunks_mut(op)
            .zip(arg.par_chunks_mut(op))
            .enumerate()
            .for_each(|(p, (yd, ad))| {
                let plane = &xv[p * ip..][..ip];
                for idx in &win {
                    for ((o, a), &j) in yd.iter_mut().zip(ad.iter_mut()).zip(idx) {
                        // First maximum wins, like ORT; NaN propagates.
                        if j != usize::MAX
                            && (plane[j] > *o
                                || plane[j].is_nan() && !o.is_nan()
                                || *a == usize::MAX)
                        {
                            *o = plane[j];
                            *a = j;
                        }
                    }
                }
            });
    }
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(&outs);
    let mut res = vec![Tensor::from_f32_as(x.dtype(), shape.clone(), y)?];
    if num_outputs > 1 {
        let col_major = a.storage_order == 1;
        let idx = arg
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let p = i / op.max(1);
                let j = if j == usize::MAX { 0 } else { j };
                let within = if col_major && ins.len() == 2 {
                    (j % ins[1]) * ins[0] + j / ins[1]
                } else {
                    j
                };
                (p * ip + within) as i64
            })
            .collect();
        res.push(Tensor::from_i64(shape, idx));
    }
    Ok(res)
}

pub fn average_pool(x: &Tensor, a: &Pool) -> Result<Tensor> {
    let (geom, outs) = setup(x, a, "average_pool")?;
    let ins = &x.shape()[2..];
    let (ip, op): (usize, usize) = (ins.iter().product(), outs.iter().product());
    let planes = x.shape()[0] * x.shape()[1];
    let win = geom.window_index(ins, &outs);
    // With count_include_pad the divisor counts window taps inside the padded extent
    // (not those past it in ceil mode); otherwise only taps inside the input.
    let divisor: Vec<f32> = if a.count_include_pad {
        let per_axis: Vec<Vec<usize>> = (0..ins.len())
            .map(|d| {
                let span = ins[d] + geom.pb[d] + geom.pe[d];
                (0..outs[d])
                    .map(|o| {
                        (0..geom.kernel[d])
                            .filter(|&k| o * geom.strides[d] + k * geom.dils[d] < span)
                            .count()
                    })
                    .collect()
            })
            .collect();
        let mut div = vec![1f32; op];
        let mut idx = vec![0usize; outs.len()];
        for dv in div.iter_mut() {
            *dv = (0..outs.len())
                .map(|d| per_axis[d][idx[d]])
                .product::<usize>() as f32;
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < outs[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        div
    } else {
        let mut div = vec![0f32; op];
        for idx in &win {
            for (dv, &j) in div.iter_mut().zip(idx) {
                if j != usize::MAX {
                    *dv += 1.0;
                }
            }
        }
        div
    };
    let xv = x.f32_cow();
    let mut y = vec![0f32; planes * op];
    if op > 0 {
        y.par_chunks_mut(op).enumerate().for_each(|(p, yd)| {
            let plane = &xv[p * ip..][..ip];
            for idx in &win {
                for (o, &j) in yd.iter_mut().zip(idx) {
                    if j != usize::MAX {
                        *o += plane[j];
                    }
                }
            }
            for (o, &dv) in yd.iter_mut().zip(&divisor) {
                *o /= dv;
            }
        });
    }
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(&outs);
    Tensor::from_f32_as(x.dtype(), shape, y)
}

pub fn global_pool(x: &Tensor, max: bool) -> Result<Tensor> {
    if !x.dtype().is_float() || x.rank() < 2 {
        bail!(
            "global pool needs a float input of rank ≥ 2, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let ip: usize = x.shape()[2..].iter().product();
    let planes = x.shape()[0] * x.shape()[1];
    let xv = x.f32_cow();
    let y: Vec<f32> = (0..planes)
        .into_par_iter()
        .map(|p| {
            let plane = &xv[p * ip..][..ip];
            if max {
                plane.iter().copied().fold(f32::NEG_INFINITY, |a, b| {
                    if b > a || b.is_nan() {
                        b
                    } else {
                        a
                    }
                })
            } else {
                (plane.iter().map(|&v| v as f64).sum::<f64>() / ip as f64) as f32
            }
        })
        .collect();
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, x.rank() - 2));
    Tensor::from_f32_as(x.dtype(), shape, y)
}

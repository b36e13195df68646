// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::{Conv, ConvTranspose, Pool};
use compc_ir::Op;
use compc_runtime::Tensor;

/// Direct definition of a 2-D convolution.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: usize,
    s: [usize; 2],
    d: [usize; 2],
    p: [usize; 4],
) -> (Vec<usize>, Vec<f32>) {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let oh = (h + p[0] + p[2] - ((kh - 1) * d[0] + 1)) / s[0] + 1;
    let ow = (wd + p[1] + p[3] - ((kw - 1) * d[1] + 1)) / s[1] + 1;
    let (xv, wv) = (x.to_f32_vec(), w.to_f32_vec());
    let bv = b.map(|b| b.to_f32_vec());
    let mg = m / g;
    let mut out = vec![0f32; n * m * oh * ow];
    for ni in 0..n {
        for mi in 0..m {
            let gi = mi / mg;
            for yi in 0..oh {
                for xi in 0..ow {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[mi]) as f64;
                    for ci in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (yi * s[0] + ky * d[0]) as i64 - p[0] as i64;
                                let ix = (xi * s[1] + kx * d[1]) as i64 - p[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xc = gi * cg + ci;
                                acc += (xv[((ni * c + xc) * h + iy as usize) * wd + ix as usize]
                                    * wv[((mi * cg + ci) * kh + ky) * kw + kx])
                                    as f64;
                            }
                        }
                    }
                    out[((ni * m + mi) * oh + yi) * ow + xi] = acc as f32;
                }
            }
        }
    }
    (vec![n, m, oh, ow], out)
}

/// (batch, in channels, out channels, group, strides, dilations, pads).
type Case = (
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 4],
);

#[test]
fn conv2d_matches_naive_with_groups_pads_strides_dilations() {
    let cases: &[Case] = &[
        (2, 4, 6, 1, [1, 1], [1, 1], [0, 0, 0, 0]),
        (1, 4, 6, 2, [2, 1], [1, 2], [1, 0, 2, 1]),
        (2, 6, 6, 6, [1, 2], [1, 1], [1, 1, 1, 1]), // depthwise
        (1, 3, 5, 1, [3, 3], [2, 2], [2, 2, 2, 2]),
    ];
    for (k, &(n, c, m, g, s, d, p)) in cases.iter().enumerate() {
        let (h, w_, kh, kw) = (9, 8, 3, 2);
        let x = f(&[n, c, h, w_], &rand_vec(n * c * h * w_, 11 + k as u64));
        let w = f(
            &[m, c / g, kh, kw],
            &rand_vec(m * (c / g) * kh * kw, 21 + k as u64),
        );
        let b = f(&[m], &rand_vec(m, 31 + k as u64));
        let op = Op::Conv(Conv {
            group: g as i64,
            strides: s.iter().map(|&v| v as i64).collect(),
            dilations: d.iter().map(|&v| v as i64).collect(),
            pads: p.iter().map(|&v| v as i64).collect(),
            ..Default::default()
        });
        let y = eval(&op, &[&x, &w, &b]);
        let (shape, want) = naive_conv(&x, &w, Some(&b), g, s, d, p);
        assert_eq!(y.shape(), shape.as_slice(), "case {k}");
        assert!(rel_err(&y.to_f32_vec(), &want) < 1e-5, "case {k}");
    }
}

#[test]
fn conv1d_and_same_padding() {
    let x = f(&[1, 1, 5], &[1., 2., 3., 4., 5.]);
    let w = f(&[1, 1, 3], &[1., 0., -1.]);
    let y = eval(
        &Op::Conv(Conv {
            auto_pad: "SAME_UPPER".into(),
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 5], &[-2., -2., -2., -2., 4.], 0.0);
    let y = eval(
        &Op::Conv(Conv {
            strides: vec![2],
            ..Default::default()
        }),
        &[&x, &w],
    );
    assert_close(&y, &[1, 1, 2], &[-2., -2.], 0.0);
}

#[test]
fn conv_transpose_matches_onnxruntime() {
    let xc = f(&[1, 2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let wv: Vec<f32> = (1..=24).map(|v| v as f32 / 10.0).collect();
    let w = f(&[2, 3, 2, 2], &wv);
    let op = Op::ConvTranspose(ConvTranspose {
        strides: vec![2, 2],
        pads: vec![0, 1, 1, 0],
        output_padding: vec![1, 1],
        ..Default::default()
    });
    let want = [
        7.2, 8., 8.8, 0., 8.400001, 9.6, 10.4, 0., 10.4, 10.8, 12., 0., 12.4, 13.2, 14.4, 0.,
        9.599999, 11.2, 12., 0., 10.8, 12.8, 13.6, 0., 14.4, 15.6, 16.8, 0., 16.4, 18., 19.2, 0.,
        12., 14.4, 15.2, 0., 13.2, 16., 16.8, 0., 18.4, 20.4, 21.6, 0., 20.4, 22.8, 24., 0.,
    ];
    assert_close(&eval(&op, &[&xc, &w]), &[1, 3, 4, 4], &want, 1e-5);
    let b = f(&[3], &[1., 2., 3.]);
    let op = Op::ConvTranspose(ConvTranspose {
        strides: vec![2, 2],
        output_shape: vec![4, 5],
        auto_pad: "SAME_UPPER".into(),
        ..Default::default()
    });
    let want = [
        7.6, 8.2, 9., 9.8, 1., 8.8, 9.400001, 10.6, 11.4, 1., 10.4, 11.4, 11.8, 13., 1., 12.4,
        13.4, 14.2, 15.4, 1., 11., 11.6, 13.2, 14., 2., 12.2, 12.8, 14.8, 15.6, 2., 15.4, 16.4,
        17.6, 18.8, 2., 17.4, 18.4, 20., 21.2, 2., 14.4, 15., 17.4, 18.2, 3., 15.6, 16.2, 19.,
        19.8, 3., 20.4, 21.4, 23.4, 24.6, 3., 22.4, 23.4, 25.8, 27., 3.,
    ];
    assert_close(&eval(&op, &[&xc, &w, &b]), &[1, 3, 4, 5], &want, 1e-5);
    let w2 = f(&[2, 1, 2, 2], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    let op = Op::ConvTranspose(ConvTranspose {
        group: 2,
        dilations: vec![2, 2],
        ..Default::default()
    });
    let want = [
        0.1, 0.2, 0.2, 0.4, 0.3, 0.4, 0.6, 0.8, 0.3, 0.6, 0.4, 0.8, 0.9, 1.2, 1.2, 1.6, 2.5, 3.,
        3., 3.6, 3.5, 4., 4.2, 4.8, 3.5, 4.2, 4., 4.8, 4.9, 5.6, 5.6, 6.4,
    ];
    assert_close(&eval(&op, &[&xc, &w2]), &[1, 2, 4, 4], &want, 1e-5);
}

fn x5() -> Tensor {
    f(
        &[1, 1, 5, 5],
        &(1..=25).map(|v| v as f32).collect::<Vec<_>>(),
    )
}

fn pool(k: &[i64], s: &[i64], pads: &[i64], ceil: bool, incl: bool) -> Pool {
    Pool {
        kernel_shape: k.to_vec(),
        strides: s.to_vec(),
        pads: pads.to_vec(),
        ceil_mode: ceil,
        count_include_pad: incl,
        ..Default::default()
    }
}

#[test]
fn pools_ceil_mode_and_padding_match_onnxruntime() {
    let x = x5();
    let y = eval(
        &Op::MaxPool(pool(&[3, 3], &[2, 2], &[], true, false)),
        &[&x],
    );
    assert_close(&y, &[1, 1, 2, 2], &[13., 15., 23., 25.], 0.0);
    let y = eval(
        &Op::AveragePool(pool(&[3, 3], &[2, 2], &[1, 1, 1, 1], true, true)),
        &[&x],
    );
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[
            1.777778, 3.666667, 3.111111, 7.666667, 13., 9.666667, 8.444445, 13.66667, 9.777778,
        ],
        1e-6,
    );
    let y = eval(
        &Op::AveragePool(pool(&[3, 3], &[2, 2], &[1, 1, 1, 1], true, false)),
        &[&x],
    );
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[4., 5.5, 7., 11.5, 13., 14.5, 19., 20.5, 22.],
        1e-6,
    );
    let y = eval(
        &Op::AveragePool(pool(&[2, 2], &[2, 2], &[], true, false)),
        &[&x],
    );
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[4., 6., 7.5, 14., 16., 17.5, 21.5, 23.5, 25.],
        1e-6,
    );
    let mut p = pool(&[3, 3], &[2, 2], &[], false, false);
    p.auto_pad = "SAME_UPPER".into();
    let y = eval(&Op::AveragePool(p), &[&x]);
    assert_close(
        &y,
        &[1, 1, 3, 3],
        &[4., 5.5, 7., 11.5, 13., 14.5, 19., 20.5, 22.],
        1e-6,
    );
    let mut p = pool(&[2, 2], &[1, 1], &[1, 1, 0, 0], false, false);
    p.dilations = vec![2, 2];
    let r = eval_n(&Op::MaxPool(p), &[Some(&x)], 2);
    assert_close(
        &r[0],
        &[1, 1, 4, 4],
        &[
            7., 8., 9., 10., 12., 13., 14., 15., 17., 18., 19., 20., 22., 23., 24., 25.,
        ],
        0.0,
    );
    assert_eq!(
        r[1].as_i64().unwrap(),
        &[6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 24]
    );
}

#[test]
fn global_pools() {
    let x = f(&[1, 2, 2, 2], &[1., 2., 3., 4., -1., -2., -3., -8.]);
    assert_close(
        &eval(&Op::GlobalAveragePool, &[&x]),
        &[1, 2, 1, 1],
        &[2.5, -3.5],
        0.0,
    );
    assert_close(
        &eval(&Op::GlobalMaxPool, &[&x]),
        &[1, 2, 1, 1],
        &[4., -1.],
        0.0,
    );
}

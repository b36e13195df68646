// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::attr::Literal;
use compc_ir::op::{
    Axes, Axis0, Concat, ConstantOfShape, DepthToSpace, Flatten, GatherNd, OneHot, Pad, Reshape,
    Resize, RouterTopK, Scatter, ScatterNd, ShapeOf, SpaceToDepth, Split, Transpose, Trilu,
};
use compc_ir::{DType, Op};
use compc_runtime::Tensor;

#[test]
fn slice_with_negative_steps_clamping_and_sentinels() {
    let x = f(&[2, 5], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    // x[:, ::-2]
    let y = eval(
        &Op::Slice,
        &[
            &x,
            &i(&[1], &[-1]),
            &i(&[1], &[i64::MIN]),
            &i(&[1], &[1]),
            &i(&[1], &[-2]),
        ],
    );
    assert_close(&y, &[2, 3], &[4., 2., 0., 9., 7., 5.], 0.0);
    // x[1:, 1:INT64_MAX] and out-of-range starts clamp.
    let y = eval(
        &Op::Slice,
        &[&x, &i(&[2], &[1, 1]), &i(&[2], &[100, i64::MAX])],
    );
    assert_close(&y, &[1, 4], &[6., 7., 8., 9.], 0.0);
    // x[:, 3:0:-1]
    let y = eval(
        &Op::Slice,
        &[
            &x,
            &i(&[1], &[3]),
            &i(&[1], &[0]),
            &i(&[1], &[-1]),
            &i(&[1], &[-1]),
        ],
    );
    assert_close(&y, &[2, 3], &[3., 2., 1., 8., 7., 6.], 0.0);
    // Empty result.
    let y = eval(
        &Op::Slice,
        &[&x, &i(&[1], &[4]), &i(&[1], &[2]), &i(&[1], &[1])],
    );
    assert_eq!(y.shape(), &[2, 0]);
}

#[test]
fn reshape_transpose_squeeze_flatten() {
    let x = f(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>());
    let y = eval(
        &Op::Reshape(Reshape::default()),
        &[&x, &i(&[3], &[0, -1, 2])],
    );
    assert_eq!(y.shape(), &[2, 6, 2]);
    assert!(
        eval_err(&Op::Reshape(Reshape::default()), &[&x, &i(&[2], &[5, -1])])
            .contains("cannot infer")
    );
    let t = eval(
        &Op::Transpose(Transpose {
            perm: Some(vec![2, 0, 1]),
        }),
        &[&x],
    );
    assert_eq!(t.shape(), &[4, 2, 3]);
    assert_close(
        &t,
        &[4, 2, 3],
        &[
            0., 4., 8., 12., 16., 20., 1., 5., 9., 13., 17., 21., 2., 6., 10., 14., 18., 22., 3.,
            7., 11., 15., 19., 23.,
        ],
        0.0,
    );
    let u = eval(
        &Op::Unsqueeze(Axes { axes: None }),
        &[&x, &i(&[2], &[0, -1])],
    );
    assert_eq!(u.shape(), &[1, 2, 3, 4, 1]);
    let s = eval(&Op::Squeeze(Axes { axes: None }), &[&u]);
    assert_eq!(s.shape(), &[2, 3, 4]);
    assert!(eval_err(
        &Op::Squeeze(Axes {
            axes: Some(vec![1])
        }),
        &[&u]
    )
    .contains("not 1"));
    assert_eq!(
        eval(&Op::Flatten(Flatten { axis: 2 }), &[&x]).shape(),
        &[6, 4]
    );
    assert_eq!(
        eval(&Op::Flatten(Flatten { axis: 0 }), &[&x]).shape(),
        &[1, 24]
    );
}

#[test]
fn concat_split_expand_tile_shape() {
    let a = i(&[2, 1], &[1, 2]);
    let b = i(&[2, 2], &[3, 4, 5, 6]);
    let c = eval(&Op::Concat(Concat { axis: -1 }), &[&a, &b]);
    assert_eq!(
        (c.shape(), c.as_i64().unwrap()),
        (&[2usize, 3][..], &[1i64, 3, 4, 2, 5, 6][..])
    );
    let parts = eval_n(
        &Op::Split(Split {
            axis: 1,
            ..Default::default()
        }),
        &[Some(&c), Some(&i(&[2], &[2, 1]))],
        2,
    );
    assert_eq!(parts[0].as_i64().unwrap(), &[1, 3, 2, 5]);
    assert_eq!(parts[1].as_i64().unwrap(), &[4, 6]);
    let v = f(&[5], &[1., 2., 3., 4., 5.]);
    let parts = eval_n(
        &Op::Split(Split {
            num_outputs: Some(2),
            ..Default::default()
        }),
        &[Some(&v)],
        2,
    );
    assert_eq!(
        (parts[0].shape(), parts[1].shape()),
        (&[3usize][..], &[2usize][..])
    );
    let e = eval(&Op::Expand, &[&a, &i(&[3], &[2, 1, 3])]);
    assert_eq!(
        (e.shape(), e.as_i64().unwrap()),
        (
            &[2usize, 2, 3][..],
            &[1i64, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2][..]
        )
    );
    let t = eval(&Op::Tile, &[&a, &i(&[2], &[2, 2])]);
    assert_eq!(
        (t.shape(), t.as_i64().unwrap()),
        (&[4usize, 2][..], &[1i64, 1, 2, 2, 1, 1, 2, 2][..])
    );
    let s = eval(
        &Op::Shape(ShapeOf {
            start: 1,
            end: None,
        }),
        &[&e],
    );
    assert_eq!(s.as_i64().unwrap(), &[2, 3]);
    assert_eq!(eval(&Op::Size, &[&e]).as_i64().unwrap(), &[12]);
    let lit = Literal {
        dtype: DType::I64,
        dims: vec![1],
        bytes: 7i64.to_le_bytes().to_vec(),
    };
    let k = eval(
        &Op::ConstantOfShape(ConstantOfShape { value: Some(lit) }),
        &[&i(&[2], &[2, 2])],
    );
    assert_eq!(k.as_i64().unwrap(), &[7, 7, 7, 7]);
    let r = eval(&Op::Range, &[&i(&[], &[10]), &i(&[], &[0]), &i(&[], &[-3])]);
    assert_eq!(r.as_i64().unwrap(), &[10, 7, 4, 1]);
    let r = eval(
        &Op::Range,
        &[&f(&[], &[0.]), &f(&[], &[1.]), &f(&[], &[0.25])],
    );
    assert_close(&r, &[4], &[0., 0.25, 0.5, 0.75], 0.0);
}

#[test]
fn trilu_pad_depth_space() {
    let m = f(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    assert_close(
        &eval(&Op::Trilu(Trilu { upper: true }), &[&m]),
        &[3, 3],
        &[1., 2., 3., 0., 5., 6., 0., 0., 9.],
        0.0,
    );
    assert_close(
        &eval(&Op::Trilu(Trilu { upper: false }), &[&m, &i(&[], &[-1])]),
        &[3, 3],
        &[0., 0., 0., 4., 0., 0., 7., 8., 0.],
        0.0,
    );
    let v = f(&[1, 4], &[1., 2., 3., 4.]);
    let pads = i(&[4], &[0, 2, 0, 3]);
    let y = eval(
        &Op::Pad(Pad {
            mode: "reflect".into(),
        }),
        &[&v, &pads],
    );
    assert_close(&y, &[1, 9], &[3., 2., 1., 2., 3., 4., 3., 2., 1.], 0.0);
    let y = eval(
        &Op::Pad(Pad {
            mode: "edge".into(),
        }),
        &[&v, &pads],
    );
    assert_close(&y, &[1, 9], &[1., 1., 1., 2., 3., 4., 4., 4., 4.], 0.0);
    let y = eval(
        &Op::Pad(Pad::default()),
        &[&v, &i(&[2], &[1, -1]), &f(&[], &[9.]), &i(&[1], &[1])],
    );
    assert_close(&y, &[1, 4], &[9., 1., 2., 3.], 0.0);
    let x = f(&[1, 8, 1, 1], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let d = eval(
        &Op::DepthToSpace(DepthToSpace {
            blocksize: 2,
            mode: "DCR".into(),
        }),
        &[&x],
    );
    assert_close(&d, &[1, 2, 2, 2], &[0., 2., 4., 6., 1., 3., 5., 7.], 0.0);
    let c = eval(
        &Op::DepthToSpace(DepthToSpace {
            blocksize: 2,
            mode: "CRD".into(),
        }),
        &[&x],
    );
    assert_close(&c, &[1, 2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.], 0.0);
    let back = eval(&Op::SpaceToDepth(SpaceToDepth { blocksize: 2 }), &[&d]);
    assert_close(&back, &[1, 8, 1, 1], &[0., 1., 2., 3., 4., 5., 6., 7.], 0.0);
}

#[test]
fn gathers_and_scatters() {
    let x = f(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    let g = eval(&Op::Gather(Axis0 { axis: 0 }), &[&x, &i(&[2, 1], &[2, -3])]);
    assert_close(&g, &[2, 1, 2], &[5., 6., 1., 2.], 0.0);
    assert!(
        eval_err(&Op::Gather(Axis0 { axis: 0 }), &[&x, &i(&[1], &[3])]).contains("out of range")
    );
    let ge = eval(
        &Op::GatherElements(Axis0 { axis: 1 }),
        &[&x, &i(&[3, 1], &[1, 0, 1])],
    );
    assert_close(&ge, &[3, 1], &[2., 3., 6.], 0.0);
    let nd = eval(
        &Op::GatherNd(GatherNd { batch_dims: 0 }),
        &[&x, &i(&[2, 2], &[0, 1, 2, 0])],
    );
    assert_close(&nd, &[2], &[2., 5.], 0.0);
    let b = f(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let nd = eval(
        &Op::GatherNd(GatherNd { batch_dims: 1 }),
        &[&b, &i(&[2, 1], &[1, 0])],
    );
    assert_close(&nd, &[2, 2], &[2., 3., 4., 5.], 0.0);
    let s = eval(
        &Op::ScatterNd(ScatterNd::default()),
        &[&x, &i(&[1, 1], &[1]), &f(&[1, 2], &[9., 9.])],
    );
    assert_close(&s, &[3, 2], &[1., 2., 9., 9., 5., 6.], 0.0);
    let s = eval(
        &Op::ScatterNd(ScatterNd {
            reduction: "add".into(),
        }),
        &[&x, &i(&[2, 2], &[0, 0, 0, 0]), &f(&[2], &[10., 20.])],
    );
    assert_close(&s, &[3, 2], &[31., 2., 3., 4., 5., 6.], 0.0);
    let s = eval(
        &Op::ScatterElements(Scatter {
            axis: 1,
            reduction: "none".into(),
        }),
        &[&x, &i(&[3, 1], &[1, 0, 1]), &f(&[3, 1], &[-1., -2., -3.])],
    );
    assert_close(&s, &[3, 2], &[1., -1., -2., 4., 5., -3.], 0.0);
    let oh = eval(
        &Op::OneHot(OneHot { axis: -1 }),
        &[&i(&[3], &[0, 2, -1]), &i(&[], &[3]), &f(&[2], &[0., 5.])],
    );
    assert_close(&oh, &[3, 3], &[5., 0., 0., 0., 0., 5., 0., 0., 5.], 0.0);
    let nz = eval(&Op::NonZero, &[&f(&[2, 2], &[0., 1., 2., 0.])]);
    assert_eq!(
        (nz.shape(), nz.as_i64().unwrap()),
        (&[2usize, 2][..], &[0i64, 1, 1, 0][..])
    );
}

#[test]
fn router_top_k_returns_sorted_positions() {
    let s = f(&[2, 5], &[0.1, 0.9, 0.3, 0.9, 0.0, 5., 4., 3., 2., 1.]);
    let y = eval(&Op::RouterTopK(RouterTopK { capacity: 0.5 }), &[&s]);
    // ceil(0.5 · 5) = 3 tokens, in original order; ties by lower index.
    assert_eq!(
        (y.shape(), y.as_i64().unwrap()),
        (&[2usize, 3][..], &[1i64, 2, 3, 0, 1, 2][..])
    );
    let y = eval(&Op::RouterTopK(RouterTopK { capacity: 1.0 }), &[&s]);
    assert_eq!(y.as_i64().unwrap(), &[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    assert_eq!(compc_runtime::router_k(0.125, 16), 2);
    assert_eq!(compc_runtime::router_k(0.0, 16), 0);
}

fn resize(mode: &str, ctm: &str) -> Op {
    Op::Resize(Resize {
        mode: mode.into(),
        coordinate_transformation_mode: ctm.into(),
        ..Default::default()
    })
}

#[test]
fn resize_matches_onnxruntime() {
    let x = f(
        &[1, 1, 4, 4],
        &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let scales = f(&[4], &[1., 1., 0.75, 1.5]);
    let cases: [(&str, &str, [f32; 18]); 6] = [
        (
            "linear",
            "half_pixel",
            [
                1.666667, 2.166667, 2.833333, 3.5, 4.166667, 4.666667, 7., 7.5, 8.166666, 8.833334,
                9.5, 10., 12.33333, 12.83333, 13.5, 14.16667, 14.83333, 15.33333,
            ],
        ),
        (
            "cubic",
            "half_pixel",
            [
                1.417825, 1.910879, 2.717595, 3.291668, 4.09838, 4.591436, 6.913198, 7.40625,
                8.212967, 8.787039, 9.59375, 10.08681, 12.40857, 12.90162, 13.70834, 14.28241,
                15.08912, 15.58218,
            ],
        ),
        (
            "linear",
            "asymmetric",
            [
                1., 1.666667, 2.333333, 3., 3.666667, 4., 6.333333, 7., 7.666667, 8.333334, 9.,
                9.333333, 11.66667, 12.33333, 13., 13.66667, 14.33333, 14.66667,
            ],
        ),
        (
            "cubic",
            "asymmetric",
            [
                1., 1.574074, 2.370369, 3., 3.740741, 4.111113, 6.481478, 7.055555, 7.851846,
                8.481478, 9.22222, 9.592592, 11.96297, 12.53704, 13.33333, 13.96297, 14.70371,
                15.07408,
            ],
        ),
        (
            "linear",
            "align_corners",
            [
                1., 1.6, 2.2, 2.8, 3.4, 4., 7., 7.6, 8.2, 8.799999, 9.4, 10., 13., 13.6, 14.2,
                14.8, 15.4, 16.,
            ],
        ),
        (
            "cubic",
            "align_corners",
            [
                1., 1.504, 2.248002, 2.752, 3.496, 4., 7., 7.503998, 8.248004, 8.752004, 9.495998,
                10., 13., 13.50399, 14.24801, 14.75201, 15.496, 16.,
            ],
        ),
    ];
    for (mode, ctm, want) in cases {
        let y = eval_n(&resize(mode, ctm), &[Some(&x), None, Some(&scales)], 1);
        assert_eq!(y[0].shape(), &[1, 1, 3, 6], "{mode} {ctm}");
        assert_close(&y[0], &[1, 1, 3, 6], &want, 1e-5);
    }
    let xn = f(&[1, 1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
    let sizes = i(&[4], &[1, 1, 5, 4]);
    let cases: [(&str, [f32; 20]); 4] = [
        (
            "round_prefer_floor",
            [
                1., 2., 2., 3., 1., 2., 2., 3., 1., 2., 2., 3., 4., 5., 5., 6., 4., 5., 5., 6.,
            ],
        ),
        (
            "round_prefer_ceil",
            [
                1., 2., 2., 3., 1., 2., 2., 3., 4., 5., 5., 6., 4., 5., 5., 6., 4., 5., 5., 6.,
            ],
        ),
        (
            "floor",
            [
                1., 1., 2., 3., 1., 1., 2., 3., 1., 1., 2., 3., 1., 1., 2., 3., 4., 4., 5., 6.,
            ],
        ),
        (
            "ceil",
            [
                1., 2., 3., 3., 4., 5., 6., 6., 4., 5., 6., 6., 4., 5., 6., 6., 4., 5., 6., 6.,
            ],
        ),
    ];
    for (nm, want) in cases {
        let op = Op::Resize(Resize {
            nearest_mode: nm.into(),
            ..Default::default()
        });
        let y = eval_n(&op, &[Some(&xn), None, None, Some(&sizes)], 1);
        assert_close(&y[0], &[1, 1, 5, 4], &want, 0.0);
    }
    let op = Op::Resize(Resize {
        nearest_mode: "floor".into(),
        coordinate_transformation_mode: "asymmetric".into(),
        ..Default::default()
    });
    let y = eval_n(
        &op,
        &[Some(&xn), None, Some(&f(&[4], &[1., 1., 2., 2.]))],
        1,
    );
    assert_close(
        &y[0],
        &[1, 1, 4, 6],
        &[
            1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3., 4., 4., 5., 5., 6., 6., 4., 4., 5., 5.,
            6., 6.,
        ],
        0.0,
    );
    let op = Op::Resize(Resize {
        mode: "cubic".into(),
        exclude_outside: true,
        cubic_coeff_a: -0.5,
        ..Default::default()
    });
    let y = eval_n(
        &op,
        &[Some(&x), None, None, Some(&i(&[4], &[1, 1, 3, 2]))],
        1,
    );
    assert_close(
        &y[0],
        &[1, 1, 3, 2],
        &[1.823142, 3.999613, 7.411766, 9.588235, 13.00039, 15.17686],
        1e-5,
    );
    let op = Op::Resize(Resize {
        mode: "linear".into(),
        axes: Some(vec![2, 3]),
        keep_aspect_ratio_policy: "not_larger".into(),
        ..Default::default()
    });
    let y = eval_n(&op, &[Some(&x), None, None, Some(&i(&[2], &[3, 3]))], 1);
    assert_close(
        &y[0],
        &[1, 1, 3, 3],
        &[
            1.833333, 3.166667, 4.5, 7.166667, 8.5, 9.833333, 12.5, 13.83333, 15.16667,
        ],
        1e-5,
    );
    // Nearest works on integers too.
    let xi = Tensor::from_i64(vec![1, 2], vec![3, 4]);
    let y = eval_n(
        &Op::Resize(Resize::default()),
        &[Some(&xi), None, Some(&f(&[2], &[1., 2.]))],
        1,
    );
    assert_eq!(y[0].as_i64().unwrap(), &[3, 3, 4, 4]);
}

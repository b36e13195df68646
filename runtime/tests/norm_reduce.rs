// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::{
    ArgReduce, Axis, CumSum, GroupNorm, InstanceNorm, Norm, Reduce, ReduceOp, TopK,
};
use compc_ir::Op;

fn xg() -> compc_runtime::Tensor {
    f(
        &[2, 4, 3],
        &(1..=24).map(|v| (v as f32).powf(1.5)).collect::<Vec<_>>(),
    )
}

#[test]
fn softmax_rows_sum_to_one_on_any_axis() {
    let x = f(
        &[3, 4, 5],
        &rand_vec(60, 40)
            .iter()
            .map(|v| v * 10.0)
            .collect::<Vec<_>>(),
    );
    for axis in [-1i64, 0, 1] {
        let y = eval(&Op::Softmax(Axis { axis }), &[&x]);
        let r = eval(
            &Op::Reduce(
                ReduceOp::Sum,
                Reduce {
                    axes: Some(vec![axis]),
                    keepdims: false,
                    noop_with_empty_axes: false,
                },
            ),
            &[&y],
        );
        for s in r.to_f32_vec() {
            assert!((s - 1.0).abs() < 1e-6, "axis {axis}: {s}");
        }
    }
    let v = f(&[1, 3], &[1., 2., 3.]);
    assert_close(
        &eval(&Op::LogSoftmax(Axis { axis: 1 }), &[&v]),
        &[1, 3],
        &[-2.4076059, -1.4076059, -0.4076059],
        1e-6,
    );
    let h = f(&[2, 3], &[1., 3., 3., 0., -1., -2.]);
    assert_close(
        &eval(&Op::Hardmax(Axis { axis: -1 }), &[&h]),
        &[2, 3],
        &[0., 1., 0., 1., 0., 0.],
        0.0,
    );
}

#[test]
fn layer_rms_group_instance_norm_match_onnxruntime() {
    let x = xg();
    let (sc, bi) = (f(&[3], &[1., 2., 3.]), f(&[3], &[0., 0.5, 1.]));
    let r = eval_n(
        &Op::LayerNorm(Norm::default()),
        &[Some(&x), Some(&sc), Some(&bi)],
        3,
    );
    let want = [
        -1.16906, 0.2907, 4.82113, -1.20374, 0.4180405, 4.734159, -1.211768, 0.4488944, 4.711963,
        -1.215354, 0.462856, 4.701773, -1.217386, 0.4708252, 4.69592, -1.218695, 0.475978,
        4.692119, -1.219608, 0.4795836, 4.689452, -1.220283, 0.4822454, 4.687476,
    ];
    assert_close(&r[0], &[2, 4, 3], &want, 1e-5);
    assert_close(
        &r[1],
        &[2, 4, 1],
        &[
            3.008193, 11.29243, 22.71589, 36.55829, 52.45004, 70.15344, 89.49863, 110.3563,
        ],
        1e-5,
    );
    assert_close(
        &r[2],
        &[2, 4, 1],
        &[
            0.5821452, 0.3656088, 0.2888164, 0.2462466, 0.2182527, 0.198051, 0.1825883, 0.1702614,
        ],
        1e-5,
    );
    // RMSNorm: x / sqrt(mean(x²) + eps) * scale.
    let v = f(&[2, 2], &[3., 4., 1., -1.]);
    let s = f(&[2], &[1., 2.]);
    let y = eval_n(
        &Op::RmsNorm(Norm {
            epsilon: 0.0,
            ..Default::default()
        }),
        &[Some(&v), Some(&s)],
        1,
    );
    let r1 = (12.5f32).sqrt();
    assert_close(&y[0], &[2, 2], &[3. / r1, 8. / r1, 1., -2.], 1e-6);
    let (s4, b4) = (f(&[4], &[1., 2., 3., 4.]), f(&[4], &[0., 0.5, 1., 1.5]));
    let g = eval(
        &Op::GroupNorm(GroupNorm {
            num_groups: 2,
            ..Default::default()
        }),
        &[&x, &s4, &b4],
    );
    let want = [
        -1.300272,
        -0.9137138,
        -0.4131395,
        0.8592755,
        2.204023,
        3.690951,
        -3.230645,
        -1.667616,
        -0.003576636,
        2.507569,
        4.97366,
        7.554555,
        -1.431576,
        -0.8848193,
        -0.3181697,
        1.035395,
        2.244342,
        3.48939,
        -3.322295,
        -1.648885,
        0.06690204,
        2.598722,
        4.995445,
        7.444855,
    ];
    assert_close(&g, &[2, 4, 3], &want, 1e-5);
    let inorm = eval(&Op::InstanceNorm(InstanceNorm::default()), &[&x, &s4, &b4]);
    let want = [
        -1.16906,
        -0.10465,
        1.27371,
        -1.90748,
        0.4180403,
        2.989439,
        -2.635303,
        0.9233418,
        4.711964,
        -3.361416,
        1.425713,
        6.435696,
        -1.217386,
        -0.01458836,
        1.231973,
        -1.937389,
        0.4759789,
        2.961412,
        -2.658821,
        0.9693756,
        4.689453,
        -3.381134,
        1.464485,
        6.416634,
    ];
    assert_close(&inorm, &[2, 4, 3], &want, 1e-5);
}

#[test]
fn reductions_axes_keepdims_and_empty_axes() {
    let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let red = |k, axes: Option<Vec<i64>>, keep, noop| {
        Op::Reduce(
            k,
            Reduce {
                axes,
                keepdims: keep,
                noop_with_empty_axes: noop,
            },
        )
    };
    assert_close(
        &eval(&red(ReduceOp::Sum, Some(vec![1]), true, false), &[&x]),
        &[2, 1],
        &[6., 15.],
        0.0,
    );
    assert_close(
        &eval(&red(ReduceOp::Mean, Some(vec![0]), false, false), &[&x]),
        &[3],
        &[2.5, 3.5, 4.5],
        0.0,
    );
    assert_close(
        &eval(&red(ReduceOp::Max, None, false, false), &[&x]),
        &[],
        &[6.],
        0.0,
    );
    assert_close(
        &eval(&red(ReduceOp::Max, None, false, true), &[&x]),
        &[2, 3],
        &[1., 2., 3., 4., 5., 6.],
        0.0,
    );
    // Axes from the second input.
    let ax = i(&[1], &[-1]);
    assert_close(
        &eval(&red(ReduceOp::L2, None, false, false), &[&x, &ax]),
        &[2],
        &[14f32.sqrt(), 77f32.sqrt()],
        1e-6,
    );
    assert_close(
        &eval(
            &red(ReduceOp::LogSumExp, Some(vec![1]), false, false),
            &[&x],
        ),
        &[2],
        &[3.4076059, 6.4076059],
        1e-6,
    );
    let xi = i(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(
        eval(&red(ReduceOp::Prod, Some(vec![0]), false, false), &[&xi])
            .as_i64()
            .unwrap(),
        &[3, 8]
    );
}

#[test]
fn argmax_topk_cumsum() {
    let x = f(&[2, 4], &[1., 3., 3., 0., 5., 5., 5., 9.]);
    let am = eval(
        &Op::ArgMax(ArgReduce {
            axis: 1,
            keepdims: false,
            select_last_index: false,
        }),
        &[&x],
    );
    assert_eq!(am.as_i64().unwrap(), &[1, 3]);
    let am = eval(
        &Op::ArgMin(ArgReduce {
            axis: 1,
            keepdims: true,
            select_last_index: true,
        }),
        &[&x],
    );
    assert_eq!(
        (am.shape(), am.as_i64().unwrap()),
        (&[2usize, 1][..], &[3i64, 2][..])
    );
    // Ties resolve to the lower index.
    let k = i(&[1], &[3]);
    let r = eval_n(&Op::TopK(TopK::default()), &[Some(&x), Some(&k)], 2);
    assert_close(&r[0], &[2, 3], &[3., 3., 1., 9., 5., 5.], 0.0);
    assert_eq!(r[1].as_i64().unwrap(), &[1, 2, 0, 3, 0, 1]);
    let r = eval_n(
        &Op::TopK(TopK {
            largest: false,
            ..Default::default()
        }),
        &[Some(&x), Some(&k)],
        2,
    );
    assert_eq!(r[1].as_i64().unwrap(), &[3, 0, 1, 0, 1, 2]);
    let v = f(&[4], &[1., 2., 3., 4.]);
    let ax = i(&[], &[0]);
    assert_close(
        &eval(&Op::CumSum(CumSum::default()), &[&v, &ax]),
        &[4],
        &[1., 3., 6., 10.],
        0.0,
    );
    assert_close(
        &eval(
            &Op::CumSum(CumSum {
                exclusive: true,
                reverse: true,
            }),
            &[&v, &ax],
        ),
        &[4],
        &[9., 7., 4., 0.],
        0.0,
    );
}

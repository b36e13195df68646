//! Inference of MatMul/Gemm/MatMulNBits, norms, reductions, Einsum and RouterTopK.

use compc_ir::infer::infer_graph;
use compc_ir::op::{
    ArgReduce, BatchNorm, Einsum, Gemm, MatMulNBits, Norm, Reduce, ReduceOp, RouterTopK,
};
use compc_ir::{DType, Graph, Op, TensorType, Weight};

mod common;
use common::*;

#[test]
fn matmul_shapes() {
    let t = |a, b| one(Op::MatMul, &[a, b]);
    assert_eq!(
        t("{batch}x{seq}x64xf32", "64x128xf32").unwrap(),
        "tensor<{batch}x{seq}x128xf32>"
    );
    assert_eq!(t("8xf32", "8x3xf32").unwrap(), "tensor<3xf32>");
    assert_eq!(t("2x3x4xf32", "4xf32").unwrap(), "tensor<2x3xf32>");
    assert_eq!(
        t("2x1x3x4xf32", "5x4x6xf32").unwrap(),
        "tensor<2x5x3x6xf32>"
    );
    let e = t("2x3xf32", "4x5xf32").unwrap_err();
    assert!(e.contains("inner dims disagree: 3 vs 4"), "{e}");
}

#[test]
fn gemm_with_transposes_and_bias() {
    let op = Op::Gemm(Gemm {
        trans_a: true,
        trans_b: true,
        ..Default::default()
    });
    assert_eq!(
        one(op.clone(), &["4x3xf32", "5x4xf32", "5xf32"]).unwrap(),
        "tensor<3x5xf32>"
    );
    let e = one(op, &["4x3xf32", "5x4xf32", "6xf32"]).unwrap_err();
    assert!(e.contains("C does not broadcast"), "{e}");
    let e = one(Op::Gemm(Gemm::default()), &["4x3xf32", "4x5xf32"]).unwrap_err();
    assert!(e.contains("inner dims disagree: 3 vs 4"), "{e}");
}

#[test]
fn matmul_nbits_maps_k_to_n() {
    let op = Op::MatMulNBits(MatMulNBits {
        k: 4096,
        n: 11008,
        bits: 4,
        block_size: 128,
        accuracy_level: 0,
    });
    let ins = ["{b}x{s}x4096xf16", "11008x32x64xu8", "11008x32xf16"];
    assert_eq!(one(op.clone(), &ins).unwrap(), "tensor<{b}x{s}x11008xf16>");
    let e = one(op, &["{b}x{s}x2048xf16", "11008x32x64xu8", "11008x32xf16"]).unwrap_err();
    assert!(e.contains("A's last dim is 2048 but K is 4096"), "{e}");
}

#[test]
fn norms() {
    let ln = Op::LayerNorm(Norm {
        axis: -1,
        ..Default::default()
    });
    assert_eq!(
        infer_op(ln.clone(), &["{b}x{s}x64xf16", "64xf16", "64xf16"], 3).unwrap(),
        [
            "tensor<{b}x{s}x64xf16>",
            "tensor<{b}x{s}x1xf32>",
            "tensor<{b}x{s}x1xf32>"
        ]
    );
    assert_eq!(
        infer_op(ln, &["{b}x{s}x64xf16", "64xf16"], 1).unwrap(),
        ["tensor<{b}x{s}x64xf16>"]
    );
    let rms = Op::RmsNorm(Norm::default());
    assert_eq!(
        one(rms, &["{b}x{s}x64xf32", "64xf32"]).unwrap(),
        "tensor<{b}x{s}x64xf32>"
    );
    let bn = Op::BatchNorm(BatchNorm::default());
    let p = "3xf32";
    assert_eq!(
        one(bn.clone(), &["1x3x8x8xf32", p, p, p, p]).unwrap(),
        "tensor<1x3x8x8xf32>"
    );
    let e = one(bn, &["1x3x8x8xf32", "4xf32", p, p, p]).unwrap_err();
    assert!(
        e.contains("scale does not match the channel count: 4 vs 3"),
        "{e}"
    );
}

#[test]
fn reductions_with_attr_or_input_axes() {
    let keep = |axes: Option<Vec<i64>>, keepdims: bool, noop: bool| {
        Op::Reduce(
            ReduceOp::Mean,
            Reduce {
                axes,
                keepdims,
                noop_with_empty_axes: noop,
            },
        )
    };
    let x = "2x{s}x4xf32";
    assert_eq!(
        one(keep(Some(vec![1]), true, false), &[x]).unwrap(),
        "tensor<2x1x4xf32>"
    );
    assert_eq!(
        one(keep(Some(vec![-1, 0]), false, false), &[x]).unwrap(),
        "tensor<{s}xf32>"
    );
    assert_eq!(
        one(keep(None, true, false), &[x]).unwrap(),
        "tensor<1x1x1xf32>"
    );
    assert_eq!(
        one(keep(None, true, true), &[x]).unwrap(),
        "tensor<2x{s}x4xf32>"
    );

    // Axes from a constant second input, and from an unknown one.
    let mut g = Graph::new("t");
    let xi = g.add_input("x", ty(x));
    let axes = g.add_const(Weight::from_i64("axes", vec![1], &[-1]).unwrap());
    let r = g.add_node(
        keep(None, false, false),
        vec![Some(xi.into()), Some(axes.into())],
        vec![TensorType::unranked(DType::F32)],
        "",
    );
    let dyn_axes = g.add_input("axes_in", ty("2xi64"));
    let ins = vec![Some(xi.into()), Some(dyn_axes.into())];
    let r2 = g.add_node(
        keep(None, false, false),
        ins.clone(),
        vec![TensorType::unranked(DType::F32)],
        "",
    );
    let r3 = g.add_node(
        keep(None, true, false),
        ins,
        vec![TensorType::unranked(DType::F32)],
        "",
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(g.node(r).outputs[0].to_string(), "tensor<2x{s}xf32>");
    assert_eq!(g.node(r2).outputs[0].to_string(), "tensor<?xf32>");
    assert_eq!(g.node(r3).outputs[0].to_string(), "tensor<?x?x?xf32>");

    let am = Op::ArgMax(ArgReduce {
        axis: 1,
        keepdims: false,
        select_last_index: false,
    });
    assert_eq!(one(am, &[x]).unwrap(), "tensor<2x4xi64>");
}

#[test]
fn einsum_explicit_implicit_and_ellipsis() {
    let e = |eq: &str, ins: &[&str]| {
        one(
            Op::Einsum(Einsum {
                equation: eq.into(),
            }),
            ins,
        )
    };
    assert_eq!(
        e("bij,bjk->bik", &["2x3x4xf32", "2x4x5xf32"]).unwrap(),
        "tensor<2x3x5xf32>"
    );
    assert_eq!(
        e("ij,jk", &["3x4xf32", "4x5xf32"]).unwrap(),
        "tensor<3x5xf32>"
    );
    assert_eq!(
        e("...ij->...ji", &["{b}x2x3xf32"]).unwrap(),
        "tensor<{b}x3x2xf32>"
    );
    assert_eq!(e("ii->i", &["4x4xf32"]).unwrap(), "tensor<4xf32>");
    assert_eq!(
        e("bhqd,bhkd->bhqk", &["{b}x8x{s}x64xf32", "{b}x8x{s}x64xf32"]).unwrap(),
        "tensor<{b}x8x{s}x{s}xf32>"
    );
    let err = e("ij,jk->ik", &["3x4xf32", "5x6xf32"]).unwrap_err();
    assert!(err.contains("letter `j` has two sizes: 4 vs 5"), "{err}");
    let err = e("ij->iz", &["3x4xf32"]).unwrap_err();
    assert!(err.contains("output letter `z` does not occur"), "{err}");
}

#[test]
fn router_top_k_capacity() {
    let op = |c: f32| Op::RouterTopK(RouterTopK { capacity: c });
    // ceil(0.25 · 10) = 3.
    assert_eq!(one(op(0.25), &["2x10xf32"]).unwrap(), "tensor<2x3xi64>");
    assert_eq!(
        one(op(0.5), &["{b}x{seq}xf32"]).unwrap(),
        "tensor<{b}x?xi64>"
    );
    assert!(one(op(1.5), &["2x10xf32"])
        .unwrap_err()
        .contains("capacity 1.5 must be in (0, 1]"));
}

//! Element-wise inference: broadcasting with symbolic dims, predicate and cast types,
//! quantization types, and the error messages.

use compc_ir::op::{Axis, BinaryOp, Cast, Dropout, Hadamard, Quantize, UnaryOp, VariadicOp};
use compc_ir::{DType, Op};

mod common;
use common::*;

#[test]
fn broadcasting() {
    let add = |a, b| one(Op::Binary(BinaryOp::Add), &[a, b]);
    assert_eq!(add("3x1x5xf32", "4x1xf32").unwrap(), "tensor<3x4x5xf32>");
    assert_eq!(
        add("{b}x1xf32", "1x{s}xf32").unwrap(),
        "tensor<{b}x{s}xf32>"
    );
    // A known dim other than 1 wins: the symbol must be 1 or equal to it.
    assert_eq!(add("{b}x8xf32", "4x?xf32").unwrap(), "tensor<4x8xf32>");
    assert_eq!(add("{b}xf32", "{b}xf32").unwrap(), "tensor<{b}xf32>");
    assert_eq!(add("{b}xf32", "{c}xf32").unwrap(), "tensor<?xf32>");
    assert_eq!(add("f32", "2x3xf32").unwrap(), "tensor<2x3xf32>");
    assert_eq!(add("*xf32", "2x3xf32").unwrap(), "tensor<*xf32>");
    let e = add("2x3xf32", "4xf32").unwrap_err();
    assert_eq!(e, "n2 (add): shapes [2x3], [4] do not broadcast: 3 vs 4");
    let mask = "{b}x1x{s}x{s}xf32";
    assert_eq!(
        add("{b}x8x{s}x{s}xf32", mask).unwrap(),
        "tensor<{b}x8x{s}x{s}xf32>"
    );
    let sum = one(
        Op::Variadic(VariadicOp::Sum),
        &["3x1xf32", "1x4xf32", "4xf32"],
    )
    .unwrap();
    assert_eq!(sum, "tensor<3x4xf32>");
}

#[test]
fn predicates_where_and_casts() {
    assert_eq!(
        one(Op::Binary(BinaryOp::Less), &["2x3xi64", "i64"]).unwrap(),
        "tensor<2x3xbool>"
    );
    assert_eq!(
        one(Op::Unary(UnaryOp::Not), &["4xbool"]).unwrap(),
        "tensor<4xbool>"
    );
    assert_eq!(
        one(Op::Unary(UnaryOp::IsNaN), &["4xf16"]).unwrap(),
        "tensor<4xbool>"
    );
    assert_eq!(
        one(Op::Unary(UnaryOp::Exp), &["4xf16"]).unwrap(),
        "tensor<4xf16>"
    );
    let w = one(Op::Where, &["{s}x1xbool", "1x{s}xf16", "f16"]).unwrap();
    assert_eq!(w, "tensor<{s}x{s}xf16>");
    let c = Op::Cast(Cast {
        to: DType::I32,
        saturate: true,
    });
    assert_eq!(one(c, &["{b}x3xf32"]).unwrap(), "tensor<{b}x3xi32>");
    assert_eq!(
        one(Op::CastLike, &["{b}x3xf32", "bf16"]).unwrap(),
        "tensor<{b}x3xbf16>"
    );
}

#[test]
fn quantization_types() {
    let q = |zp: Option<&str>, out: Option<DType>| {
        let mut ins = vec!["{b}x64xf32", "f32"];
        ins.extend(zp);
        one(
            Op::QuantizeLinear(Quantize {
                output_dtype: out,
                ..Default::default()
            }),
            &ins,
        )
    };
    assert_eq!(q(None, None).unwrap(), "tensor<{b}x64xu8>");
    assert_eq!(q(Some("i8"), None).unwrap(), "tensor<{b}x64xi8>");
    assert_eq!(q(None, Some(DType::I4)).unwrap(), "tensor<{b}x64xi4>");
    let e = q(Some("u8"), Some(DType::I8)).unwrap_err();
    assert!(e.contains("zero point is u8 but output_dtype is i8"), "{e}");
    let dq = Op::DequantizeLinear(Default::default());
    assert_eq!(
        one(dq.clone(), &["64x4xi4", "64x1xf16", "64x1xi4"]).unwrap(),
        "tensor<64x4xf16>"
    );
    assert_eq!(one(dq, &["64x4xi8", "f32"]).unwrap(), "tensor<64x4xf32>");
    assert_eq!(
        infer_op(Op::DynamicQuantizeLinear, &["2x3xf32"], 3).unwrap(),
        ["tensor<2x3xu8>", "tensor<f32>", "tensor<u8>"]
    );
}

#[test]
fn same_shape_ops_and_their_checks() {
    assert_eq!(
        infer_op(Op::Dropout(Dropout::default()), &["2x3xf32"], 2).unwrap(),
        ["tensor<2x3xf32>", "tensor<2x3xbool>"]
    );
    assert_eq!(
        one(Op::Hadamard(Hadamard { size: 64 }), &["{s}x128xf16"]).unwrap(),
        "tensor<{s}x128xf16>"
    );
    let e = one(Op::Hadamard(Hadamard { size: 64 }), &["{s}x96xf16"]).unwrap_err();
    assert!(
        e.contains("last dim 96 is not a multiple of the block size 64"),
        "{e}"
    );
    assert_eq!(
        one(Op::Softmax(Axis { axis: -1 }), &["2x{s}xf32"]).unwrap(),
        "tensor<2x{s}xf32>"
    );
    let e = one(Op::Softmax(Axis { axis: 2 }), &["2x3xf32"]).unwrap_err();
    assert!(e.contains("axis 2 is out of range for rank 2"), "{e}");
    // A node cannot have more outputs than its op produces.
    let e = infer_op(Op::Unary(UnaryOp::Relu), &["2xf32"], 2).unwrap_err();
    assert!(e.contains("has 2 outputs, but `relu` has at most 1"), "{e}");
}

// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::{BinaryOp, Cast, Gelu, Mod, UnaryOp, VariadicOp};
use compc_ir::{DType, Op};
use compc_runtime::ops::elementwise::erf;
use compc_runtime::Tensor;

#[test]
fn add_broadcasts_like_numpy() {
    let a = f(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]);
    let b = f(&[2, 1], &[10., 20.]);
    let y = eval(&Op::Binary(BinaryOp::Add), &[&a, &b]);
    assert_close(
        &y,
        &[2, 2, 3],
        &[11., 12., 13., 21., 22., 23., 14., 15., 16., 24., 25., 26.],
        0.0,
    );
    // Scalar on the left.
    let s = f(&[], &[1.0]);
    let y = eval(&Op::Binary(BinaryOp::Sub), &[&s, &b]);
    assert_close(&y, &[2, 1], &[-9., -19.], 0.0);
}

#[test]
fn broadcast_mismatch_is_an_error() {
    let a = f(&[2, 3], &[0.; 6]);
    let b = f(&[2], &[0.; 2]);
    let e = eval_err(&Op::Binary(BinaryOp::Mul), &[&a, &b]);
    assert!(e.contains("do not broadcast"), "{e}");
}

#[test]
fn large_broadcast_matches_serial_definition() {
    // Big enough to take the parallel chunked path.
    let (r, c) = (300, 257);
    let a = f(&[r, 1], &rand_vec(r, 1));
    let b = f(&[1, c], &rand_vec(c, 2));
    let y = eval(&Op::Binary(BinaryOp::Mul), &[&a, &b]);
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let want: Vec<f32> = (0..r * c).map(|k| av[k / c] * bv[k % c]).collect();
    assert_close(&y, &[r, c], &want, 0.0);
}

#[test]
fn integer_div_truncates_and_comparisons_give_bool() {
    let a = i(&[4], &[7, -7, 7, -7]);
    let b = i(&[4], &[2, 2, -2, -2]);
    let y = eval(&Op::Binary(BinaryOp::Div), &[&a, &b]);
    assert_eq!(y.as_i64().unwrap(), &[3, -3, -3, 3]);
    let y = eval(&Op::Binary(BinaryOp::Greater), &[&a, &b]);
    assert_eq!(y.dtype(), DType::Bool);
    assert_eq!(y.as_bool().unwrap(), &[true, false, true, false]);
    let z = i(&[1], &[0]);
    assert!(eval_err(&Op::Binary(BinaryOp::Div), &[&a, &z]).contains("division by zero"));
}

#[test]
fn pow_mod_and_variadic() {
    let a = f(&[3], &[2., -3., 4.]);
    let e = f(&[], &[2.]);
    assert_close(
        &eval(&Op::Binary(BinaryOp::Pow), &[&a, &e]),
        &[3],
        &[4., 9., 16.],
        0.0,
    );
    let ie = i(&[], &[3]);
    assert_close(
        &eval(&Op::Binary(BinaryOp::Pow), &[&a, &ie]),
        &[3],
        &[8., -27., 64.],
        0.0,
    );
    let x = i(&[4], &[5, -5, 5, -5]);
    let m = i(&[4], &[3, 3, -3, -3]);
    let py = eval(&Op::Mod(Mod { fmod: false }), &[&x, &m]);
    assert_eq!(py.as_i64().unwrap(), &[2, 1, -1, -2]);
    let c = eval(&Op::Mod(Mod { fmod: true }), &[&x, &m]);
    assert_eq!(c.as_i64().unwrap(), &[2, -2, 2, -2]);
    let b = f(&[1], &[3.]);
    assert_close(
        &eval(&Op::Variadic(VariadicOp::Max), &[&a, &b]),
        &[3],
        &[3., 3., 4.],
        0.0,
    );
    assert_close(
        &eval(&Op::Variadic(VariadicOp::Mean), &[&a, &b]),
        &[3],
        &[2.5, 0., 3.5],
        0.0,
    );
}

#[test]
fn unary_and_activations() {
    let x = f(&[5], &[-2., -0.5, 0., 0.5, 2.5]);
    assert_close(
        &eval(&Op::Unary(UnaryOp::Relu), &[&x]),
        &[5],
        &[0., 0., 0., 0.5, 2.5],
        0.0,
    );
    // Round is half to even.
    assert_close(
        &eval(&Op::Unary(UnaryOp::Round), &[&x]),
        &[5],
        &[-2., -0., 0., 0., 2.],
        0.0,
    );
    let s = eval(&Op::Unary(UnaryOp::Sigmoid), &[&x]);
    assert_close(
        &s,
        &[5],
        &[0.11920292, 0.37754067, 0.5, 0.62245935, 0.92414182],
        1e-6,
    );
    // torch.nn.functional.gelu values.
    let g = eval(&Op::Gelu(Gelu::default()), &[&x]);
    assert_close(
        &g,
        &[5],
        &[-0.04550026, -0.15426877, 0., 0.34573123, 2.48447584],
        1e-6,
    );
    let gt = eval(
        &Op::Gelu(Gelu {
            approximate: "tanh".into(),
        }),
        &[&x],
    );
    assert_close(
        &gt,
        &[5],
        &[-0.04540231, -0.15428599, 0., 0.34571401, 2.48491573],
        1e-6,
    );
    assert!((erf(0.5) - 0.5204998778130465).abs() < 1e-14);
    assert!((erf(3.5) - 0.9999992569016276).abs() < 1e-14);
    assert!((erf(-1.2) + 0.9103139782296353).abs() < 1e-14);
    let neg = i(&[2], &[-3, 4]);
    assert_eq!(
        eval(&Op::Unary(UnaryOp::Abs), &[&neg]).as_i64().unwrap(),
        &[3, 4]
    );
    assert!(eval_err(&Op::Unary(UnaryOp::Exp), &[&neg]).contains("not defined"));
}

#[test]
fn where_and_clip() {
    let c = Tensor::from_bool(vec![2, 1], vec![true, false]);
    let x = f(&[1, 3], &[1., 2., 3.]);
    let y = f(&[], &[-1.]);
    let w = eval(&Op::Where, &[&c, &x, &y]);
    assert_close(&w, &[2, 3], &[1., 2., 3., -1., -1., -1.], 0.0);
    let lo = f(&[], &[1.5]);
    let r = eval_n(&Op::Clip, &[Some(&x), Some(&lo), None], 1);
    assert_close(&r[0], &[1, 3], &[1.5, 2., 3.], 0.0);
    let hi = f(&[], &[2.5]);
    let r = eval_n(&Op::Clip, &[Some(&x), None, Some(&hi)], 1);
    assert_close(&r[0], &[1, 3], &[1., 2., 2.5], 0.0);
}

#[test]
fn cast_rules() {
    let x = f(&[5], &[-2.7, -0.5, 0.0, 1.9, 1e10]);
    let to = |d| {
        Op::Cast(Cast {
            to: d,
            saturate: true,
        })
    };
    assert_eq!(
        eval(&to(DType::I64), &[&x]).as_i64().unwrap(),
        &[-2, 0, 0, 1, 10_000_000_000]
    );
    let y = eval(&to(DType::I32), &[&x]);
    assert_eq!(y.to_i64_vec(), vec![-2, 0, 0, 1, i32::MAX as i64]);
    assert_eq!(
        eval(&to(DType::Bool), &[&x]).as_bool().unwrap(),
        &[true, true, false, true, true]
    );
    let h = eval(&to(DType::F16), &[&f(&[1], &[0.1])]);
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(h.to_f32_vec()[0], half::f16::from_f32(0.1).to_f32());
    let b = Tensor::from_bool(vec![2], vec![true, false]);
    assert_close(&eval(&to(DType::F32), &[&b]), &[2], &[1., 0.], 0.0);
    let big = i(&[2], &[300, -129]);
    assert_eq!(eval(&to(DType::U8), &[&big]).to_i64_vec(), vec![44, 127]);
}

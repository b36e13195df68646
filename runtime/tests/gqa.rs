//! `com.microsoft.GroupQueryAttention` against onnxruntime 1.32's CPU kernel: batch 2,
//! 3 tokens, 4 query heads on 2 KV heads of 16, rotary from `[3, 8]` caches, half-split
//! and interleaved. Inputs are `sin(i·a)` so the case is reproducible in numpy; expected
//! values are pasted from onnxruntime at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::GroupQueryAttention;
use compc_ir::{DType, Op};
use compc_runtime::ops::eval_op;
use compc_runtime::Tensor;

const B: usize = 2;
const S: usize = 3;
const H: usize = 4;
const G: usize = 2;
const D: usize = 16;

fn gen(n: usize, a: f64) -> Vec<f32> {
    (0..n).map(|i| (i as f64 * a).sin() as f32).collect()
}

/// Inputs in GroupQueryAttention order (no past).
fn inputs() -> Vec<Option<Tensor>> {
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..S {
        for j in 0..D / 2 {
            let inv = 1.0 / 10000f64.powf((2 * j) as f64 / D as f64);
            cos.push((p as f64 * inv).cos() as f32);
            sin.push((p as f64 * inv).sin() as f32);
        }
    }
    let i32s = |shape: Vec<usize>, v: Vec<i64>| Tensor::from_i64_as(DType::I32, shape, v).unwrap();
    vec![
        Some(f(&[B, S, H * D], &gen(B * S * H * D, 0.37))),
        Some(f(&[B, S, G * D], &gen(B * S * G * D, 0.53))),
        Some(f(&[B, S, G * D], &gen(B * S * G * D, 0.71))),
        None,
        None,
        Some(i32s(vec![B], vec![S as i64 - 1; B])),
        Some(i32s(vec![], vec![S as i64])),
        Some(f(&[S, D / 2], &cos)),
        Some(f(&[S, D / 2], &sin)),
    ]
}

fn op(interleaved: bool) -> Op {
    Op::GroupQueryAttention(GroupQueryAttention {
        num_heads: H as i64,
        kv_num_heads: G as i64,
        do_rotary: true,
        rotary_interleaved: interleaved,
        ..Default::default()
    })
}

fn run(op: &Op, ins: &[Option<Tensor>]) -> Result<Vec<Tensor>, String> {
    let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
    eval_op(op, &refs, 3).map_err(|e| e.to_string())
}

#[test]
fn matches_onnxruntime() {
    let idx = [0, 17, 63, 100, 191, 250, 383];
    let cases: [(bool, [f32; 7], f32, f32); 2] = [
        (
            false,
            [
                0.0,
                0.6518337726593018,
                -0.018850307911634445,
                0.8078387975692749,
                0.3246972858905792,
                -0.9745252132415771,
                0.4978798031806946,
            ],
            7.158005714416504,
            -2.4886717796325684,
        ),
        (
            true,
            [
                0.0,
                0.6518337726593018,
                -0.018850307911634445,
                0.8707990646362305,
                0.43791094422340393,
                -0.9745252132415771,
                0.6104423403739929,
            ],
            6.715729713439941,
            4.665027618408203,
        ),
    ];
    for (inter, want, sum, key_sum) in cases {
        let out = run(&op(inter), &inputs()).unwrap();
        assert_eq!(out[0].shape(), [B, S, H * D]);
        assert_eq!(out[1].shape(), [B, G, S, D]);
        let o = out[0].to_f32_vec();
        for (&i, w) in idx.iter().zip(want) {
            assert!(
                (o[i] - w).abs() < 1e-5,
                "interleaved={inter} [{i}]: {} vs {w}",
                o[i]
            );
        }
        let total: f32 = o.iter().sum();
        assert!((total - sum).abs() < 1e-4, "{total} vs {sum}");
        let ks: f32 = out[1].to_f32_vec().iter().sum();
        assert!((ks - key_sum).abs() < 1e-4, "{ks} vs {key_sum}");
    }
}

#[test]
fn unsupported_inputs_are_errors() {
    let mut ins = inputs();
    ins[3] = Some(f(&[B, G, 2, D], &[0.0; B * G * 2 * D]));
    ins[4] = ins[3].clone();
    let e = run(&op(false), &ins).unwrap_err();
    assert!(e.contains("past_key"), "{e}");
    let mut ins = inputs();
    ins[6] = Some(Tensor::from_i64_as(DType::I32, vec![], vec![5]).unwrap());
    let e = run(&op(false), &ins).unwrap_err();
    assert!(e.contains("total_sequence_length"), "{e}");
}

//! Helpers shared by the runtime tests.
#![allow(dead_code)]

use compc_ir::Op;
use compc_runtime::{eval_op, Tensor};

pub fn f(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_f32(shape.to_vec(), v.to_vec())
}

pub fn i(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(shape.to_vec(), v.to_vec())
}

/// Evaluates `op` on present inputs and returns all outputs.
pub fn eval_n(op: &Op, inputs: &[Option<&Tensor>], n: usize) -> Vec<Tensor> {
    eval_op(op, inputs, n).unwrap_or_else(|e| panic!("{} failed: {e}", op.name()))
}

pub fn eval(op: &Op, inputs: &[&Tensor]) -> Tensor {
    let ins: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    eval_n(op, &ins, 1).remove(0)
}

pub fn eval_err(op: &Op, inputs: &[&Tensor]) -> String {
    let ins: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    match eval_op(op, &ins, 1) {
        Ok(_) => panic!("{} unexpectedly succeeded", op.name()),
        Err(e) => e.to_string(),
    }
}

pub fn assert_close(got: &Tensor, shape: &[usize], want: &[f32], tol: f32) {
    assert_eq!(got.shape(), shape, "shape");
    let g = got.to_f32_vec();
    assert_eq!(g.len(), want.len());
    for (k, (a, b)) in g.iter().zip(want).enumerate() {
        let ok = (a - b).abs() <= tol * (1.0 + b.abs()) || (a.is_nan() && b.is_nan());
        assert!(ok, "element {k}: got {a}, want {b} (all: {g:?})");
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt();
    let den: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt().max(1e-12);
    num / den
}

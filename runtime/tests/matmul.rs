// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::{Einsum, Gemm};
use compc_ir::Op;

fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                .sum::<f64>() as f32;
        }
    }
    c
}

#[test]
fn batched_matmul_matches_naive_loop() {
    let (bt, m, k, n) = (3, 17, 33, 9);
    let a = f(&[bt, m, k], &rand_vec(bt * m * k, 3));
    let b = f(&[bt, k, n], &rand_vec(bt * k * n, 4));
    let y = eval(&Op::MatMul, &[&a, &b]);
    assert_eq!(y.shape(), &[bt, m, n]);
    let (av, bv, yv) = (a.to_f32_vec(), b.to_f32_vec(), y.to_f32_vec());
    for i in 0..bt {
        let want = naive(
            &av[i * m * k..][..m * k],
            &bv[i * k * n..][..k * n],
            m,
            k,
            n,
        );
        assert!(rel_err(&yv[i * m * n..][..m * n], &want) < 1e-5);
    }
}

#[test]
fn matmul_broadcasts_batch_dims() {
    let (m, k, n) = (4, 5, 6);
    let a = f(&[2, 1, m, k], &rand_vec(2 * m * k, 5));
    let b = f(&[3, k, n], &rand_vec(3 * k * n, 6));
    let y = eval(&Op::MatMul, &[&a, &b]);
    assert_eq!(y.shape(), &[2, 3, m, n]);
    let (av, bv, yv) = (a.to_f32_vec(), b.to_f32_vec(), y.to_f32_vec());
    for p in 0..2 {
        for q in 0..3 {
            let want = naive(
                &av[p * m * k..][..m * k],
                &bv[q * k * n..][..k * n],
                m,
                k,
                n,
            );
            assert!(rel_err(&yv[(p * 3 + q) * m * n..][..m * n], &want) < 1e-5);
        }
    }
}

#[test]
fn large_single_matmul_uses_threads_correctly() {
    let (m, k, n) = (96, 200, 80);
    let a = f(&[m, k], &rand_vec(m * k, 7));
    let b = f(&[k, n], &rand_vec(k * n, 8));
    let y = eval(&Op::MatMul, &[&a, &b]);
    assert!(
        rel_err(
            &y.to_f32_vec(),
            &naive(&a.to_f32_vec(), &b.to_f32_vec(), m, k, n)
        ) < 1e-5
    );
}

#[test]
fn matmul_vector_cases() {
    let a = f(&[3], &[1., 2., 3.]);
    let b = f(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
    assert_close(&eval(&Op::MatMul, &[&a, &b]), &[2], &[22., 28.], 0.0);
    let c = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    assert_close(&eval(&Op::MatMul, &[&c, &a]), &[2], &[14., 32.], 0.0);
    assert_close(&eval(&Op::MatMul, &[&a, &a]), &[], &[14.], 0.0);
    let batch_v = f(&[2, 3], &[1., 0., 0., 0., 1., 0.]);
    let bb = f(
        &[2, 3, 2],
        &[1., 2., 3., 4., 5., 6., 1., 2., 3., 4., 5., 6.],
    );
    // [2,3] · [2,3,2] broadcasts [2,3] as a matrix against each batch.
    assert_eq!(eval(&Op::MatMul, &[&batch_v, &bb]).shape(), &[2, 2, 2]);
    let ints = i(&[2, 2], &[1, 2, 3, 4]);
    assert_eq!(
        eval(&Op::MatMul, &[&ints, &ints]).as_i64().unwrap(),
        &[7, 10, 15, 22]
    );
    let e = eval_err(&Op::MatMul, &[&c, &c]);
    assert!(e.contains("inner dimensions"), "{e}");
}

#[test]
fn gemm_with_transposes_and_bias() {
    let a = f(&[3, 2], &[1., 4., 2., 5., 3., 6.]); // Aᵀ = [[1,2,3],[4,5,6]]
    let b = f(&[2, 3], &[1., 3., 5., 2., 4., 6.]); // Bᵀ = [[1,2],[3,4],[5,6]]
    let c = f(&[2], &[1., -1.]);
    let op = Op::Gemm(Gemm {
        alpha: 2.0,
        beta: 0.5,
        trans_a: true,
        trans_b: true,
    });
    // A'B' = [[22,28],[49,64]]
    let y = eval(&op, &[&a, &b, &c]);
    assert_close(&y, &[2, 2], &[44.5, 55.5, 98.5, 127.5], 0.0);
}

#[test]
fn einsum_forms_torch_exports() {
    let (b, h, q, kk, d) = (2, 3, 4, 5, 6);
    let x = f(&[b, h, q, d], &rand_vec(b * h * q * d, 9));
    let y = f(&[b, h, kk, d], &rand_vec(b * h * kk * d, 10));
    let s = eval(
        &Op::Einsum(Einsum {
            equation: "bhqd,bhkd->bhqk".into(),
        }),
        &[&x, &y],
    );
    assert_eq!(s.shape(), &[b, h, q, kk]);
    let (xv, yv, sv) = (x.to_f32_vec(), y.to_f32_vec(), s.to_f32_vec());
    for bh in 0..b * h {
        for i in 0..q {
            for j in 0..kk {
                let want: f32 = (0..d)
                    .map(|t| xv[(bh * q + i) * d + t] * yv[(bh * kk + j) * d + t])
                    .sum();
                assert!((sv[(bh * q + i) * kk + j] - want).abs() < 1e-5);
            }
        }
    }
    let u = f(&[2], &[1., 2.]);
    let v = f(&[3], &[1., 10., 100.]);
    let outer = eval(
        &Op::Einsum(Einsum {
            equation: "i,j->ij".into(),
        }),
        &[&u, &v],
    );
    assert_close(&outer, &[2, 3], &[1., 10., 100., 2., 20., 200.], 0.0);
    let m = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let t = eval(
        &Op::Einsum(Einsum {
            equation: "ij->ji".into(),
        }),
        &[&m],
    );
    assert_close(&t, &[3, 2], &[1., 4., 2., 5., 3., 6.], 0.0);
    let sum = eval(
        &Op::Einsum(Einsum {
            equation: "ij->".into(),
        }),
        &[&m],
    );
    assert_close(&sum, &[], &[21.], 0.0);
    let e = eval(
        &Op::Einsum(Einsum {
            equation: "...ij,...jk->...ik".into(),
        }),
        &[&x, &y.clone().reshaped(vec![b, h, d, kk]).unwrap()],
    );
    assert_eq!(e.shape(), &[b, h, q, kk]);
    let implicit = eval(
        &Op::Einsum(Einsum {
            equation: "ij,jk".into(),
        }),
        &[&m, &f(&[3, 1], &[1., 1., 1.])],
    );
    assert_close(&implicit, &[2, 1], &[6., 15.], 0.0);
}

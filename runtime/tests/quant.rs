// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::{Dequantize, Hadamard, MatMulNBits, Quantize};
use compc_ir::{DType, Op};
use compc_runtime::Tensor;

fn q(dtype: DType, shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64_as(dtype, shape.to_vec(), v.to_vec()).unwrap()
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    let x = f(&[6], &[0.5, 1.5, 2.5, -0.5, 300., -300.]);
    let s = f(&[], &[1.]);
    let y = eval_n(
        &Op::QuantizeLinear(Quantize::default()),
        &[Some(&x), Some(&s)],
        1,
    );
    assert_eq!(
        (y[0].dtype(), y[0].to_i64_vec()),
        (DType::U8, vec![0, 2, 2, 0, 255, 0])
    );
    let z = q(DType::I8, &[], &[1]);
    let y = eval(&Op::QuantizeLinear(Quantize::default()), &[&x, &s, &z]);
    assert_eq!(
        (y.dtype(), y.to_i64_vec()),
        (DType::I8, vec![1, 3, 3, 1, 127, -128])
    );
    let a = Quantize {
        output_dtype: Some(DType::I4),
        ..Default::default()
    };
    let y = eval_n(&Op::QuantizeLinear(a), &[Some(&x), Some(&s)], 1);
    assert_eq!(
        (y[0].dtype(), y[0].to_i64_vec()),
        (DType::I4, vec![0, 2, 2, 0, 7, -8])
    );
    // Per-axis on axis 1.
    let x = f(&[2, 2], &[1., 1., 2., 2.]);
    let s = f(&[2], &[0.5, 2.]);
    let y = eval(
        &Op::QuantizeLinear(Quantize::default()),
        &[&x, &s, &q(DType::U8, &[2], &[0, 10])],
    );
    assert_eq!(y.to_i64_vec(), vec![2, 10, 4, 11]);
}

#[test]
fn blocked_dequantize_int4() {
    // B_q: int4[4, 2], blocks of 2 along axis 0 → scale [2, 2].
    let bq = q(DType::I4, &[4, 2], &[-8, 7, 1, -1, 3, 0, -3, 5]);
    let s = f(&[2, 2], &[0.5, 1., 2., 0.25]);
    let z = q(DType::I4, &[2, 2], &[0, -1, 1, 1]);
    let y = eval(
        &Op::DequantizeLinear(Dequantize {
            axis: 0,
            block_size: 2,
        }),
        &[&bq, &s, &z],
    );
    assert_close(&y, &[4, 2], &[-4., 8., 0.5, 0., 4., -0.25, -8., 1.], 0.0);
    // Packing survives a weight round trip.
    let w = bq.to_weight("b").unwrap();
    assert_eq!(w.byte_len(), 4);
    assert_eq!(Tensor::from_weight(&w).unwrap(), bq);
    let e = eval_err(
        &Op::DequantizeLinear(Dequantize {
            axis: 0,
            block_size: 1,
        }),
        &[&bq, &s, &z],
    );
    assert!(e.contains("blocked scale"), "{e}");
}

#[test]
fn dynamic_quantize_linear_matches_onnxruntime() {
    let x = f(&[6], &[0., 2., -3., -2.5, 1.34, 0.5]);
    let r = eval_n(&Op::DynamicQuantizeLinear, &[Some(&x)], 3);
    assert_eq!(r[0].to_i64_vec(), vec![153, 255, 0, 26, 221, 179]);
    assert!((r[1].to_f32_vec()[0] - 0.01960784).abs() < 1e-8);
    assert_eq!(r[2].to_i64_vec(), vec![153]);
}

/// Packs `codes` (`bits` each) little-end first into bytes, `per_row` codes per row.
fn pack(codes: &[u8], bits: usize, rows: usize, per_row: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows * row_bytes];
    let per = 8 / bits;
    for r in 0..rows {
        for t in 0..per_row {
            out[r * row_bytes + t / per] |= codes[r * per_row + t] << ((t % per) * bits);
        }
    }
    out
}

#[test]
fn matmul_nbits_equals_matmul_of_dequantized_weight() {
    for bits in [2usize, 4, 8] {
        let (m, k, n, bs) = (5usize, 40usize, 6usize, 16usize);
        let kb = k.div_ceil(bs);
        let qmax = (1u32 << bits) as f32;
        let codes_nk: Vec<u8> = rand_vec(n * kb * bs, 50 + bits as u64)
            .iter()
            .map(|v| (((v + 1.0) / 2.0 * qmax) as u32).min(qmax as u32 - 1) as u8)
            .collect();
        let zps: Vec<u8> = rand_vec(n * kb, 60)
            .iter()
            .map(|v| (((v + 1.0) / 2.0 * qmax) as u32).min(qmax as u32 - 1) as u8)
            .collect();
        let scales: Vec<f32> = rand_vec(n * kb, 70)
            .iter()
            .map(|v| 0.01 + v.abs() * 0.1)
            .collect();
        let blob = bs * bits / 8;
        let b = Tensor::new(
            DType::U8,
            vec![n, kb, blob],
            compc_runtime::TensorData::U8(pack(&codes_nk, bits, n * kb, bs, blob)),
        )
        .unwrap();
        let zrow = kb.div_ceil(8 / bits);
        let zp = Tensor::new(
            DType::U8,
            vec![n, zrow],
            compc_runtime::TensorData::U8(pack(&zps, bits, n, kb, zrow)),
        )
        .unwrap();
        let sc = f(&[n, kb], &scales);
        let a = f(&[m, k], &rand_vec(m * k, 80));
        let op = Op::MatMulNBits(MatMulNBits {
            k: k as i64,
            n: n as i64,
            bits: bits as i64,
            block_size: bs as i64,
            accuracy_level: 0,
        });
        let y = eval(&op, &[&a, &b, &sc, &zp]);
        // The same weight as a blocked QDQ pair: B_q[K, N], scale[kb, N], zp[kb, N].
        let dt = if bits == 4 { DType::U4 } else { DType::U8 };
        let bq: Vec<i64> = (0..k * n)
            .map(|p| codes_nk[((p % n) * kb + (p / n) / bs) * bs + (p / n) % bs] as i64)
            .collect();
        let st: Vec<f32> = (0..kb * n).map(|p| scales[(p % n) * kb + p / n]).collect();
        let zt: Vec<i64> = (0..kb * n)
            .map(|p| zps[(p % n) * kb + p / n] as i64)
            .collect();
        let w = eval(
            &Op::DequantizeLinear(Dequantize {
                axis: 0,
                block_size: bs as i64,
            }),
            &[
                &q(dt, &[k, n], &bq),
                &f(&[kb, n], &st),
                &q(dt, &[kb, n], &zt),
            ],
        );
        let want = eval(&Op::MatMul, &[&a, &w]);
        assert_eq!(y.shape(), &[m, n]);
        assert!(
            rel_err(&y.to_f32_vec(), &want.to_f32_vec()) < 1e-5,
            "bits {bits}"
        );
        // Without zero points the default is 2^(bits-1); with a bias it is added.
        let bias = f(&[n], &rand_vec(n, 90));
        let y = eval_n(
            &op,
            &[Some(&a), Some(&b), Some(&sc), None, None, Some(&bias)],
            1,
        )
        .remove(0);
        let zdef = vec![1i64 << (bits - 1); kb * n];
        let w = eval(
            &Op::DequantizeLinear(Dequantize {
                axis: 0,
                block_size: bs as i64,
            }),
            &[
                &q(dt, &[k, n], &bq),
                &f(&[kb, n], &st),
                &q(dt, &[kb, n], &zdef),
            ],
        );
        let want = eval(
            &Op::Binary(compc_ir::op::BinaryOp::Add),
            &[&eval(&Op::MatMul, &[&a, &w]), &bias],
        );
        assert!(
            rel_err(&y.to_f32_vec(), &want.to_f32_vec()) < 1e-5,
            "bits {bits} default zp"
        );
    }
}

#[test]
fn hadamard_twice_is_identity() {
    let x = f(&[3, 16], &rand_vec(48, 100));
    for size in [0i64, 4, 16] {
        let h = eval(&Op::Hadamard(Hadamard { size }), &[&x]);
        let hh = eval(&Op::Hadamard(Hadamard { size }), &[&h]);
        assert_close(&hh, &[3, 16], &x.to_f32_vec(), 1e-6);
    }
    let v = f(&[4], &[1., 0., 0., 0.]);
    assert_close(
        &eval(&Op::Hadamard(Hadamard { size: 0 }), &[&v]),
        &[4],
        &[0.5, 0.5, 0.5, 0.5],
        1e-7,
    );
    let v = f(&[2], &[1., 2.]);
    let s = 0.5f32.sqrt();
    assert_close(
        &eval(&Op::Hadamard(Hadamard { size: 2 }), &[&v]),
        &[2],
        &[3. * s, -s],
        1e-6,
    );
    assert!(eval_err(&Op::Hadamard(Hadamard { size: 3 }), &[&x]).contains("power of two"));
    assert!(eval_err(&Op::Hadamard(Hadamard { size: 32 }), &[&x]).contains("power of two"));
}

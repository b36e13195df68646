//! GPTQ against its invariants (techniques.md §1.2, Appendix A).

mod quant_common;

use compc_passes::quant::gptq::{gptq, inverse_cholesky, GptqConfig};
use compc_passes::quant::rtn::rtn;
use compc_passes::quant::Grid;
use quant_common::Lcg;

fn cfg(bits: u32, sym: bool, group: usize, act_order: bool) -> GptqConfig {
    GptqConfig {
        grid: Grid::new(bits, sym),
        group,
        block: 128,
        damp: 0.01,
        act_order,
    }
}

fn identity(n: usize, c: f64) -> Vec<f64> {
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        h[i * n + i] = c;
    }
    h
}

/// `H = 2XᵀX/N` of correlated inputs `X = Z·A` (N × n).
fn correlated_hessian(rng: &mut Lcg, tokens: usize, n: usize) -> (Vec<f32>, Vec<f64>) {
    let a: Vec<f32> = (0..n * n)
        .map(|_| rng.normal() / (n as f32).sqrt())
        .collect();
    let mut x = vec![0f32; tokens * n];
    for t in 0..tokens {
        let z: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        for j in 0..n {
            // A few channels carry much larger activations, as in real LLMs.
            let boost = if j % 17 == 0 { 8.0 } else { 1.0 };
            x[t * n + j] = boost * (0..n).map(|i| z[i] * a[i * n + j]).sum::<f32>();
        }
    }
    let mut h = vec![0f64; n * n];
    for t in 0..tokens {
        let row = &x[t * n..(t + 1) * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] += 2.0 * row[i] as f64 * row[j] as f64 / tokens as f64;
            }
        }
    }
    (x, h)
}

/// ‖(W − Q) Xᵀ‖² for X (tokens × n).
fn output_error(w: &[f32], q: &[f32], x: &[f32], n: usize) -> f64 {
    let rows = w.len() / n;
    let mut e = 0f64;
    for xr in x.chunks(n) {
        for r in 0..rows {
            let d: f64 = (0..n)
                .map(|j| (w[r * n + j] - q[r * n + j]) as f64 * xr[j] as f64)
                .sum();
            e += d * d;
        }
    }
    e
}

#[test]
fn gptq_with_identity_hessian_equals_rtn_bit_for_bit() {
    let mut rng = Lcg(11);
    let (rows, n) = (24, 256);
    let w = rng.vec(rows * n, 1.0);
    for (bits, sym) in [
        (8, true),
        (8, false),
        (4, false),
        (4, true),
        (3, false),
        (2, true),
    ] {
        for group in [0, 32, 64, 128] {
            for act_order in [false, true] {
                let c = cfg(bits, sym, group, act_order);
                let got = gptq(&w, rows, n, &identity(n, 1.0), &c).unwrap();
                let want = rtn(&w, rows, n, group, c.grid);
                assert_eq!(
                    got.q.codes, want.codes,
                    "{bits}/{sym} g{group} act_order {act_order}"
                );
                assert_eq!(got.q.scales, want.scales);
                assert_eq!(got.q.zeros, want.zeros);
            }
        }
    }
}

#[test]
fn any_diagonal_hessian_gives_rtn_even_with_act_order() {
    // A diagonal H has a diagonal U: no error is propagated; act-order permutes the
    // columns and the result must come back in the original order.
    let mut rng = Lcg(12);
    let (rows, n) = (16, 192);
    let w = rng.vec(rows * n, 1.0);
    let mut h = vec![0f64; n * n];
    for i in 0..n {
        h[i * n + i] = 0.1 + rng.next().abs() as f64 * 10.0;
    }
    for group in [0, 64] {
        let c = cfg(4, false, group, true);
        let got = gptq(&w, rows, n, &h, &c).unwrap();
        let want = rtn(&w, rows, n, group, c.grid);
        assert_eq!(got.q, want, "g{group}");
    }
}

#[test]
fn reported_loss_is_half_the_weighted_squared_error() {
    // With H = c·I, d = U_jj = 1/sqrt(c(1 + damp)) for every column.
    let mut rng = Lcg(13);
    let (rows, n, c) = (8, 128, 3.0);
    let w = rng.vec(rows * n, 1.0);
    let conf = cfg(4, false, 32, false);
    let got = gptq(&w, rows, n, &identity(n, c), &conf).unwrap();
    let q = got.q.dequantize();
    let sq: f64 = w
        .iter()
        .zip(&q)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let want = 0.5 * sq * c * (1.0 + conf.damp);
    assert!(
        (got.loss - want).abs() <= want * 1e-4,
        "loss {} vs {want}",
        got.loss
    );
}

#[test]
fn gptq_beats_rtn_on_correlated_inputs() {
    let mut rng = Lcg(14);
    let (rows, n, tokens) = (32, 128, 512);
    let (x, h) = correlated_hessian(&mut rng, tokens, n);
    let w = rng.vec(rows * n, 0.5);
    for (bits, group, act_order) in [(4, 32, false), (4, 128, true), (3, 0, true), (2, 64, false)] {
        let c = cfg(bits, false, group, act_order);
        let g = gptq(&w, rows, n, &h, &c).unwrap();
        let r = rtn(&w, rows, n, group, c.grid);
        let eg = output_error(&w, &g.q.dequantize(), &x, n);
        let er = output_error(&w, &r.dequantize(), &x, n);
        assert!(
            eg < 0.9 * er,
            "int{bits} g{group} act_order {act_order}: GPTQ {eg:.4e} vs RTN {er:.4e}"
        );
    }
}

#[test]
fn dead_inputs_get_zero_weights() {
    let mut rng = Lcg(15);
    let (rows, n) = (8, 64);
    let (_, mut h) = correlated_hessian(&mut rng, 256, n);
    for j in [3, 40] {
        for i in 0..n {
            h[i * n + j] = 0.0;
            h[j * n + i] = 0.0;
        }
    }
    let w = rng.vec(rows * n, 1.0);
    let got = gptq(&w, rows, n, &h, &cfg(4, false, 32, true)).unwrap();
    assert_eq!(got.dead, 2);
    let q = got.q.dequantize();
    for r in 0..rows {
        assert_eq!(q[r * n + 3], 0.0);
        assert_eq!(q[r * n + 40], 0.0);
    }
}

#[test]
fn an_indefinite_hessian_is_retried_with_more_damping() {
    let n = 32;
    let mut h = identity(n, 1.0);
    h[0] = -0.5; // one negative eigenvalue: not positive definite at damp 0.01
    let (u, damp) = inverse_cholesky(&h, n, 0.01).unwrap();
    assert!(damp > 0.01, "damping {damp}");
    assert!(u.iter().all(|v| v.is_finite()));
    let mut rng = Lcg(16);
    let w = rng.vec(4 * n, 1.0);
    let got = gptq(&w, 4, n, &h, &cfg(4, false, 32, false)).unwrap();
    assert!(got.damp > 0.01);
    assert!(got.q.dequantize().iter().all(|v| v.is_finite()));
    // Hopeless: NaN in the Hessian is an error, not a panic.
    let mut bad = identity(n, 1.0);
    bad[5] = f64::NAN;
    assert!(gptq(&w, 4, n, &bad, &cfg(4, false, 32, false)).is_err());
}

#[test]
fn inverse_cholesky_factor_reconstructs_the_inverse() {
    let mut rng = Lcg(17);
    let n = 48;
    let (_, h) = correlated_hessian(&mut rng, 200, n);
    let (u, damp) = inverse_cholesky(&h, n, 0.01).unwrap();
    assert_eq!(damp, 0.01);
    // (H + λI) · UᵀU = I
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let hd: Vec<f64> = (0..n * n)
        .map(|k| h[k] + if k / n == k % n { 0.01 * mean } else { 0.0 })
        .collect();
    let mut hinv = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            hinv[i * n + j] = (0..n)
                .map(|k| u[k * n + i] as f64 * u[k * n + j] as f64)
                .sum();
        }
    }
    for i in 0..n {
        for j in 0..n {
            let v: f64 = (0..n).map(|k| hd[i * n + k] * hinv[k * n + j]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-3, "({i},{j}) = {v}");
        }
    }
}

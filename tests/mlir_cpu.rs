//! The MLIR CPU backend against the reference runtime: every fixture family (CNN,
//! encoder, RoPE decoder; both exporters), at batch 1 and 3 (dynamic batch and sequence
//! dims), JIT-compiled and through the shared library `--target cpu` writes.
//! Tolerance: 1e-4 relative to the largest output magnitude.

#![cfg(feature = "mlir")]

mod common;

use common::*;
use compc::runtime::Tensor;

fn check(model: &str, exporter: &str, got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len());
    for ((n, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.shape(), w.shape(), "{model}.{exporter} {n}: shape");
        let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let err = g
            .iter()
            .zip(&w)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale,
            "{model}.{exporter} {n}: max abs err {err:e} > 1e-4 × {scale:e}"
        );
        eprintln!("{model}.{exporter} {n}: max abs err {err:.2e} (scale {scale:.2e})");
    }
}

#[test]
fn jit_matches_reference_runtime_on_all_fixtures() {
    for model in MODELS {
        for exporter in EXPORTERS {
            let g = compc::driver::load_model(&model_path(model, exporter)).unwrap();
            let native =
                compc::native::jit(&g).unwrap_or_else(|e| panic!("{model}.{exporter}: {e:#}"));
            for case in CASES {
                let inputs = read_npz(&inputs_path(model, case));
                let want = compc::runtime::run(&g, &inputs).unwrap();
                let got = native.run(&inputs).unwrap();
                check(model, exporter, &got, &want);
            }
        }
    }
}

//! The ONNX path on real exported models (CNN, BERT-style encoder, Llama-style decoder,
//! each from both torch exporters), at two batch/sequence shapes:
//! - import → text → parse → text is the identity;
//! - import → export → onnxruntime equals the original's onnxruntime outputs to 1e-6 abs;
//! - compc's runtime on the imported graph agrees with onnxruntime to rtol 1e-4 (numpy's
//!   allclose with atol 1e-5: float sums in another order differ by ~1e-6 near zero);
//! - the idioms each family must show are found by structure.

mod common;
use common::*;

#[test]
fn import_print_parse_print_is_the_identity() {
    for m in MODELS {
        for e in EXPORTERS {
            let g = compc::driver::load_model(&model_path(m, e)).unwrap();
            let text = compc::ir::text::print(&g);
            let again =
                compc::ir::text::parse(&text).unwrap_or_else(|err| panic!("{m}.{e}: {err}"));
            assert_eq!(compc::ir::text::print(&again), text, "{m}.{e}");
        }
    }
}

#[test]
fn export_is_lossless_under_onnxruntime() {
    if !oracle_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for m in MODELS {
        for e in EXPORTERS {
            let g = compc::driver::load_model(&model_path(m, e)).unwrap();
            let exported = dir.path().join(format!("{m}.{e}.onnx"));
            compc::onnx::export::export_file(&g, &exported, &Default::default())
                .unwrap_or_else(|err| panic!("{m}.{e}: {err}"));
            for c in CASES {
                let out = dir.path().join(format!("{m}.{e}.{c}.out.npz"));
                ort_run(&exported, &inputs_path(m, c), &out)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c}: {err}"));
                let (abs, _) = max_errors(&read_npz(&out), &read_npz(&expected_path(m, e, c)), 1.0)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c}: {err}"));
                assert!(abs <= 1e-6, "{m}.{e}.{c}: max abs error {abs} after export");
            }
        }
    }
}

#[test]
fn reference_runtime_agrees_with_onnxruntime() {
    for m in MODELS {
        for e in EXPORTERS {
            let g = compc::driver::load_model(&model_path(m, e)).unwrap();
            for c in CASES {
                let got = compc::runtime::run(&g, &read_npz(&inputs_path(m, c)))
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c}: {err}"));
                let want = read_npz(&expected_path(m, e, c));
                if let Err(err) = allclose(&got, &want, 1e-4, 1e-5) {
                    let (abs, rel) = max_errors(&got, &want, 1e-3).unwrap_or_default();
                    panic!("{m}.{e}.{c}: {err}; max abs error {abs}, max rel {rel}");
                }
            }
        }
    }
}

#[test]
fn cleanup_pipeline_keeps_the_function() {
    let registry = compc::passes::Registry::with_builtin_passes();
    for m in MODELS {
        for e in EXPORTERS {
            let mut g = compc::driver::load_model(&model_path(m, e)).unwrap();
            let passes = registry.parse("const-fold,cse,dce").unwrap();
            compc::passes::PassManager::new(passes).run(&mut g).unwrap();
            let c = "b3";
            let got = compc::runtime::run(&g, &read_npz(&inputs_path(m, c))).unwrap();
            allclose(&got, &read_npz(&expected_path(m, e, c)), 1e-4, 1e-5)
                .unwrap_or_else(|err| panic!("{m}.{e} after const-fold,cse,dce: {err}"));
        }
    }
}

#[test]
fn idioms_are_found_by_structure() {
    use compc::passes::idioms::{Idioms, NormKind};
    for e in EXPORTERS {
        let g = compc::driver::load_model(&model_path("decoder", e)).unwrap();
        let i = Idioms::find(&g).unwrap();
        let ctx = format!("decoder.{e}:\n{}", i.describe(&g));
        // 2 layers × (q, k, v, o, gate, up, down) + lm_head.
        assert_eq!(i.linears.len(), 15, "{ctx}");
        assert_eq!(
            i.norms
                .iter()
                .filter(|n| n.kind == NormKind::Rms && n.decomposed)
                .count(),
            5,
            "{ctx}"
        );
        assert_eq!(i.attention.len(), 2, "{ctx}");
        for a in &i.attention {
            assert!(a.rope && a.masked && a.o.is_some(), "{ctx}");
            assert_eq!((a.num_heads, a.head_dim), (Some(8), Some(8)), "{ctx}");
        }
        assert_eq!(i.mlps.len(), 2, "{ctx}");
        assert!(
            i.mlps
                .iter()
                .all(|m| m.gate.is_some() && m.activation == "silu"),
            "{ctx}"
        );
        assert_eq!(i.residuals.len(), 4, "{ctx}");
        assert_eq!(i.blocks.len(), 2, "{ctx}");
        assert!(
            i.blocks
                .iter()
                .all(|b| b.mlp.is_some() && b.norms.len() == 2),
            "{ctx}"
        );

        let g = compc::driver::load_model(&model_path("encoder", e)).unwrap();
        let i = Idioms::find(&g).unwrap();
        let ctx = format!("encoder.{e}:\n{}", i.describe(&g));
        assert_eq!(i.attention.len(), 2, "{ctx}");
        assert!(
            i.attention
                .iter()
                .all(|a| !a.rope && a.masked && a.num_heads == Some(4)),
            "{ctx}"
        );
        assert_eq!(i.mlps.len(), 2, "{ctx}");
        assert!(
            i.mlps
                .iter()
                .all(|m| m.gate.is_none() && m.activation == "gelu"),
            "{ctx}"
        );
        assert_eq!(
            i.norms.iter().filter(|n| n.kind == NormKind::Layer).count(),
            5,
            "{ctx}"
        );
        assert_eq!(i.blocks.len(), 2, "{ctx}");

        let g = compc::driver::load_model(&model_path("cnn", e)).unwrap();
        let i = Idioms::find(&g).unwrap();
        let ctx = format!("cnn.{e}:\n{}", i.describe(&g));
        use compc::passes::idioms::LinearKind;
        assert_eq!(
            i.linears
                .iter()
                .filter(|l| l.kind == LinearKind::Conv)
                .count(),
            17,
            "{ctx}"
        );
        assert_eq!(
            i.linears
                .iter()
                .filter(|l| matches!(l.kind, LinearKind::Gemm { .. }))
                .count(),
            1,
            "{ctx}"
        );
        assert!(i.attention.is_empty(), "{ctx}");
    }
}

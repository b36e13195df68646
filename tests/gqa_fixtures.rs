//! `gqa` on the fixture models: G = H is exact for every method, aligning without
//! merging is exact (keys under RoPE are rotated per plane only), merging shrinks the
//! k/v projections and the KV heads the idioms see, the result runs in onnxruntime with
//! compc's outputs, and bad options are errors that say why.

mod common;

use common::{
    close, lm, lm_ids, model_path, ort_outputs, outputs, read_npz, run_pipeline, try_pipeline,
};
use compc::ir::Graph;
use compc::passes::idioms::Idioms;
use compc::passes::CalibData;

fn encoder() -> Graph {
    compc::driver::load_model(&model_path("encoder", "torchscript")).unwrap()
}

fn kv_heads(g: &Graph) -> Vec<u64> {
    Idioms::find(g)
        .unwrap()
        .attention
        .iter()
        .map(|a| a.num_kv_heads.unwrap_or(0))
        .collect()
}

/// The small decoder fixture: 2 Llama blocks, 8 heads × 8, RoPE.
fn decoder() -> Graph {
    compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap()
}

#[test]
fn decoder_exact_cases() {
    let g = decoder();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    let before = outputs(&g, &inputs);
    for p in [
        "gqa{groups=8,method=mean}",
        "gqa{groups=8,method=align}",
        "gqa{groups=8,method=align,merge=mean}",
        // Heads are regrouped, permuted and rotated (per RoPE plane for keys), not merged.
        "gqa{groups=4,method=align,merge=none}",
        "gqa{groups=2,method=align,merge=none}",
    ] {
        let out = run_pipeline(&g, p, Some(&calib));
        assert_eq!(kv_heads(&out), vec![8; 2], "{p}");
        let after = outputs(&out, &inputs);
        assert!(
            close(&after[0], &before[0], 1e-4, 2e-4),
            "{p}: outputs changed"
        );
    }
}

#[test]
fn lm_merged_heads_run_in_onnxruntime() {
    let g = lm();
    let calib = CalibData {
        tensors: lm_ids(2, 32, 0),
    };
    let inputs = lm_ids(2, 24, 5000);
    let before = outputs(&g, &inputs);
    for (p, kv) in [
        ("gqa{groups=2,method=align}", 2),
        ("gqa{groups=4,method=mean}", 4),
    ] {
        let out = run_pipeline(&g, p, Some(&calib));
        assert_eq!(kv_heads(&out), vec![kv; 4], "{p}");
        let idioms = Idioms::find(&out).unwrap();
        let a = &idioms.attention[0];
        assert_eq!(idioms.linears[a.k].out_features, Some(kv * 32), "{p}");
        assert_eq!(idioms.linears[a.q].out_features, Some(256), "{p}");
        let after = outputs(&out, &inputs);
        assert!(
            !close(&after[0], &before[0], 1e-4, 1e-4),
            "{p}: a merge changes the model"
        );
        if let Some(ort) = ort_outputs(&out, &inputs) {
            assert!(
                close(&ort[0], &after[0], 1e-4, 1e-3),
                "{p}: onnxruntime disagrees"
            );
        }
    }
}

#[test]
fn encoder_exact_and_merged() {
    let g = encoder();
    let inputs = read_npz(&common::inputs_path("encoder", "b3"));
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    let before = outputs(&g, &inputs);
    let h = kv_heads(&g)[0];
    for p in [
        format!("gqa{{groups={h},method=align}}"),
        "gqa{groups=2,method=align,merge=none}".to_string(),
    ] {
        let out = run_pipeline(&g, &p, Some(&calib));
        for (a, b) in outputs(&out, &inputs).iter().zip(&before) {
            assert!(close(a, b, 1e-4, 2e-4), "{p}: outputs changed");
        }
    }
    for m in ["mean", "align"] {
        let out = run_pipeline(&g, &format!("gqa{{groups=2,method={m}}}"), Some(&calib));
        assert!(kv_heads(&out).iter().all(|&k| k == 2), "{m}");
        let ours = outputs(&out, &inputs);
        if let Some(ort) = ort_outputs(&out, &inputs) {
            for (a, b) in ort.iter().zip(&ours) {
                assert!(close(a, b, 1e-4, 1e-3), "{m}: onnxruntime disagrees");
            }
        }
    }
}

#[test]
fn bad_options_are_errors() {
    let g = lm();
    let e = try_pipeline(&g, "gqa{groups=3,method=mean}", None).unwrap_err();
    assert!(e.contains("groups=3 does not divide the 8 heads"), "{e}");
    let e = try_pipeline(&g, "gqa{groups=4,method=align}", None).unwrap_err();
    assert!(e.contains("calibration"), "{e}");
    let cnn = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let e = try_pipeline(&cnn, "gqa{groups=1,method=mean}", None).unwrap_err();
    assert!(e.contains("no attention"), "{e}");
}

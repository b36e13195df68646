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

/// torch.export's decoder splits q, k and v into heads with one shared shape Concat; giving
/// k and v fewer heads must leave q's split alone. Both exports hold the same weights, so
/// the merged models agree, and onnxruntime runs the torch.export one with compc's outputs.
#[test]
fn the_dynamo_decoder_merges_like_the_torchscript_one() {
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    for p in ["gqa{groups=2}", "gqa{groups=4,method=mean}"] {
        let merged: Vec<(Graph, Vec<Vec<f32>>)> = ["torchscript", "dynamo"]
            .iter()
            .map(|e| {
                let g = compc::driver::load_model(&model_path("decoder", e)).unwrap();
                let out = run_pipeline(&g, p, Some(&calib));
                let after = outputs(&out, &inputs);
                (out, after)
            })
            .collect();
        let (dynamo, after) = &merged[1];
        let kv = if p.contains("groups=2") { 2 } else { 4 };
        assert_eq!(kv_heads(dynamo), vec![kv; 2], "{p}");
        assert!(
            close(&after[0], &merged[0].1[0], 1e-5, 1e-5),
            "{p}: the two exports merge differently"
        );
        if let Some(ort) = ort_outputs(dynamo, &inputs) {
            assert!(
                close(&ort[0], &after[0], 1e-4, 1e-4),
                "{p}: onnxruntime disagrees"
            );
        }
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
    // After quant the projections are quantized; the refusal says to merge heads first.
    let e = try_pipeline(&g, "quant{method=rtn},gqa{groups=2,method=mean}", None).unwrap_err();
    assert!(e.contains("run gqa before quant"), "{e}");
    // SmoothQuant's activation quantizers hide the output projection: the same hint.
    let dec = decoder();
    let calib = compc::passes::CalibData {
        tensors: read_npz(&common::fixtures().join("models/decoder.inputs.b3.npz")),
    };
    let e = try_pipeline(
        &dec,
        "quant{method=smoothquant},gqa{groups=2,method=mean}",
        Some(&calib),
    )
    .unwrap_err();
    assert!(
        e.contains("no output projection found") && e.contains("run gqa before quant"),
        "{e}"
    );
}

/// `n` byte windows of length `t` from the LM's held-out text (never used to calibrate).
fn heldout_ids(n: usize, t: usize, offset: usize) -> Vec<(String, compc::runtime::Tensor)> {
    let text = std::fs::read(common::fixtures().join("lm/heldout.txt")).unwrap();
    let ids: Vec<i64> = (0..n * t).map(|i| text[offset + i] as i64).collect();
    vec![(
        "input_ids".into(),
        compc::runtime::Tensor::from_i64(vec![n, t], ids),
    )]
}

fn count_op(g: &Graph, name: &str) -> usize {
    g.node_ids()
        .filter(|&n| g.node(n).op.name() == name)
        .count()
}

/// Largest |a − b| relative to the largest |b|.
fn rel_max(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn lm_contrib_matches_expand() {
    let g = lm();
    let calib = CalibData {
        tensors: lm_ids(2, 32, 0),
    };
    let expand = run_pipeline(&g, "gqa{groups=4,op=expand}", Some(&calib));
    let fused = run_pipeline(&g, "gqa{groups=4,op=contrib}", Some(&calib));
    // One fused node per layer; the decomposed attention is gone.
    assert_eq!(count_op(&fused, "group_query_attention"), 4);
    assert_eq!(count_op(&fused, "softmax"), 0);
    assert!(fused.node_count() < expand.node_count() / 2);
    // Batch 1 and 3, two sequence lengths, held-out text.
    for (n, t, off) in [(1, 40, 100), (3, 24, 9000)] {
        let inputs = heldout_ids(n, t, off);
        let ours = outputs(&fused, &inputs);
        let want = outputs(&expand, &inputs);
        assert!(rel_max(&ours[0], &want[0]) < 1e-4, "compc: b{n} s{t}");
        let (Some(ort_fused), Some(ort_expand)) =
            (ort_outputs(&fused, &inputs), ort_outputs(&expand, &inputs))
        else {
            continue;
        };
        let r = rel_max(&ort_fused[0], &ort_expand[0]);
        assert!(r < 1e-4, "onnxruntime contrib vs expand, b{n} s{t}: {r}");
        let r = rel_max(&ours[0], &ort_fused[0]);
        assert!(
            r < 1e-4,
            "compc vs onnxruntime GroupQueryAttention, b{n} s{t}: {r}"
        );
    }
}

#[test]
fn lm_contrib_with_all_heads_is_exact() {
    let g = lm();
    let out = run_pipeline(&g, "gqa{groups=8,method=mean,op=contrib}", None);
    assert_eq!(count_op(&out, "group_query_attention"), 4);
    for (n, t, off) in [(1, 33, 500), (2, 16, 4000)] {
        let inputs = heldout_ids(n, t, off);
        let want = outputs(&g, &inputs);
        let ours = outputs(&out, &inputs);
        assert!(rel_max(&ours[0], &want[0]) < 1e-5, "compc: b{n} s{t}");
        if let Some(ort) = ort_outputs(&out, &inputs) {
            let r = rel_max(&ort[0], &want[0]);
            assert!(r < 1e-5, "onnxruntime b{n} s{t}: {r}");
        }
    }
}

#[test]
fn contrib_refusals_say_why() {
    let enc = encoder();
    let e = try_pipeline(&enc, "gqa{groups=2,method=mean,op=contrib}", None).unwrap_err();
    assert!(
        e.contains("attention[0]") && e.contains("bidirectional") && e.contains("op=expand"),
        "{e}"
    );
    // The small decoder's heads (8 wide) are below onnxruntime's rotary minimum.
    let e = try_pipeline(&decoder(), "gqa{groups=2,method=mean,op=contrib}", None).unwrap_err();
    assert!(e.contains("multiple of 16"), "{e}");
}

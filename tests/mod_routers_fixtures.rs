//! `mod-routers` on the LM fixture: capacity 1.0 with gate 1 reproduces the original
//! (compc's runtime and onnxruntime on the export); capacity 0.5 on half the blocks runs
//! in onnxruntime with compc's outputs, changes the model and cuts FLOPs per token.

mod common;

use common::{close, lm, lm_ids, ort_outputs, outputs, try_pipeline};
use compc::eval::{evaluate, EvalData};
use compc::passes::CalibData;

fn calib() -> CalibData {
    CalibData {
        tensors: lm_ids(8, 64, 0),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn full_capacity_is_exact() {
    let g = lm();
    let inputs = lm_ids(2, 24, 5000);
    let before = outputs(&g, &inputs);
    let c = calib();
    for (p, cal) in [
        ("mod-routers{capacity=1.0,layers=0+1+2+3,router=norm}", None),
        ("mod-routers{capacity=1.0,layers=1+3,router=fit}", Some(&c)),
    ] {
        let out = try_pipeline(&g, p, cal).unwrap();
        let text = compc::ir::text::print(&out);
        assert!(
            text.contains("top_k") && text.contains("scatter_elements"),
            "{p}: no routing in the graph"
        );
        let ours = outputs(&out, &inputs);
        assert!(
            close(&ours[0], &before[0], 1e-4, 1e-4),
            "{p}: max diff {}",
            max_diff(&ours[0], &before[0])
        );
        if let Some(ort) = ort_outputs(&out, &inputs) {
            assert!(
                close(&ort[0], &before[0], 1e-4, 1e-4),
                "{p}: onnxruntime max diff {}",
                max_diff(&ort[0], &before[0])
            );
        }
    }
}

#[test]
fn half_capacity_on_half_the_blocks() {
    let g = lm();
    let inputs = lm_ids(2, 32, 9000);
    let before = outputs(&g, &inputs);
    let c = calib();
    for p in [
        "mod-routers{capacity=0.5,layers=1+3,router=fit}",
        "mod-routers{capacity=0.5,layers=1+3,router=norm}",
        "mod-routers{capacity=0.5,layers=auto,router=fit,gate=sigmoid}",
        "mod-routers{capacity=0.75,layers=0+2,router=fit,target=attention}",
    ] {
        let out = try_pipeline(&g, p, Some(&c)).unwrap();
        let ours = outputs(&out, &inputs);
        assert!(
            !close(&ours[0], &before[0], 1e-3, 1e-3),
            "{p}: routing half the tokens changed nothing"
        );
        assert!(
            ours[0].iter().all(|v| v.is_finite()),
            "{p}: non-finite logits"
        );
        if let Some(ort) = ort_outputs(&out, &inputs) {
            assert!(
                close(&ort[0], &ours[0], 1e-4, 1e-3),
                "{p}: onnxruntime disagrees, max diff {}",
                max_diff(&ort[0], &ours[0])
            );
        }
        let r = evaluate(&g, &out, &EvalData::Npz(inputs.clone())).unwrap();
        let (a, b) = (r.original.flops_per_token, r.transformed.flops_per_token);
        // Two of four blocks on half the tokens: roughly a quarter of the block FLOPs go.
        assert!(
            b < if p.contains("0.75") { 0.95 } else { 0.85 } * a,
            "{p}: FLOPs per token {a} → {b}"
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let g = lm();
    let e = try_pipeline(&g, "mod-routers{layers=1+7,router=norm}", None).unwrap_err();
    assert!(
        e.contains("names block 7, but the model has 4 blocks"),
        "{e}"
    );
    let e = try_pipeline(&g, "mod-routers{layers=1+3}", None).unwrap_err();
    assert!(e.contains("need calibration data"), "{e}");
    let e = try_pipeline(&g, "mod-routers{layers=x}", None).unwrap_err();
    assert!(e.contains("is not a block index"), "{e}");
    let e = try_pipeline(&g, "mod-routers{layers=1,gate=sigmoid,router=norm}", None).unwrap_err();
    assert!(e.contains("gate=sigmoid needs router=fit"), "{e}");
}

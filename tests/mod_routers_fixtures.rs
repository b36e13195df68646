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

/// The dynamo export builds its reshape targets from the model input's shape, outside
/// the blocks; routing rewrites their sequence entries to k.
#[test]
fn dynamo_export_reshapes_follow_the_routed_count() {
    let g = compc::driver::load_model(&common::fixtures().join("lm/lm.dynamo.onnx")).unwrap();
    let inputs = lm_ids(2, 20, 6000);
    let before = outputs(&g, &inputs);
    let exact = try_pipeline(
        &g,
        "mod-routers{capacity=1.0,layers=0+1+2+3,router=norm}",
        None,
    )
    .unwrap();
    assert!(close(&outputs(&exact, &inputs)[0], &before[0], 1e-4, 1e-4));
    let half = try_pipeline(&g, "mod-routers{capacity=0.5,layers=1+3,router=norm}", None).unwrap();
    let ours = outputs(&half, &inputs);
    assert!(!close(&ours[0], &before[0], 1e-3, 1e-3));
    if let Some(ort) = ort_outputs(&half, &inputs) {
        assert!(
            close(&ort[0], &ours[0], 1e-4, 1e-3),
            "max diff {}",
            max_diff(&ort[0], &ours[0])
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

/// Routed tokens keep their absolute positions and see only routed keys: block 0 routed
/// at capacity 0.5 equals, at the routed positions, the original block 0 with the other
/// tokens hidden as keys (RoPE at the original positions, causal mask among the routed
/// ones), and leaves the other positions as they were.
#[test]
fn routed_tokens_keep_their_absolute_positions() {
    use compc::ir::op::BinaryOp;
    use compc::ir::{DType, GraphOutput, Op, Shape, TensorType, ValueRef};
    use compc::passes::idioms::Idioms;
    use compc::passes::mod_routers::region;
    use compc::runtime::Tensor;

    let g = lm();
    let idioms = Idioms::find(&g).unwrap();
    let reg = region::find(&g, &idioms, 0).unwrap();
    let (t, d) = (24, 256);
    let inputs = lm_ids(1, t, 4000);
    let run_value = |g: &compc::ir::Graph, v: ValueRef| {
        let mut h = g.clone();
        h.outputs = vec![GraphOutput {
            name: "probe".into(),
            value: v,
        }];
        compc::runtime::run(&h, &inputs).unwrap()[0].1.to_f32_vec()
    };
    // The tokens the norm router keeps: the top half by mean(x²), in order.
    let x = run_value(&g, reg.input);
    let s: Vec<f32> = (0..t)
        .map(|i| x[i * d..(i + 1) * d].iter().map(|v| v * v).sum::<f32>() / d as f32)
        .collect();
    let mut order: Vec<usize> = (0..t).collect();
    order.sort_by(|a, b| s[*b].total_cmp(&s[*a]));
    let keep: Vec<usize> = order[..t / 2].to_vec();
    // Reference: the original block with the other tokens hidden as keys.
    let mut reference = g.clone();
    let (mask, _) = reg
        .positional
        .iter()
        .find(|(_, axes)| axes.len() == 2)
        .expect("the block reads a [seq, seq] mask");
    let hide: Vec<bool> = (0..t).map(|j| !keep.contains(&j)).collect();
    let hc = reference.add_const(
        Tensor::from_bool(vec![1, t], hide)
            .to_weight("hide_keys")
            .unwrap(),
    );
    let or = reference.add_node(
        Op::Binary(BinaryOp::Or),
        vec![Some(*mask), Some(ValueRef::new(hc, 0))],
        vec![TensorType {
            dtype: DType::Bool,
            shape: Shape::Unranked,
        }],
        "hide",
    );
    for &n in &reg.nodes {
        for i in 0..reference.node(n).inputs().len() {
            if reference.node(n).input(i) == Some(*mask) {
                reference.set_input(n, i, Some(ValueRef::new(or, 0)));
            }
        }
    }
    let want = run_value(&reference, reg.output);
    let plain = run_value(&g, reg.output);
    let routed = try_pipeline(&g, "mod-routers{capacity=0.5,layers=0,router=norm}", None).unwrap();
    let scatter = routed
        .node_ids()
        .find(|&id| matches!(routed.node(id).op, Op::ScatterElements(_)))
        .expect("a routed block");
    let got = run_value(&routed, ValueRef::new(scatter, 0));
    let mut hidden_changed = 0f32;
    for i in 0..t {
        let r = i * d..(i + 1) * d;
        if keep.contains(&i) {
            assert!(
                close(&got[r.clone()], &want[r.clone()], 1e-4, 1e-4),
                "routed token {i}: max diff {}",
                max_diff(&got[r.clone()], &want[r.clone()])
            );
            hidden_changed = hidden_changed.max(max_diff(&plain[r.clone()], &want[r]));
        } else {
            assert_eq!(&got[r.clone()], &x[r], "skipped token {i} changed");
        }
    }
    // Hiding the skipped keys matters, so the comparison above is not vacuous.
    assert!(hidden_changed > 1e-3, "{hidden_changed}");
}

//! The `quant` pass as a whole: defaults, errors, idempotence, every method on small
//! graphs.

mod quant_common;

use compc_ir::{DType, Graph, Op, Weight};
use compc_passes::CalibData;
use compc_runtime::Tensor;
use quant_common::{calib, count_ops, gemm, inputs, mlp, run, run_pipeline, run_quant, Lcg};

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = a.iter().map(|x| x * x).sum();
    (num / den).sqrt()
}

fn notes(r: &compc_passes::PassRecord) -> String {
    r.notes.join("\n")
}

#[test]
fn defaults_are_int4_g128_asym_rtn_without_calibration() {
    let mut rng = Lcg(31);
    let g = mlp(&mut rng, 256, 128, 64);
    let mut q = g.clone();
    let cx = run_quant(&mut q, "", None).unwrap();
    let n = notes(&cx);
    assert!(
        n.contains("method rtn (default: no calibration data)"),
        "{n}"
    );
    assert!(n.contains("int4 g128 asym"), "{n}");
    assert_eq!(count_ops(&q, "matmul_nbits"), 2, "{n}");
    assert_eq!(count_ops(&q, "matmul"), 0);
    let x = inputs(&g, &mut rng, 8);
    assert!(rel_err(&run(&g, &x), &run(&q, &x)) < 0.1);
}

#[test]
fn defaults_are_gptq_with_calibration() {
    let mut rng = Lcg(32);
    let g = mlp(&mut rng, 128, 64, 32);
    let c = calib(&g, &mut rng, 64);
    let mut q = g.clone();
    let cx = run_quant(&mut q, "", Some(&c)).unwrap();
    let n = notes(&cx);
    assert!(
        n.contains("method gptq (default: calibration data was given)"),
        "{n}"
    );
    assert!(cx.errors.iter().any(|(m, _)| m == "calib_output_rel_rmse"));
    compc_ir::verify::verify(&q).unwrap();
}

#[test]
fn calibrated_methods_need_calibration_data() {
    let mut rng = Lcg(33);
    let g = mlp(&mut rng, 64, 32, 16);
    for opts in [
        "method=gptq",
        "method=awq",
        "method=smoothquant",
        "act_bits=8",
    ] {
        let e = run_quant(&mut g.clone(), opts, None).unwrap_err();
        assert!(e.contains("needs calibration data"), "{opts}: {e}");
    }
}

#[test]
fn bad_calibration_data_is_a_clear_error_naming_the_input() {
    let mut rng = Lcg(34);
    let g = mlp(&mut rng, 64, 32, 16);
    let good = calib(&g, &mut rng, 8);
    let x = good.tensors[0].1.clone();
    let case = |tensors: Vec<(String, Tensor)>| {
        let c = CalibData { tensors };
        run_quant(&mut g.clone(), "method=gptq", Some(&c)).unwrap_err()
    };
    let e = case(vec![("input".into(), x.clone())]);
    assert!(
        e.contains("calibration input `input`")
            && e.contains("no input of that name")
            && e.contains("x"),
        "{e}"
    );
    let e = case(vec![(
        "x".into(),
        Tensor::from_i64(vec![8, 64], vec![1; 512]),
    )]);
    assert!(
        e.contains("calibration input `x` is i64, the model expects f32"),
        "{e}"
    );
    let e = case(vec![(
        "x".into(),
        Tensor::from_f32(vec![8, 63], vec![0.5; 8 * 63]),
    )]);
    assert!(
        e.contains("calibration input `x` has shape [8, 63]") && e.contains("dim 1 is 63, not 64"),
        "{e}"
    );
    let e = case(vec![(
        "x".into(),
        Tensor::from_f32(vec![512], vec![0.5; 512]),
    )]);
    assert!(e.contains("calibration input `x` has shape [512]"), "{e}");
    let mut v = x.to_f32_vec();
    v[77] = f32::NAN;
    let e = case(vec![("x".into(), Tensor::from_f32(x.shape().to_vec(), v))]);
    assert!(
        e.contains("calibration input `x` has a NaN or infinite value (element 77)"),
        "{e}"
    );
    let e = case(vec![("x".into(), Tensor::from_f32(vec![0, 64], vec![]))]);
    assert!(e.contains("calibration input `x` has no samples"), "{e}");
    let e = case(vec![]);
    assert!(e.contains("no tensors"), "{e}");
}

#[test]
fn every_model_input_needs_calibration_samples_of_one_count() {
    use compc_ir::op::BinaryOp;
    use compc_ir::{GraphOutput, ValueRef};
    let mut g = Graph::new("two");
    let a = ValueRef::new(g.add_input("a", quant_common::batch_dims(16)), 0);
    let b = ValueRef::new(g.add_input("b", quant_common::batch_dims(16)), 0);
    let w = ValueRef::new(
        g.add_const(Weight::from_f32("w", vec![16, 4], &[0.5; 64]).unwrap()),
        0,
    );
    let s = g.add_node(
        Op::Binary(BinaryOp::Add),
        vec![Some(a), Some(b)],
        vec![quant_common::batch_dims(16)],
        "add",
    );
    let m = g.add_node(
        Op::MatMul,
        vec![Some(ValueRef::new(s, 0)), Some(w)],
        vec![quant_common::batch_dims(4)],
        "mm",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: ValueRef::new(m, 0),
    });
    let t = |n: usize| Tensor::from_f32(vec![n, 16], vec![0.1; n * 16]);
    let c = CalibData {
        tensors: vec![("a".into(), t(4))],
    };
    let e = run_quant(&mut g.clone(), "method=gptq", Some(&c)).unwrap_err();
    assert!(e.contains("no tensor for model input `b`"), "{e}");
    let c = CalibData {
        tensors: vec![("a".into(), t(4)), ("b".into(), t(5))],
    };
    let e = run_quant(&mut g.clone(), "method=gptq", Some(&c)).unwrap_err();
    assert!(e.contains("has 5 samples but `a` has 4"), "{e}");
    let c = CalibData {
        tensors: vec![("a".into(), t(4)), ("b".into(), t(4))],
    };
    run_quant(&mut g.clone(), "method=gptq,group=0", Some(&c)).unwrap();
}

#[test]
fn nothing_quantizable_is_a_clear_error() {
    let src = r#"graph @no_linear(%x: tensor<2x8xf32>) -> (y: tensor<2x8xf32>) {
  %0 = "relu"(%x) : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %0
}"#;
    let mut g = compc_ir::text::parse(src).unwrap();
    let e = run_quant(&mut g, "", None).unwrap_err();
    assert!(
        e.contains("nothing to quantize: the graph has no linear layers"),
        "{e}"
    );
    let mut rng = Lcg(35);
    let e = run_quant(&mut mlp(&mut rng, 32, 16, 8), "skip=fc*", None).unwrap_err();
    assert!(
        e.contains("every linear layer was left out") && e.contains("skip= matches it"),
        "{e}"
    );
}

#[test]
fn skip_keeps_matching_layers_in_float() {
    let mut rng = Lcg(36);
    let g = mlp(&mut rng, 64, 32, 16);
    let mut q = g.clone();
    let cx = run_quant(&mut q, "bits=8,skip=fc2*", None).unwrap();
    assert!(notes(&cx).contains("kept `fc2.weight` in float: skip= matches it"));
    assert_eq!(count_ops(&q, "dequantize_linear"), 1);
    assert_eq!(count_ops(&q, "matmul"), 2);
    // `|` separates patterns; node names match too.
    let mut q2 = g.clone();
    run_quant(&mut q2, "bits=8,skip=nothing|fc1", None).unwrap();
    assert_eq!(count_ops(&q2, "dequantize_linear"), 1);
}

#[test]
fn quantizing_a_quantized_model_is_a_no_op() {
    let mut rng = Lcg(37);
    let g = mlp(&mut rng, 64, 32, 16);
    for opts in ["", "bits=8", "format=qdq,group=32"] {
        let (once, _) =
            run_pipeline(&g, &format!("quant{{{opts}}}").replace("{}", ""), None).unwrap();
        let (twice, ledger) =
            run_pipeline(&once, &format!("quant{{{opts}}}").replace("{}", ""), None).unwrap();
        assert!(!ledger.passes[0].changed, "{opts}");
        assert_eq!(
            compc_ir::text::print(&once),
            compc_ir::text::print(&twice),
            "{opts}"
        );
        assert!(ledger.passes[0].record.notes[0].contains("already quantized"));
    }
}

#[test]
fn zero_weight_channels_get_valid_scales() {
    let mut rng = Lcg(38);
    let mut g = mlp(&mut rng, 64, 32, 16);
    // fc1 output channel 5 all zeros, fc2 entirely zero.
    let ids: Vec<_> = g
        .weights
        .iter()
        .map(|(id, w)| (id, w.name.clone()))
        .collect();
    for (id, name) in ids {
        let w = g.weights.get(id).clone();
        let mut v = w.to_f32_vec().unwrap();
        match name.as_str() {
            "fc1.weight" => (0..64).for_each(|i| v[i * 32 + 5] = 0.0),
            "fc2.weight" => v.iter_mut().for_each(|x| *x = 0.0),
            _ => continue,
        }
        g.weights
            .replace(id, Weight::from_f32(name, w.dims.clone(), &v).unwrap());
    }
    let c = calib(&g, &mut rng, 32);
    for opts in [
        "method=rtn",
        "method=gptq",
        "method=awq",
        "bits=8,sym=true",
        "method=smoothquant",
    ] {
        let mut q = g.clone();
        run_quant(&mut q, opts, Some(&c)).unwrap();
        for id in q.node_ids() {
            if let Op::Const(w) = q.node(id).op {
                let w = q.weights.get(w);
                if w.dtype.is_float() {
                    assert!(
                        w.to_f32_vec().unwrap().iter().all(|v| v.is_finite()),
                        "{opts}: {}",
                        w.name
                    );
                }
            }
        }
        let x = inputs(&g, &mut rng, 4);
        assert!(run(&q, &x).iter().all(|v| v.is_finite()), "{opts}");
    }
}

#[test]
fn nan_weights_are_refused() {
    let mut rng = Lcg(39);
    let mut g = mlp(&mut rng, 32, 16, 8);
    let (id, w) = g
        .weights
        .iter()
        .find(|(_, w)| w.name == "fc2.weight")
        .map(|(i, w)| (i, w.clone()))
        .unwrap();
    let mut v = w.to_f32_vec().unwrap();
    v[3] = f32::NAN;
    g.weights.replace(
        id,
        Weight::from_f32("fc2.weight", w.dims.clone(), &v).unwrap(),
    );
    let e = run_quant(&mut g, "", None).unwrap_err();
    assert!(
        e.contains("layer `fc2.weight`: weight element 3 is NaN"),
        "{e}"
    );
}

#[test]
fn gemm_weights_quantize_per_channel_and_blocked() {
    let mut rng = Lcg(40);
    let g = gemm(&mut rng, 128, 24);
    let x = inputs(&g, &mut rng, 6);
    let y = run(&g, &x);
    for (opts, max_err) in [
        ("bits=8", 0.01),
        ("bits=4,group=32,format=qdq", 0.1),
        ("bits=4,group=0", 0.2),
    ] {
        let mut q = g.clone();
        run_quant(&mut q, opts, None).unwrap();
        assert_eq!(count_ops(&q, "dequantize_linear"), 1, "{opts}");
        assert_eq!(count_ops(&q, "gemm"), 1);
        compc_ir::verify::verify(&q).unwrap();
        let e = rel_err(&y, &run(&q, &x));
        assert!(e < max_err, "{opts}: {e}");
    }
}

#[test]
fn every_method_runs_and_stays_close() {
    let mut rng = Lcg(41);
    let g = mlp(&mut rng, 128, 128, 32);
    // More samples than input features, so the Hessian is full rank.
    let c = calib(&g, &mut rng, 512);
    let x = inputs(&g, &mut rng, 16);
    let y = run(&g, &x);
    for (opts, max_err) in [
        ("method=rtn", 0.15),
        ("method=gptq", 0.15),
        ("method=gptq,act_order=false,group=32", 0.15),
        ("method=gptq,bits=8", 0.01),
        ("method=awq", 0.15),
        ("method=awq,group=32,bits=3", 0.3),
        ("method=smoothquant", 0.03),
        ("method=smoothquant,calib_method=percentile", 0.05),
        ("method=rtn,bits=8,act_bits=8,calib_method=mse", 0.05),
        // KL calibration clips the long ReLU tail here on purpose; it only has to run.
        ("method=rtn,bits=8,act_bits=8,calib_method=entropy", 0.3),
        ("method=gptq,bits=2,group=32", 0.6),
    ] {
        let (q, ledger) = run_pipeline(&g, &format!("quant{{{opts}}}"), Some(&c)).unwrap();
        let e = rel_err(&y, &run(&q, &x));
        eprintln!("{opts}: {e}");
        assert!(
            e < max_err,
            "{opts}: relative error {e}\n{}",
            ledger.to_markdown()
        );
        if opts.contains("act_bits") || opts.contains("smoothquant") {
            assert_eq!(count_ops(&q, "quantize_linear"), 2, "{opts}");
        }
    }
}

#[test]
fn int8_and_int4_weights_have_the_expected_types_and_sizes() {
    let mut rng = Lcg(42);
    let g = mlp(&mut rng, 256, 128, 64);
    let (q, ledger) = run_pipeline(&g, "quant{bits=8}", None).unwrap();
    let by = &ledger.passes[0].after.bytes_by_dtype;
    assert_eq!(by.get("i8"), Some(&(256 * 128 + 128 * 64)), "{by:?}");
    let dq = q
        .node_ids()
        .filter(|&id| matches!(q.node(id).op, Op::DequantizeLinear(ref d) if d.axis == 1 && d.block_size == 0))
        .count();
    assert_eq!(dq, 2);
    let (_, ledger) = run_pipeline(&g, "quant{format=qdq}", None).unwrap();
    let by = &ledger.passes[0].after.bytes_by_dtype;
    assert_eq!(
        by.get("u4"),
        Some(&((256 * 128 + 128 * 64) / 2 + (2 * 128 + 64) / 2)),
        "{by:?}"
    );
    let _ = DType::U4;
    let _: &Graph = &g;
}

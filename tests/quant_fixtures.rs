//! `quant` on the fixture models: int8 per-channel QDQ keeps the CNN's and the encoder's
//! outputs (cosine ≥ 0.99, top-1 agreement ≥ 99 %) in compc's runtime and in stock
//! onnxruntime; every lowering (QDQ per-axis and blocked, MatMulNBits, static
//! activation QDQ) runs in onnxruntime and agrees with compc's runtime; AWQ's and
//! SmoothQuant's scale folds are exact without quantization.

mod common;

use common::{allclose, model_path, oracle_available, ort_run, read_npz};
use compc::ir::Graph;
use compc::passes::idioms::Idioms;
use compc::passes::quant::fold::{self, Prev};
use compc::passes::quant::layers::{self, read_w, write_w};
use compc::passes::quant::QuantConfig;
use compc::passes::{CalibData, PassManager, Registry};
use compc::runtime::Tensor;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn normal(&mut self) -> f32 {
        let u: f32 = (0..4)
            .map(|_| (self.next() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0)
            .sum();
        u * 0.866
    }
}

/// Evaluation (or calibration) inputs: image noise for the CNN, random token ids for the
/// encoder, bytes for the decoder.
fn data(model: &str, n: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut r = Lcg(seed);
    match model {
        "cnn" => vec![(
            "input".into(),
            Tensor::from_f32(
                vec![n, 3, 32, 32],
                (0..n * 3 * 32 * 32).map(|_| r.normal()).collect(),
            ),
        )],
        "encoder" => {
            let t = 12;
            let ids: Vec<i64> = (0..n * t)
                .map(|i| {
                    if i % t == 0 {
                        101
                    } else {
                        1 + (r.next() % 511) as i64
                    }
                })
                .collect();
            vec![
                ("input_ids".into(), Tensor::from_i64(vec![n, t], ids)),
                (
                    "attention_mask".into(),
                    Tensor::from_i64(vec![n, t], vec![1; n * t]),
                ),
            ]
        }
        _ => {
            let t = 16;
            let text =
                b"The quick brown fox jumps over the lazy dog; compression keeps what matters. ";
            let ids: Vec<i64> = (0..n * t)
                .map(|i| text[(i * 7 + (r.next() % 3) as usize) % text.len()] as i64)
                .collect();
            vec![("input_ids".into(), Tensor::from_i64(vec![n, t], ids))]
        }
    }
}

fn quantize(g: &Graph, pipeline: &str, calib: Option<&CalibData>) -> Graph {
    let passes = Registry::with_builtin_passes().parse(pipeline).unwrap();
    let mut out = g.clone();
    let mut pm = PassManager::new(passes);
    pm.calib = calib;
    pm.run(&mut out)
        .unwrap_or_else(|e| panic!("{pipeline}: {e}"));
    out
}

/// Cosine similarity and top-1 agreement (argmax over the last axis) per output.
fn fidelity(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Vec<(String, f64, f64)> {
    a.iter()
        .zip(b)
        .map(|((name, x), (_, y))| {
            let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
            let dot: f64 = xv.iter().zip(&yv).map(|(p, q)| p * q).sum();
            let nx: f64 = xv.iter().map(|p| p * p).sum::<f64>().sqrt();
            let ny: f64 = yv.iter().map(|p| p * p).sum::<f64>().sqrt();
            let last = *x.shape().last().unwrap_or(&1);
            let argmax = |r: &[f64]| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |m, (i, &v)| if v > m.1 { (i, v) } else { m },
                    )
                    .0
            };
            let rows: Vec<bool> = xv
                .chunks(last)
                .zip(yv.chunks(last))
                .map(|(r, s)| argmax(r) == argmax(s))
                .collect();
            let top1 = rows.iter().filter(|&&s| s).count() as f64 / rows.len().max(1) as f64;
            (name.clone(), dot / (nx * ny), top1)
        })
        .collect()
}

fn write_inputs(dir: &std::path::Path, inputs: &[(String, Tensor)]) -> std::path::PathBuf {
    let p = dir.join("inputs.npz");
    compc::runtime::npz::write_npz(&p, inputs).unwrap();
    p
}

/// Exports `g`, runs it in onnxruntime on `inputs`; `None` when the oracle is missing.
fn ort_outputs(g: &Graph, inputs: &[(String, Tensor)], tag: &str) -> Option<Vec<(String, Tensor)>> {
    if !oracle_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(format!("{tag}.onnx"));
    compc::onnx::export::export_file(g, &model, &Default::default())
        .unwrap_or_else(|e| panic!("{tag}: export: {e}"));
    let out = dir.path().join("out.npz");
    ort_run(&model, &write_inputs(dir.path(), inputs), &out)
        .unwrap_or_else(|e| panic!("{tag}: onnxruntime: {e}"));
    Some(read_npz(&out))
}

#[test]
fn int8_per_channel_qdq_keeps_cnn_and_encoder_outputs() {
    for model in ["cnn", "encoder"] {
        for exporter in ["torchscript", "dynamo"] {
            let g = compc::driver::load_model(&model_path(model, exporter)).unwrap();
            let eval = data(model, 32, 7);
            let calib = CalibData {
                tensors: data(model, 64, 8),
            };
            let want = compc::runtime::run(&g, &eval).unwrap();
            for (pipeline, calib) in [
                ("quant{bits=8}", None),
                ("quant{bits=8,method=gptq}", Some(&calib)),
            ] {
                let tag = format!("{model}.{exporter} {pipeline}");
                let q = quantize(&g, pipeline, calib);
                assert!(
                    q.node_ids()
                        .any(|id| q.node(id).op.name() == "dequantize_linear"),
                    "{tag}: no QDQ"
                );
                let got = compc::runtime::run(&q, &eval).unwrap();
                for (out, cos, top1) in fidelity(&want, &got) {
                    assert!(
                        cos >= 0.99 && top1 >= 0.99,
                        "{tag} {out}: cosine {cos}, top-1 {top1} (compc runtime)"
                    );
                }
                if let Some(ort) = ort_outputs(&q, &eval, &format!("{model}_{exporter}")) {
                    for (out, cos, top1) in fidelity(&want, &ort) {
                        assert!(
                            cos >= 0.99 && top1 >= 0.99,
                            "{tag} {out}: cosine {cos}, top-1 {top1} (onnxruntime)"
                        );
                    }
                    allclose(&ort, &got, 1e-3, 1e-4)
                        .unwrap_or_else(|e| panic!("{tag}: onnxruntime vs compc: {e}"));
                }
            }
        }
    }
}

#[test]
fn every_lowering_runs_in_onnxruntime_and_agrees_with_compc() {
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let calib = CalibData {
        tensors: data("decoder", 32, 9),
    };
    let eval = data("decoder", 4, 10);
    for pipeline in [
        "quant",
        "quant{method=rtn,format=qdq}",
        "quant{method=awq,group=32}",
        "quant{bits=2,group=64}",
        "quant{bits=3,sym=true}",
        "quant{bits=8,group=32,format=nbits}",
        "quant{method=smoothquant}",
        "quant{method=rtn,bits=8,act_bits=8,calib_method=percentile}",
    ] {
        let q = quantize(&g, pipeline, Some(&calib));
        compc::ir::verify::verify(&q).unwrap();
        let got = compc::runtime::run(&q, &eval).unwrap();
        if let Some(ort) = ort_outputs(&q, &eval, "decoder") {
            allclose(&ort, &got, 1e-3, 1e-4)
                .unwrap_or_else(|e| panic!("{pipeline}: onnxruntime vs compc: {e}"));
        }
    }
}

/// Applies random per-channel scales to every group of layers sharing an input, folded
/// where `quant` would fold them, with no quantization: the function must not change.
fn fold_random_scales(g: &mut Graph, seed: u64) -> Vec<Prev> {
    let idioms = Idioms::find(g).unwrap();
    let cfg = QuantConfig::default();
    let sel = layers::select(g, &idioms, &cfg);
    let mut groups: Vec<(compc::ir::ValueRef, Vec<usize>)> = Vec::new();
    for (i, l) in sel.layers.iter().enumerate() {
        let x = l.input(g).unwrap();
        match groups.iter_mut().find(|(v, _)| *v == x) {
            Some((_, m)) => m.push(i),
            None => groups.push((x, vec![i])),
        }
    }
    let mut r = Lcg(seed);
    let mut used = Vec::new();
    for (x, members) in groups {
        let cols = sel.layers[members[0]].cols;
        let s: Vec<f32> = (0..cols)
            .map(|_| 0.5 + (r.next() % 1000) as f32 / 666.0)
            .collect();
        let prev = fold::find_prev(g, &idioms, &sel.layers, &members, x);
        for &m in &members {
            let mut w = read_w(g, &sel.layers[m]).unwrap();
            fold::scale_columns(&mut w, cols, &s);
            write_w(g, &sel.layers[m], &w).unwrap();
        }
        match &prev {
            Prev::Norm(ni) => fold::fold_into_norm(g, &idioms.norms[*ni], &s).unwrap(),
            Prev::Linear(p) => fold::fold_into_linear_rows(g, &sel.layers[*p], &s).unwrap(),
            Prev::Mul => {
                let ls: Vec<&layers::Layer> = members.iter().map(|&m| &sel.layers[m]).collect();
                fold::insert_mul(g, x, &ls, &s, "test").unwrap()
            }
        }
        used.push(prev);
    }
    used
}

#[test]
fn awq_and_smoothquant_scale_folds_are_exact_without_quantization() {
    for (model, exporter) in [
        ("decoder", "torchscript"),
        ("decoder", "dynamo"),
        ("encoder", "torchscript"),
    ] {
        let g = compc::driver::load_model(&model_path(model, exporter)).unwrap();
        let mut f = g.clone();
        let prevs = fold_random_scales(&mut f, 3);
        compc::ir::verify::verify(&f).unwrap();
        if model == "decoder" {
            // Llama blocks: q/k/v and gate/up fold into norms, o into v, down into up,
            // lm_head into the final norm — no explicit Mul anywhere.
            let norms = prevs.iter().filter(|p| matches!(p, Prev::Norm(_))).count();
            let linears = prevs
                .iter()
                .filter(|p| matches!(p, Prev::Linear(_)))
                .count();
            assert_eq!(
                (norms, linears, prevs.len()),
                (5, 4, 9),
                "{model}.{exporter}: {prevs:?}"
            );
        }
        let x = data(model, 3, 11);
        let a = compc::runtime::run(&g, &x).unwrap();
        let b = compc::runtime::run(&f, &x).unwrap();
        for ((name, p), (_, q)) in a.iter().zip(&b) {
            let (pv, qv) = (p.to_f32_vec(), q.to_f32_vec());
            let scale = pv.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            for (u, v) in pv.iter().zip(&qv) {
                assert!(
                    (u - v).abs() <= 1e-5 * scale * 10.0,
                    "{model}.{exporter} {name}: {u} vs {v}"
                );
            }
        }
    }
}

/// A NaN in a convolution kernel of the CNN: GPTQ calibrates the linear layers and leaves
/// the convolutions to RTN, so the NaN used to surface as NaN activations at a later
/// linear's input. The error now names the weight itself.
#[test]
fn a_nan_kernel_is_named_before_calibration() {
    let mut g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let (id, w) = g
        .weights
        .iter()
        .find(|(_, w)| w.name == "head.0.weight")
        .map(|(i, w)| (i, w.clone()))
        .expect("the CNN's head convolution");
    let mut v = w.to_f32_vec().unwrap();
    v[7] = f32::NAN;
    g.weights.replace(
        id,
        compc::ir::Weight::from_f32("head.0.weight", w.dims.clone(), &v).unwrap(),
    );
    let calib = CalibData {
        tensors: data("cnn", 4, 1),
    };
    for p in [
        "quant{method=gptq}",
        "quant{method=awq}",
        "quant{method=smoothquant}",
    ] {
        let e = common::try_pipeline(&g, p, Some(&calib)).unwrap_err();
        assert!(
            e.contains("layer `head.0.weight`: weight element 7 is NaN"),
            "{p}: {e}"
        );
    }
}

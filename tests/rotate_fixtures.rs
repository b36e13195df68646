//! `rotate` on the fixture models: the LM and the decoder (pre-norm RMSNorm, RoPE, SwiGLU)
//! compute the same logits after rotation, to 1e-4 of the largest logit, in compc's
//! runtime and in onnxruntime (which runs the exported online Hadamard); the post-norm
//! encoder and the CNN are refused with a message saying why.

mod common;

use common::{fixtures, model_path, oracle_available, ort_run, read_npz};
use compc::ir::Graph;
use compc::passes::{PassManager, Registry};
use compc::runtime::Tensor;

fn run_pipeline(g: &Graph, pipeline: &str) -> Result<Graph, String> {
    let passes = Registry::with_builtin_passes().parse(pipeline)?;
    let mut out = g.clone();
    PassManager::new(passes)
        .run(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn token_ids(batch: usize, seq: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let ids: Vec<i64> = (0..batch * seq)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 256) as i64
        })
        .collect();
    vec![("input_ids".into(), Tensor::from_i64(vec![batch, seq], ids))]
}

/// `max |a − b| / max |b|` over all outputs.
fn rel_max_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    let (mut d, mut m) = (0f64, 0f64);
    for ((_, x), (_, y)) in a.iter().zip(b) {
        for (p, q) in x.to_f64_vec().iter().zip(y.to_f64_vec()) {
            d = d.max((p - q).abs());
            m = m.max(q.abs());
        }
    }
    d / m.max(f64::MIN_POSITIVE)
}

fn check_exact(path: &std::path::Path, tag: &str) {
    let g = compc::driver::load_model(path).unwrap();
    let r = run_pipeline(&g, "rotate{seed=5}").unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert!(
        r.node_ids().any(|id| r.node(id).op.name() == "hadamard"),
        "{tag}: no online hadamard"
    );
    let inputs = token_ids(2, 24, 1);
    let want = compc::runtime::run(&g, &inputs).unwrap();
    let got = compc::runtime::run(&r, &inputs).unwrap();
    let d = rel_max_diff(&got, &want);
    assert!(
        d <= 1e-4,
        "{tag}: rotated logits differ by {d:e} of max |logit|"
    );
    // Without the online rotations the stream rotation alone is exact too.
    let s = run_pipeline(&g, "rotate{online=false}").unwrap();
    let d = rel_max_diff(&compc::runtime::run(&s, &inputs).unwrap(), &want);
    assert!(d <= 1e-4, "{tag}: stream-only rotation differs by {d:e}");
    if oracle_available() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("rotated.onnx");
        compc::onnx::export::export_file(&r, &model, &Default::default()).unwrap();
        let inp = dir.path().join("in.npz");
        compc::runtime::npz::write_npz(&inp, &inputs).unwrap();
        let out = dir.path().join("out.npz");
        ort_run(&model, &inp, &out).unwrap_or_else(|e| panic!("{tag}: onnxruntime: {e}"));
        let d = rel_max_diff(&read_npz(&out), &want);
        assert!(
            d <= 1e-4,
            "{tag}: onnxruntime on the rotated model differs by {d:e}"
        );
    }
}

#[test]
fn rotate_is_exact_on_the_lm_and_the_decoder() {
    for exporter in ["torchscript", "dynamo"] {
        check_exact(
            &fixtures().join(format!("lm/lm.{exporter}.onnx")),
            &format!("lm.{exporter}"),
        );
    }
    check_exact(&model_path("decoder", "torchscript"), "decoder.torchscript");
}

#[test]
fn rotate_refuses_models_without_a_pre_norm_stream() {
    let enc = compc::driver::load_model(&model_path("encoder", "torchscript")).unwrap();
    let e = run_pipeline(&enc, "rotate").unwrap_err();
    assert!(e.contains("post-norm"), "{e}");
    let cnn = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let e = run_pipeline(&cnn, "rotate").unwrap_err();
    assert!(e.contains("no residual stream"), "{e}");
    // Rotation after quantization: the readers are no longer float MatMuls.
    let dec = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let e = run_pipeline(&dec, "quant{bits=8},rotate").unwrap_err();
    assert!(e.contains("before quant"), "{e}");
    // A router's scatter on the stream is named, and is not called a post-norm.
    let e = run_pipeline(&dec, "mod-routers{router=norm,layers=0},rotate").unwrap_err();
    assert!(
        e.contains("scatter_elements")
            && e.contains("run rotate before")
            && !e.contains("post-norm"),
        "{e}"
    );
}

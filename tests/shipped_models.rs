//! Real models that packages ship (tests/fixtures/shipped.toml), fetched by
//! tests/fixtures/scripts/fetch_models.py into fixtures-cache/ (git-ignored; `scripts/test`
//! fills it). For each one in the cache:
//! - compc imports it and its reference runtime reproduces onnxruntime's outputs
//!   (`<name>.expected.npz`, written by the fetcher) on the fetcher's inputs;
//! - compc's export of it runs in onnxruntime with the same outputs;
//! - int8 per-channel weight quantization keeps the outputs (cosine ≥ 0.99).
//!
//! A model missing from the cache is skipped with a message that says how to fetch it;
//! `COMPC_REQUIRE_SHIPPED=1` turns a missing model into a failure.

mod common;

use common::{allclose, oracle_available, ort_run, read_npz};
use compc::ir::Graph;
use compc::passes::{PassManager, Registry};
use compc::runtime::Tensor;
use std::path::{Path, PathBuf};

fn cache() -> PathBuf {
    std::env::var_os("COMPC_FIXTURES_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures-cache"))
        .join("models")
}

/// The `cache_name`s of shipped.toml, without `.onnx`.
fn manifest_models() -> Vec<String> {
    let text = std::fs::read_to_string(common::fixtures().join("shipped.toml")).unwrap();
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cache_name"))
        .filter_map(|rest| rest.split('"').nth(1))
        .filter_map(|n| n.strip_suffix(".onnx"))
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 5, "shipped.toml lists {names:?}");
    names
}

/// The models present in the cache, each with its inputs and onnxruntime's outputs.
fn cached() -> Vec<(String, PathBuf)> {
    let require = std::env::var_os("COMPC_REQUIRE_SHIPPED").is_some();
    let mut found = Vec::new();
    for name in manifest_models() {
        let model = cache().join(format!("{name}.onnx"));
        let complete = model.is_file()
            && cache().join(format!("{name}.inputs.npz")).is_file()
            && cache().join(format!("{name}.expected.npz")).is_file();
        if complete {
            found.push((name, model));
        } else if require {
            panic!(
                "{name} is not in {} (COMPC_REQUIRE_SHIPPED is set)",
                cache().display()
            );
        } else {
            eprintln!(
                "skipping {name}: not in {} (run python3 tests/fixtures/scripts/fetch_models.py)",
                cache().display()
            );
        }
    }
    found
}

fn inputs(name: &str) -> Vec<(String, Tensor)> {
    read_npz(&cache().join(format!("{name}.inputs.npz")))
}

fn expected(name: &str) -> Vec<(String, Tensor)> {
    read_npz(&cache().join(format!("{name}.expected.npz")))
}

fn run(g: &Graph, feeds: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    compc::runtime::run(g, feeds).unwrap_or_else(|e| panic!("{}: run: {e}", g.name))
}

/// onnxruntime and compc's runtime differ in summation order and fused kernels; the
/// shipped models' outputs are probabilities, logits or features of order 1.
const RTOL: f32 = 1e-3;
const ATOL: f32 = 1e-4;

/// Shipped models compc cannot run yet, with the op that stops it: the test checks the
/// error names it, so support landing shows up here.
const UNSUPPORTED: [(&str, &str); 1] = [
    // An LSTM with int8 weights and dynamically quantized activations, an onnxruntime
    // contrib op; ddddocr's newer OCR model (ddddocr_ocr) is the float version.
    ("ddddocr_ocr_old", "com.microsoft:DynamicQuantizeLSTM"),
];

fn unsupported(name: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, op)| *op)
}

#[test]
fn compc_runs_shipped_models_like_onnxruntime() {
    for (name, path) in cached() {
        if let Some(op) = unsupported(&name) {
            let e = compc::driver::load_model(&path)
                .and_then(|g| compc::runtime::run(&g, &inputs(&name)).map_err(Into::into))
                .expect_err(&format!("{name} runs now: take it off UNSUPPORTED"));
            assert!(e.to_string().contains(op), "{name}: {e}");
            eprintln!("{name}: unsupported as expected: {e}");
            continue;
        }
        let g = compc::driver::load_model(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = run(&g, &inputs(&name));
        allclose(&got, &expected(&name), RTOL, ATOL).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: compc runtime matches onnxruntime");
    }
}

#[test]
fn exported_shipped_models_run_in_onnxruntime() {
    let models = cached();
    if models.is_empty() || !oracle_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in models {
        if unsupported(&name).is_some() {
            continue;
        }
        let g = compc::driver::load_model(&path).unwrap();
        let out = dir.path().join(format!("{name}.onnx"));
        compc::onnx::export::export_file(&g, &out, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: export: {e}"));
        let res = dir.path().join(format!("{name}.out.npz"));
        ort_run(&out, &cache().join(format!("{name}.inputs.npz")), &res)
            .unwrap_or_else(|e| panic!("{name}: onnxruntime on compc's export: {e}"));
        allclose(&read_npz(&res), &expected(&name), 1e-5, 1e-6)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let dot: f64 = x.iter().zip(&y).map(|(p, q)| p * q).sum();
    let nx: f64 = x.iter().map(|p| p * p).sum::<f64>().sqrt();
    let ny: f64 = y.iter().map(|p| p * p).sum::<f64>().sqrt();
    dot / (nx * ny)
}

#[test]
fn int8_weights_keep_shipped_model_outputs() {
    for (name, path) in cached() {
        if unsupported(&name).is_some() {
            continue;
        }
        let g = compc::driver::load_model(&path).unwrap();
        let mut q = g.clone();
        let passes = Registry::with_builtin_passes()
            .parse("quant{bits=8,method=rtn}")
            .unwrap();
        PassManager::new(passes)
            .run(&mut q)
            .unwrap_or_else(|e| panic!("{name}: quant: {e}"));
        let feeds = inputs(&name);
        let (want, got) = (run(&g, &feeds), run(&q, &feeds));
        for ((out, w), (_, x)) in want.iter().zip(&got) {
            if w.dtype() != compc::ir::DType::F32 || w.numel() < 2 {
                continue;
            }
            let c = cosine(x, w);
            eprintln!("{name}/{out}: int8 cosine {c:.6}");
            assert!(c >= 0.99, "{name}/{out}: int8 cosine {c}");
        }
    }
}

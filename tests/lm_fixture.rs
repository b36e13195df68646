//! The trained LM fixture (tests/fixtures/lm): compc reproduces the oracle's numbers.
//! - `make-calib`'s sampler gives the committed calibration batch bit for bit;
//! - compc's fp32 held-out perplexity equals onnxruntime's (recorded in lm.json by
//!   tests/fixtures/lm/eval_ppl.py) for both exports.

use compc::eval::{perplexity, EvalData};
use std::path::{Path, PathBuf};

fn lm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm")
}

fn lm_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(lm_dir().join("lm.json")).unwrap()).unwrap()
}

#[test]
fn calibration_sampler_matches_the_committed_batch() {
    let text = std::fs::read(lm_dir().join("calib_text.txt")).unwrap();
    let ours = compc::calib::text_batches(&text, 128, 128, 0).unwrap();
    let theirs = compc::runtime::npz::read_npz(&lm_dir().join("calib.n128.l128.s0.npz")).unwrap();
    assert_eq!(theirs[0].0, "input_ids");
    assert_eq!(ours.shape(), theirs[0].1.shape());
    assert_eq!(ours.to_i64_vec(), theirs[0].1.to_i64_vec());
}

#[test]
fn fp32_perplexity_matches_onnxruntime() {
    let json = lm_json();
    for exporter in ["torchscript", "dynamo"] {
        let want = json["heldout"][format!("ort_{exporter}")].as_f64().unwrap();
        let g = compc::driver::load_model(&lm_dir().join(format!("lm.{exporter}.onnx"))).unwrap();
        let data = EvalData::load(&lm_dir().join("heldout.txt"), 256, 16, None).unwrap();
        let got = perplexity(&g, &data).unwrap();
        let rel = (got - want).abs() / want;
        assert!(
            rel < 1e-5,
            "{exporter}: compc perplexity {got}, onnxruntime {want} (rel {rel:e})"
        );
    }
}

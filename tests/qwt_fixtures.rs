//! `fold-affine{method=qwt}` (QwT's block-wise linear compensation) on the LM fixture
//! after `quant`: one float MatMul and two Adds per transformer block, integer codes
//! untouched, the compensated model closer to the float one on held-out text at W4 and
//! W3, onnxruntime running it with compc's outputs; zero quantization error inserts
//! nothing; misuse is a clear error.

mod common;

use common::{
    census, integer_constants, lm, lm_ids, ort_outputs, outputs, rel, run_pipeline, try_pipeline,
    twins_equal_to_quantized,
};
use compc::passes::CalibData;
use compc::runtime::Tensor;

/// 2048 calibration tokens: the fit has 257 unknowns per output feature.
fn calib() -> CalibData {
    CalibData {
        tensors: lm_ids(32, 64, 0),
    }
}

fn heldout() -> Vec<(String, Tensor)> {
    lm_ids(4, 64, 40_000)
}

#[test]
fn qwt_adds_a_matmul_per_block_and_brings_w4_and_w3_closer_to_float() {
    let g = lm();
    let c = calib();
    let x = heldout();
    let float = outputs(&g, &x);
    for bits in [4, 3] {
        let quant = format!("quant{{bits={bits},method=rtn}}");
        let q = run_pipeline(&g, &quant, Some(&c));
        let f = run_pipeline(&g, &format!("{quant},fold-affine{{method=qwt}}"), Some(&c));
        // Four blocks: a MatMul (x·W_c) and two Adds (+ b_c, + block output) each.
        let (cq, cf) = (census(&q), census(&f));
        assert_eq!(cf["matmul"], cq.get("matmul").copied().unwrap_or(0) + 4);
        assert_eq!(cf["add"], cq["add"] + 8);
        assert_eq!(cf["matmul_nbits"], cq["matmul_nbits"]);
        assert_eq!(integer_constants(&q), integer_constants(&f));
        let (oq, of) = (outputs(&q, &x), outputs(&f, &x));
        let (eq, ef) = (rel(&oq, &float), rel(&of, &float));
        eprintln!("W{bits}: held-out logits rel. error {eq:.4e} → {ef:.4e}");
        // Measured: W4 7.492e-2 → 7.196e-2, W3 1.941e-1 → 1.794e-1 (with 128 calibration
        // sequences of 128 bytes, the CLI's held-out perplexity increase goes from +1.41% to
        // +1.30% at W4 and from +9.21% to +7.53% at W3). The 1,300-step LM fixture this
        // test first ran on had no outlier channels, a third of the W4 error, and gained
        // more: 2.486e-2 → 2.200e-2, 5.250e-2 → 4.711e-2.
        assert!(
            ef < 0.97 * eq,
            "W{bits}: {ef:.4e} with QwT, {eq:.4e} without"
        );
        if let Some(ort) = ort_outputs(&f, &x) {
            let e = rel(&ort, &of);
            assert!(e < 1e-4, "onnxruntime vs compc: {e:.3e}");
        }
    }
}

#[test]
fn zero_quantization_error_inserts_nothing() {
    let g = lm();
    let c = CalibData {
        tensors: lm_ids(4, 64, 0),
    };
    let x = heldout();
    let mut q = run_pipeline(&g, "quant{bits=4,method=rtn,format=qdq}", Some(&c));
    twins_equal_to_quantized(&mut q, &x);
    let f = run_pipeline(&q, "fold-affine{method=qwt}", Some(&c));
    // R = Y_fp − Y_q is exactly zero: W_c = 0, b_c = 0, and nothing is inserted.
    assert_eq!(census(&q), census(&f));
    assert_eq!(outputs(&q, &x), outputs(&f, &x));
}

#[test]
fn misuse_is_a_clear_error() {
    let g = lm();
    let c = CalibData {
        tensors: lm_ids(4, 64, 0),
    };
    let e = try_pipeline(
        &g,
        "quant{method=rtn},fold-affine{method=qwt,fold=false}",
        Some(&c),
    )
    .unwrap_err();
    assert!(e.contains("`fold` applies to method=cwac"), "{e}");
    let e = try_pipeline(&g, "fold-affine{method=qwt}", Some(&c)).unwrap_err();
    assert!(e.contains("nothing is quantized"), "{e}");
    let e = try_pipeline(&g, "quant{method=rtn},fold-affine{method=qwt}", None).unwrap_err();
    assert!(e.contains("needs calibration data"), "{e}");
    // A CNN has no transformer block.
    let cnn = compc::driver::load_model(&common::model_path("cnn", "torchscript")).unwrap();
    let cx = CalibData {
        tensors: common::read_npz(&common::inputs_path("cnn", "b3")),
    };
    let e = try_pipeline(
        &cnn,
        "quant{bits=8,method=rtn},fold-affine{method=qwt}",
        Some(&cx),
    )
    .unwrap_err();
    assert!(
        e.contains("transformer blocks") && e.contains("method=cwac"),
        "{e}"
    );
}

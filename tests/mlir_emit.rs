//! The emitted MLIR of small graphs, snapshotted (no MLIR installation needed), plus the
//! emitter's contract: large weights become arguments, never textual constants, and
//! dynamic dims are `?`.

use compc::ir::text;
use std::path::Path;

fn emit(file: &str) -> compc::mlir::emit::MlirModule {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mlir")
            .join(file),
    )
    .unwrap();
    let g = text::parse(&src).unwrap();
    compc::mlir::emit::emit_module(&g).unwrap()
}

#[test]
fn dense_layer_snapshot() {
    let m = emit("small.cir");
    insta::assert_snapshot!("mlir_dense", m.text);
}

#[test]
fn attention_scores_snapshot() {
    let m = emit("attention.cir");
    assert!(m.text.contains("linalg.batch_matmul"), "{}", m.text);
    insta::assert_snapshot!("mlir_scores", m.text);
}

#[test]
fn large_weights_are_arguments_and_dims_dynamic() {
    let g = compc::driver::load_model(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models/decoder.torchscript.onnx"),
    )
    .unwrap();
    let m = compc::native::emit_mlir(&g).unwrap();
    let weights = m
        .params
        .iter()
        .filter(|p| !matches!(p.source, compc::mlir::emit::ParamSource::Input(_)))
        .count();
    assert!(weights >= 10, "decoder weights as arguments: {weights}");
    // No dense literal longer than the inline limit's 64 f32 (256 bytes = 512 hex digits).
    for line in m.text.lines().filter(|l| l.contains("dense<\"0x")) {
        let hex = line
            .split("dense<\"0x")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            hex.len() <= 512,
            "a large textual constant: {}",
            &line[..120.min(line.len())]
        );
    }
    assert!(
        m.text.contains("tensor<?x?xi64>"),
        "dynamic batch and sequence"
    );
    assert!(m.text.contains("linalg.batch_matmul"));
}

/// Every weight parameter of `@main` is read: a weight whose readers all lower a prepared
/// copy (the CNN's BatchNorm-folded and re-laid-out convolution kernels, transposed Gemm
/// weights; matmul panels) is not an argument as well, so `weights.bin` does not store it.
#[test]
fn every_weight_argument_is_read() {
    for model in ["cnn", "encoder", "decoder"] {
        let g = compc::driver::load_model(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/models/{model}.dynamo.onnx")),
        )
        .unwrap();
        let m = compc::native::emit_mlir(&g).unwrap();
        let body = m
            .text
            .split_once("attributes {llvm.emit_c_interface}")
            .unwrap()
            .1;
        for (i, p) in m.params.iter().enumerate() {
            let arg = format!("%arg{i}");
            let read = body
                .match_indices(&arg)
                .any(|(at, _)| !body[at + arg.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(
                read || matches!(p.source, compc::mlir::emit::ParamSource::Input(_)),
                "{model}: parameter {i} `{}` is never read",
                p.name
            );
        }
    }
}

#[test]
fn unsupported_op_names_the_node() {
    let src = r#"graph @g(%x: tensor<4xf32>) -> (y: tensor<4xf32>) {
  %0 = "custom:my.domain:Frobnicate"(%x) : (tensor<4xf32>) -> tensor<4xf32> loc("frob")
  return %0
}"#;
    let g = text::parse(src).unwrap();
    let e = compc::mlir::emit::emit_module(&g).unwrap_err().to_string();
    assert!(e.contains("frob") && e.contains("does not lower"), "{e}");
}

#[cfg(not(feature = "mlir"))]
#[test]
fn target_cpu_without_the_feature_says_so() {
    let g = compc::driver::load_model(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/cnn.torchscript.onnx"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = compc::native::compile_cpu(&g, dir.path()).unwrap_err();
    assert!(
        format!("{e:#}").contains("without the `mlir` feature"),
        "{e:#}"
    );
}

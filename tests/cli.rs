//! The command line as a user meets it: every bad input gives one `error:` line naming the
//! problem, a non-zero exit, no panic, and no output folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn compc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compc"))
        .args(args)
        .output()
        .expect("compc runs")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: exit ≠ 0, one `error:` line mentioning `needle`, no panic.
fn assert_fails(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        err.starts_with("error: "),
        "stderr does not start with `error: `: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "more than one line: {err}"
    );
    assert!(err.contains(needle), "stderr lacks `{needle}`: {err}");
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn compiles_a_fixture_into_an_output_folder() {
    let dir = tmp();
    let out = dir.path().join("out");
    let model = fixture("decoder.torchscript.onnx");
    let o = compc(&[
        model.to_str().unwrap(),
        "-p",
        "const-fold,cse,dce",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["model.onnx", "report.md", "report.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let passes = report["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 3);
    assert_eq!(passes[0]["pass"], "const-fold");
    assert_eq!(passes[0]["exactness"], "exact");
    // The cleanup pipeline shares the exporter's duplicated constants and shape
    // arithmetic: fewer nodes, and never more parameters.
    assert!(report["output"]["nodes"].as_u64() < report["input"]["nodes"].as_u64());
    assert!(report["output"]["parameters"].as_u64() <= report["input"]["parameters"].as_u64());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## const-fold"), "{md}");
    // Nothing but the output folder is left in its parent (the staging folder is gone).
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn no_passes_is_a_plain_round_trip() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&[
        fixture("cnn.torchscript.onnx").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("model.onnx").is_file());
}

#[test]
fn truncated_onnx_is_refused() {
    let dir = tmp();
    let bytes = std::fs::read(fixture("cnn.torchscript.onnx")).unwrap();
    let bad = dir.path().join("truncated.onnx");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let o = compc(&[bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_fails(&o, "truncated.onnx");
    assert!(!out.exists());
}

#[test]
fn a_text_file_is_not_a_model() {
    let dir = tmp();
    let bad = dir.path().join("notes.onnx");
    std::fs::write(&bad, "this is not a model\n").unwrap();
    let out = dir.path().join("out");
    let o = compc(&[bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_fails(&o, "notes.onnx");
    assert!(!out.exists());
}

#[test]
fn a_missing_model_is_named() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&["no-such-model.onnx", "-o", out.to_str().unwrap()]);
    assert_fails(&o, "no-such-model.onnx");
    assert!(!out.exists());
}

#[test]
fn an_unknown_pass_lists_the_valid_ones() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&[
        fixture("cnn.torchscript.onnx").to_str().unwrap(),
        "-p",
        "dce,fold-everything",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails(
        &o,
        "unknown pass `fold-everything`; valid passes: const-fold, cse, dce",
    );
    assert!(!out.exists());
}

#[test]
fn an_unknown_option_is_refused() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&[
        fixture("cnn.torchscript.onnx").to_str().unwrap(),
        "-p",
        "dce{level=3}",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails(&o, "pass `dce` takes no options, got `level`");
    assert!(!out.exists());
}

#[test]
fn a_malformed_pipeline_says_where() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&[
        fixture("cnn.torchscript.onnx").to_str().unwrap(),
        "-p",
        "dce{",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails(&o, "dce");
    assert!(!out.exists());
}

#[test]
fn an_unwritable_output_folder_is_refused() {
    let dir = tmp();
    // A path below a regular file can never be created.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("out");
    let o = compc(&[
        fixture("cnn.torchscript.onnx").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails(&o, "cannot create output folder");
    assert!(!out.exists());
}

#[test]
fn a_non_empty_output_folder_needs_force() {
    let dir = tmp();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let model = fixture("cnn.torchscript.onnx");
    let o = compc(&[model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_fails(&o, "--force");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    let o = compc(&[
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("model.onnx").is_file());
    assert!(!out.join("keep.txt").exists());
}

#[test]
fn a_model_without_outputs_is_refused_not_emptied() {
    // Dead-code elimination would remove every node and report success.
    let dir = tmp();
    let model = dir.path().join("noout.cir");
    std::fs::write(
        &model,
        "graph @noout(%x: tensor<4xf32>) -> () {\n  \
         %0 = \"relu\"(%x) : (tensor<4xf32>) -> tensor<4xf32>\n  return\n}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = compc(&[
        model.to_str().unwrap(),
        "-p",
        "dce",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails(&o, "declares no graph outputs");
    assert!(!out.exists());
    // --emit-mlir printed a function with an empty `return :`, which MLIR cannot parse.
    let o = compc(&[model.to_str().unwrap(), "--emit-mlir"]);
    assert_fails(&o, "declares no graph outputs");
    assert!(o.stdout.is_empty());
}

#[test]
fn the_output_folder_may_not_hold_the_input() {
    let dir = tmp();
    let model = dir.path().join("model.onnx");
    std::fs::copy(fixture("cnn.torchscript.onnx"), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    let o = compc(&[
        model.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--force",
    ]);
    assert_fails(&o, "contains the input model");
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn passes_lists_every_pass_with_its_kind() {
    let o = compc(&["passes"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for name in ["const-fold", "cse", "dce"] {
        assert!(
            s.lines()
                .any(|l| l.starts_with(name) && l.contains("exact")),
            "{s}"
        );
    }
}

#[test]
fn print_of_printed_text_reproduces_it() {
    let dir = tmp();
    for model in ["cnn.torchscript.onnx", "decoder.dynamo.onnx"] {
        let o = compc(&["print", fixture(model).to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let cir = dir.path().join("m.cir");
        std::fs::write(&cir, &o.stdout).unwrap();
        let again = compc(&["print", cir.to_str().unwrap()]);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn parse_errors_give_line_and_column() {
    let dir = tmp();
    let cir = dir.path().join("bad.cir");
    std::fs::write(
        &cir,
        "graph @g(%x: tensor<4xf32>) -> (y: tensor<4xf32>) {\n  %0 = \"relu\"(%x) = \n}\n",
    )
    .unwrap();
    let o = compc(&["print", cir.to_str().unwrap()]);
    assert_fails(&o, "bad.cir:2:");
}

#[test]
fn idioms_are_listed_on_request() {
    let o = compc(&[
        "print",
        "--idioms",
        fixture("decoder.torchscript.onnx").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("// idioms:"), "{s}");
}

#[test]
fn external_data_on_request_and_run_agrees_with_onnxruntime() {
    let dir = tmp();
    let out = dir.path().join("out");
    let o = compc(&[
        fixture("decoder.dynamo.onnx").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--external-data",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let data = out.join("model.data");
    assert!(data.is_file(), "no external data file");
    assert!(std::fs::metadata(&data).unwrap().len() > 400_000);
    // `compc run` on the output folder, compared with onnxruntime's outputs of the input.
    let got = dir.path().join("got.npz");
    let inputs = fixture("decoder.inputs.b3.npz");
    let o = compc(&[
        "run",
        out.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--output",
        got.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = compc::runtime::npz::read_npz(&got).unwrap();
    let want = compc::runtime::npz::read_npz(&fixture("decoder.dynamo.expected.b3.npz")).unwrap();
    assert_eq!(got.len(), want.len());
    for ((n, a), (m, b)) in got.iter().zip(&want) {
        assert_eq!((n, a.shape()), (m, b.shape()));
        for (x, y) in a.to_f32_vec().iter().zip(b.to_f32_vec()) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{n}: {x} vs {y}");
        }
    }
}

#[test]
fn run_names_a_missing_input() {
    let dir = tmp();
    let got = dir.path().join("got.npz");
    // The CNN's inputs given to the decoder: the input name does not match.
    let o = compc(&[
        "run",
        fixture("decoder.dynamo.onnx").to_str().unwrap(),
        "--inputs",
        fixture("cnn.inputs.b1.npz").to_str().unwrap(),
        "--output",
        got.to_str().unwrap(),
    ]);
    assert_fails(&o, "input_ids");
    assert!(!got.exists());
}

#[test]
fn missing_parent_folders_of_the_output_are_created() {
    let dir = tmp();
    let out = dir.path().join("out/nested/decoder");
    let o = compc(&[
        fixture("decoder.torchscript.onnx").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("model.onnx").is_file());
}

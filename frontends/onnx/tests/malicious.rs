//! Broken and hostile inputs: each is refused with an error naming the problem, without
//! panicking or allocating what the file claims.

mod common;

use common::*;
use compc_frontend_onnx::{import_bytes, import_file, ImportError};
use onnx_protobuf::ModelProto;
use std::path::Path;

fn err_of(m: &ModelProto, dir: Option<&Path>) -> String {
    match import_bytes(&bytes(m), dir) {
        Ok(_) => panic!("import must fail"),
        Err(e) => e.to_string(),
    }
}

/// A model whose one initializer `w` ([4] f32) is `t`, read by an Identity.
fn with_weight(t: onnx_protobuf::TensorProto) -> ModelProto {
    model(
        17,
        graph(
            vec![node("Add", "add", &["x", "w"], &["y"])],
            vec![vi("x", FLOAT, &[D::N(4)])],
            vec![vi("y", FLOAT, &[D::N(4)])],
            vec![t],
        ),
    )
}

/// A folder holding `model.onnx` with external tensor `w` at `location`, plus 16 bytes of
/// good data in `w.bin`, inside `root/model/`; `root/outside.bin` lies outside.
fn external_setup(
    location: &str,
    offset: &str,
    length: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("w.bin"), [0u8; 16]).expect("write");
    std::fs::write(root.path().join("outside.bin"), [7u8; 16]).expect("write");
    let m = with_weight(t_external(
        "w",
        FLOAT,
        &[4],
        &[
            ("location", location),
            ("offset", offset),
            ("length", length),
        ],
    ));
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes(&m)).expect("write model");
    (root, path)
}

fn external_err(location: &str, offset: &str, length: &str) -> String {
    let (_root, path) = external_setup(location, offset, length);
    match import_file(&path) {
        Ok(_) => panic!("external data at {location} must be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_external_setup_imports() {
    let (_root, path) = external_setup("w.bin", "0", "16");
    import_file(&path).expect("the well-formed variant imports");
}

#[test]
fn parent_dir_location_is_refused() {
    let e = external_err("../../etc/passwd", "0", "16");
    assert!(e.contains("tensor `w`") && e.contains("`..`"), "{e}");
}

#[test]
fn absolute_location_is_refused() {
    let e = external_err("/etc/passwd", "0", "16");
    assert!(e.contains("tensor `w`") && e.contains("absolute"), "{e}");
}

#[cfg(unix)]
#[test]
fn symlink_leading_outside_is_refused() {
    let (root, path) = external_setup("link.bin", "0", "16");
    std::os::unix::fs::symlink(
        root.path().join("outside.bin"),
        root.path().join("model/link.bin"),
    )
    .expect("symlink");
    let e = import_file(&path).expect_err("must refuse").to_string();
    assert!(e.contains("outside the model's folder"), "{e}");
}

#[cfg(unix)]
#[test]
fn symlink_inside_the_folder_is_fine() {
    let (root, path) = external_setup("link.bin", "0", "16");
    std::os::unix::fs::symlink("w.bin", root.path().join("model/link.bin")).expect("symlink");
    import_file(&path).expect("a link within the folder is allowed");
}

#[test]
fn range_past_end_of_file_is_refused() {
    let e = external_err("w.bin", "8", "16");
    assert!(e.contains("past the end of the file"), "{e}");
    let e = external_err("w.bin", "18446744073709551615", "16");
    assert!(e.contains("past the end"), "{e}");
}

#[test]
fn missing_external_file_is_refused() {
    let e = external_err("nope.bin", "0", "16");
    assert!(e.contains("external data `nope.bin`"), "{e}");
}

#[test]
fn external_data_without_a_folder_is_refused() {
    let m = with_weight(t_external("w", FLOAT, &[4], &[("location", "w.bin")]));
    let e = err_of(&m, None);
    assert!(
        e.contains("tensor `w`") && e.contains("without a folder"),
        "{e}"
    );
}

#[test]
fn huge_claimed_shape_with_short_data_is_refused() {
    let mut t = t_f32("w", &[1 << 20, 1 << 20], &[1.0; 4]);
    t.dims = vec![1 << 20, 1 << 20];
    let e = err_of(&with_weight(t), None);
    assert!(
        e.contains("tensor `w`") && e.contains("needs 4398046511104 bytes"),
        "{e}"
    );

    let mut t = t_f32_typed("w", &[1 << 40], &[1.0; 4]);
    t.dims = vec![1 << 40];
    let e = err_of(&with_weight(t), None);
    assert!(
        e.contains("tensor `w`") && e.contains("float_data has 4"),
        "{e}"
    );

    let t = t_f32("w", &[i64::MAX, i64::MAX], &[1.0]);
    let e = err_of(&with_weight(t), None);
    assert!(e.contains("tensor `w`"), "{e}");
}

#[test]
fn negative_dims_are_refused() {
    let t = t_f32("w", &[-4], &[1.0; 4]);
    let e = err_of(&with_weight(t), None);
    assert!(e.contains("tensor `w`") && e.contains("negative"), "{e}");
}

#[test]
fn truncated_model_is_not_onnx() {
    let b = bytes(&mlp());
    let e = import_bytes(&b[..b.len() / 2], None).expect_err("truncated");
    assert!(matches!(e, ImportError::NotOnnx(_)), "{e}");
    assert!(e.to_string().starts_with("not an ONNX model: "), "{e}");
}

#[test]
fn random_bytes_are_not_onnx() {
    // A fixed xorshift stream: deterministic, no dependency.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for len in [1usize, 7, 64, 1000, 65536] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        let e = import_bytes(&data, None).expect_err("random bytes");
        assert!(e.to_string().starts_with("not an ONNX model"), "{e}");
    }
    assert!(import_bytes(&[], None).is_err());
}

#[test]
fn every_prefix_of_a_model_fails_cleanly() {
    let b = bytes(&mlp());
    for cut in 0..b.len() {
        let _ = import_bytes(&b[..cut], None);
    }
}

#[test]
fn malformed_control_flow_is_refused() {
    let body = graph(vec![], vec![], vec![], vec![]);
    let m = model(
        17,
        graph(
            vec![with_attrs(
                node("If", "branch", &["c"], &["y"]),
                vec![
                    a_graph("then_branch", body.clone()),
                    a_graph("else_branch", body),
                ],
            )],
            vec![vi("c", 9, &[])],
            vec![vi("y", FLOAT, &[])],
            vec![],
        ),
    );
    assert_eq!(
        err_of(&m, None),
        "shape inference failed at n1 (if \"branch\"): the branches have 0 outputs, the node 1"
    );
    // A body may read enclosing values, but only ones that exist.
    let reads_ghost = graph(
        vec![node("Identity", "i", &["ghost"], &["o"])],
        vec![],
        vec![vi("o", FLOAT, &[])],
        vec![],
    );
    let m = model(
        17,
        graph(
            vec![with_attrs(
                node("If", "branch", &["c"], &["y"]),
                vec![
                    a_graph("then_branch", reads_ghost.clone()),
                    a_graph("else_branch", reads_ghost),
                ],
            )],
            vec![vi("c", 9, &[])],
            vec![vi("y", FLOAT, &[])],
            vec![],
        ),
    );
    assert_eq!(
        err_of(&m, None),
        "`If` node \"branch\": a body reads `ghost`, which no enclosing graph defines"
    );
}

#[test]
fn opsets_out_of_range_are_refused() {
    let mut m = mlp();
    m.opset_import[0].version = 0;
    assert_eq!(
        err_of(&m, None),
        "opset 0 is older than 1, the oldest compc supports"
    );
    m.opset_import[0].version = 24;
    assert!(err_of(&m, None).contains("opset 24 is newer than 23"));
    m.opset_import.clear();
    assert!(err_of(&m, None).contains("no version of the default ONNX domain"));
}

#[test]
fn undefined_inputs_and_cycles_are_refused() {
    let m = model(
        17,
        graph(
            vec![node("Relu", "r", &["ghost"], &["y"])],
            vec![],
            vec![vi("y", FLOAT, &[])],
            vec![],
        ),
    );
    let e = err_of(&m, None);
    assert!(e.contains("`Relu` node \"r\" reads `ghost`"), "{e}");

    let m = model(
        17,
        graph(
            vec![
                node("Relu", "a", &["t2"], &["t1"]),
                node("Relu", "b", &["t1"], &["t2"]),
            ],
            vec![],
            vec![vi("t2", FLOAT, &[])],
            vec![],
        ),
    );
    let e = err_of(&m, None);
    assert!(e.contains("cycle through `Relu` node"), "{e}");

    let m = model(
        17,
        graph(
            vec![node("Relu", "a", &["x"], &["x"])],
            vec![vi("x", FLOAT, &[])],
            vec![vi("x", FLOAT, &[])],
            vec![],
        ),
    );
    assert!(err_of(&m, None).contains("already a graph input"));
}

#[test]
fn unsupported_types_and_attributes_are_named() {
    let mut t = t_f32("w", &[4], &[1.0; 4]);
    t.data_type = 17; // float8
    let e = err_of(&with_weight(t), None);
    assert!(
        e.contains("tensor `w`") && e.contains("FLOAT8E4M3FN"),
        "{e}"
    );

    let m = model(
        17,
        graph(
            vec![with_attrs(
                node("Relu", "r", &["x"], &["y"]),
                vec![a_int("bogus", 1)],
            )],
            vec![vi("x", FLOAT, &[D::N(1)])],
            vec![vi("y", FLOAT, &[D::N(1)])],
            vec![],
        ),
    );
    let e = err_of(&m, None);
    assert!(
        e.starts_with("`Relu` node \"r\": ") && e.contains("bogus"),
        "{e}"
    );
}

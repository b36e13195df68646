//! External data: mapped on import, streamed on export, 64-byte aligned, re-imported
//! byte for byte; the exporter never writes over a file weights are mapped from.

mod support;

use compc_backend_onnx::{export_file, ExportError, ExportOptions, ExternalData};
use compc_frontend_onnx::import_file;
use compc_ir::{Graph, Op, WeightData};
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto};
use std::path::{Path, PathBuf};
use support::*;

/// `model.onnx` + `weights.bin` in `dir`: an MLP whose 64×32 weight (8 KiB) and bias
/// (128 bytes) are external, the bias at an unaligned offset.
fn write_external_mlp(dir: &Path) -> PathBuf {
    let w: Vec<f32> = (0..64 * 32).map(|i| (i as f32).sin()).collect();
    let b: Vec<f32> = (0..32).map(|i| i as f32 * 0.25).collect();
    let mut data: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    data.extend([0xAA; 3]);
    let b_off = data.len();
    data.extend(b.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("weights.bin"), &data).expect("write data");
    let (w_len, b_len) = ((w.len() * 4).to_string(), (b.len() * 4).to_string());
    let b_off = b_off.to_string();
    let m = model(
        17,
        graph(
            vec![
                node("MatMul", "fc", &["x", "w"], &["h"]),
                node("Add", "bias", &["h", "b"], &["y"]),
            ],
            vec![vi("x", FLOAT, &[D::P("batch"), D::N(64)])],
            vec![vi("y", FLOAT, &[D::P("batch"), D::N(32)])],
            vec![
                t_external(
                    "w",
                    FLOAT,
                    &[64, 32],
                    &[("location", "weights.bin"), ("length", &w_len)],
                ),
                t_external(
                    "b",
                    FLOAT,
                    &[32],
                    &[
                        ("location", "./weights.bin"),
                        ("offset", &b_off),
                        ("length", &b_len),
                    ],
                ),
            ],
        ),
    );
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes(&m)).expect("write model");
    path
}

fn weights_by_name(g: &Graph) -> Vec<(String, Vec<u8>, bool)> {
    let mut v: Vec<_> = g
        .node_ids()
        .filter_map(|id| match g.node(id).op {
            Op::Const(w) => {
                let w = g.weights.get(w);
                let mapped = matches!(w.data(), WeightData::Mapped { .. });
                Some((w.name.clone(), w.bytes().expect("bytes").to_vec(), mapped))
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn read_model(p: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(p).expect("read")).expect("parse")
}

#[test]
fn external_data_is_mapped_and_round_trips() {
    let src = tempfile::tempdir().expect("tempdir");
    let g = import_file(&write_external_mlp(src.path())).expect("import");
    let ws = weights_by_name(&g);
    assert_eq!(ws.len(), 2);
    assert!(
        ws.iter().all(|(_, _, mapped)| *mapped),
        "both weights are mapped, not copied"
    );

    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("exported.onnx");
    let opts = ExportOptions {
        external_data: ExternalData::Always,
        ..Default::default()
    };
    export_file(&g, &path, &opts).expect("export");
    let data = out.path().join("exported.data");
    assert!(data.exists());

    let m = read_model(&path);
    let mut external = 0;
    for t in &m.graph.initializer {
        if t.data_location.value() == DataLocation::EXTERNAL as i32 {
            external += 1;
            let kv = |k: &str| {
                t.external_data
                    .iter()
                    .find(|e| e.key == k)
                    .map(|e| e.value.clone())
                    .expect("key")
            };
            assert_eq!(kv("location"), "exported.data");
            assert_eq!(kv("offset").parse::<u64>().expect("offset") % 64, 0);
        } else {
            assert!(t.raw_data.len() < 1024, "small weights stay inline");
        }
    }
    assert_eq!(external, 1, "only the 8 KiB weight goes external");

    let again = import_file(&path).expect("re-import");
    let ws2 = weights_by_name(&again);
    assert_eq!(
        ws.iter().map(|(n, b, _)| (n, b)).collect::<Vec<_>>(),
        ws2.iter().map(|(n, b, _)| (n, b)).collect::<Vec<_>>()
    );
    assert!(ws2.iter().any(|(n, _, mapped)| n == "w" && *mapped));
    assert_eq!(signature(&again), signature(&g));
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn inline_export_of_mapped_weights() {
    let src = tempfile::tempdir().expect("tempdir");
    let g = import_file(&write_external_mlp(src.path())).expect("import");
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("inline.onnx");
    let opts = ExportOptions {
        external_data: ExternalData::Never,
        ..Default::default()
    };
    export_file(&g, &path, &opts).expect("export");
    assert!(!out.path().join("inline.data").exists());
    let again = import_file(&path).expect("re-import");
    assert_eq!(signature(&again), signature(&g));
    assert!(weights_by_name(&again).iter().all(|(_, _, mapped)| !mapped));
}

#[test]
fn writing_over_the_mapped_source_is_refused() {
    let src = tempfile::tempdir().expect("tempdir");
    let g = import_file(&write_external_mlp(src.path())).expect("import");
    // `weights.onnx` would put its external data in `weights.data`... and `weights.bin`
    // itself is the mapped file: writing a model there must fail.
    let e = export_file(
        &g,
        &src.path().join("weights.bin"),
        &ExportOptions::default(),
    )
    .expect_err("must refuse");
    assert!(matches!(e, ExportError::WouldOverwriteSource { .. }), "{e}");
    assert!(e.to_string().contains("weights.bin"), "{e}");

    std::fs::copy(src.path().join("weights.bin"), src.path().join("copy.bin")).expect("copy");
    std::fs::rename(src.path().join("copy.bin"), src.path().join("weights.data")).expect("mv");
    // A same-named but different file is not a source: writing there is fine.
    export_file(
        &g,
        &src.path().join("weights.onnx"),
        &ExportOptions::default(),
    )
    .expect("export");
}

#[cfg(unix)]
#[test]
fn a_hard_link_to_the_source_is_the_source() {
    let src = tempfile::tempdir().expect("tempdir");
    let g = import_file(&write_external_mlp(src.path())).expect("import");
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::hard_link(src.path().join("weights.bin"), out.path().join("m.data")).expect("link");
    let opts = ExportOptions {
        external_data: ExternalData::Always,
        ..Default::default()
    };
    let e = export_file(&g, &out.path().join("m.onnx"), &opts).expect_err("must refuse");
    assert!(matches!(e, ExportError::WouldOverwriteSource { .. }), "{e}");
}

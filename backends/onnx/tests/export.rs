//! Export: round trips through the frontend, opset forms, lowering, custom ops.

mod support;

use compc_backend_onnx::{export_model, ExportError, ExportOptions};
use compc_frontend_onnx::import_bytes;
use compc_ir::op::{Hadamard, RouterTopK, COMPC_DOMAIN};
use compc_ir::{DType, Graph, GraphOutput, Op, TensorType, ValueRef, Weight};
use onnx_protobuf::{Message, ModelProto, NodeProto};
use support::*;

fn opts(opset: Option<i64>) -> ExportOptions {
    ExportOptions {
        opset,
        ..Default::default()
    }
}

fn reimport(m: &ModelProto) -> Graph {
    import_bytes(&m.write_to_bytes().expect("serialize"), None).expect("re-import")
}

fn op_types(m: &ModelProto) -> Vec<String> {
    m.graph.node.iter().map(|n| n.op_type.clone()).collect()
}

fn node_of<'a>(m: &'a ModelProto, op: &str) -> &'a NodeProto {
    m.graph
        .node
        .iter()
        .find(|n| n.op_type == op)
        .unwrap_or_else(|| panic!("no {op} node in {:?}", op_types(m)))
}

fn init_ints(m: &ModelProto, name: &str) -> Vec<i64> {
    let t = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    t.raw_data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn mlp_round_trip_keeps_the_graph() {
    let g = import_bytes(&bytes(&mlp()), None).expect("import");
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    assert_eq!(m.producer_name, "compc");
    assert_eq!(m.opset_import[0].version, 17);
    assert_eq!(m.ir_version, 8);
    assert_eq!(op_types(&m), ["MatMul", "Add", "Relu"]);
    assert_eq!(
        m.graph.input.len(),
        1,
        "initializers are not listed as inputs"
    );
    assert_eq!(m.graph.input[0].name, "x");
    assert_eq!(m.graph.output[0].name, "y");
    let again = reimport(&m);
    assert_eq!(signature(&again), signature(&g));
    assert_eq!(
        again.node(again.inputs()[0]).outputs[0],
        g.node(g.inputs()[0]).outputs[0]
    );
}

#[test]
fn metadata_round_trips() {
    let mut src = mlp();
    src.doc_string = "a doc".into();
    src.metadata_props
        .push(onnx_protobuf::StringStringEntryProto {
            key: "author".into(),
            value: "me".into(),
            ..Default::default()
        });
    let g = import_bytes(&bytes(&src), None).expect("import");
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    assert_eq!(m.doc_string, "a doc");
    assert_eq!(m.metadata_props.len(), 1);
    assert_eq!(
        (
            m.metadata_props[0].key.as_str(),
            m.metadata_props[0].value.as_str()
        ),
        ("author", "me")
    );
}

fn squeeze_model() -> ModelProto {
    model(
        17,
        graph(
            vec![node("Squeeze", "sq", &["x", "axes"], &["y"])],
            vec![vi("x", FLOAT, &[D::N(1), D::N(3)])],
            vec![vi("y", FLOAT, &[D::N(3)])],
            vec![t_i64("axes", &[1], &[0])],
        ),
    )
}

#[test]
fn squeeze_axes_are_written_in_each_opsets_form() {
    let g = import_bytes(&bytes(&squeeze_model()), None).expect("import");

    let new = export_model(&g, &opts(Some(17))).expect("opset 17");
    let sq = node_of(&new, "Squeeze");
    assert_eq!(sq.input.len(), 2, "opset 13+ takes axes as an input");
    assert!(sq.attribute.is_empty());
    assert_eq!(init_ints(&new, &sq.input[1]), vec![0]);
    assert_eq!(signature(&reimport(&new)), signature(&g));

    let old = export_model(&g, &opts(Some(12))).expect("opset 12");
    assert_eq!(old.ir_version, 7);
    let sq = node_of(&old, "Squeeze");
    assert_eq!(sq.input.len(), 1, "before 13 axes are an attribute");
    assert_eq!(sq.attribute.len(), 1);
    assert_eq!(
        (
            sq.attribute[0].name.as_str(),
            sq.attribute[0].ints.as_slice()
        ),
        ("axes", &[0i64][..])
    );
    assert!(old.graph.initializer.is_empty());
}

#[test]
fn reduce_mean_axes_move_at_opset_18() {
    let src = model(
        17,
        graph(
            vec![with_attrs(
                node("ReduceMean", "rm", &["x"], &["y"]),
                vec![a_ints("axes", &[-1])],
            )],
            vec![vi("x", FLOAT, &[D::N(2), D::N(3)])],
            vec![vi("y", FLOAT, &[D::N(2), D::N(1)])],
            vec![],
        ),
    );
    let g = import_bytes(&bytes(&src), None).expect("import");
    let m17 = export_model(&g, &opts(Some(17))).expect("17");
    assert_eq!(node_of(&m17, "ReduceMean").attribute[0].name, "axes");
    let m18 = export_model(&g, &opts(Some(18))).expect("18");
    let rm = node_of(&m18, "ReduceMean");
    assert!(rm.attribute.is_empty());
    assert_eq!(init_ints(&m18, &rm.input[1]), vec![-1]);
    assert_eq!(signature(&reimport(&m18)), signature(&g));
}

#[test]
fn computed_axes_cannot_go_to_an_old_opset() {
    let src = model(
        17,
        graph(
            vec![node("Unsqueeze", "u", &["x", "ax"], &["y"])],
            vec![vi("x", FLOAT, &[D::N(3)]), vi("ax", INT64, &[D::N(1)])],
            vec![vi("y", FLOAT, &[D::N(1), D::N(3)])],
            vec![],
        ),
    );
    let g = import_bytes(&bytes(&src), None).expect("import");
    let e = export_model(&g, &opts(Some(12))).expect_err("must refuse");
    assert!(e.to_string().contains("needs opset 13"), "{e}");
}

#[test]
fn custom_op_round_trip() {
    let mut n = node("FancyOp", "f", &["x", "", "x"], &["y"]);
    n.domain = "com.example".into();
    let n = with_attrs(n, vec![a_int("k", 3), a_str("mode", "fast")]);
    let mut src = model(
        17,
        graph(
            vec![n],
            vec![vi("x", FLOAT, &[D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            vec![],
        ),
    );
    add_opset(&mut src, "com.example", 4);
    let g = import_bytes(&bytes(&src), None).expect("import");
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    let f = node_of(&m, "FancyOp");
    assert_eq!(f.domain, "com.example");
    assert_eq!(f.input, ["x", "", "x"]);
    assert!(m
        .opset_import
        .iter()
        .any(|o| o.domain == "com.example" && o.version == 4));
    assert_eq!(signature(&reimport(&m)), signature(&g));
}

#[test]
fn rms_norm_form_follows_the_opset() {
    let src = model(
        17,
        graph(
            vec![with_attrs(
                node("SimplifiedLayerNormalization", "rms", &["x", "g"], &["y"]),
                vec![a_float("epsilon", 1e-6)],
            )],
            vec![vi("x", FLOAT, &[D::N(2), D::N(4)])],
            vec![vi("y", FLOAT, &[D::N(2), D::N(4)])],
            vec![t_f32("g", &[4], &[1.0; 4])],
        ),
    );
    let g = import_bytes(&bytes(&src), None).expect("import");
    let m = export_model(&g, &ExportOptions::default()).expect("17");
    assert_eq!(op_types(&m), ["SimplifiedLayerNormalization"]);
    let m = export_model(&g, &opts(Some(23))).expect("23");
    assert_eq!(op_types(&m), ["RMSNormalization"]);
    assert_eq!(m.ir_version, 11);
    assert_eq!(signature(&reimport(&m)), signature(&g));
}

/// x: [2, 8] f32 -> hadamard{size} -> y.
fn hadamard_graph(size: i64) -> Graph {
    let mut g = Graph::new("h");
    g.opsets.insert(String::new(), 17);
    g.opsets.insert(COMPC_DOMAIN.into(), 1);
    let ty = TensorType::known(DType::F32, &[2, 8]);
    let x = g.add_input("x", ty.clone());
    let h = g.add_node(
        Op::Hadamard(Hadamard { size }),
        vec![Some(x.into())],
        vec![ty],
        "rot",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: ValueRef::new(h, 0),
    });
    g
}

#[test]
fn hadamard_lowers_to_matmul() {
    let m = export_model(&hadamard_graph(0), &ExportOptions::default()).expect("export");
    assert_eq!(op_types(&m), ["MatMul"]);
    assert!(m.opset_import.iter().all(|o| o.domain != COMPC_DOMAIN));
    let h = &m.graph.initializer[0];
    assert_eq!(h.dims, [8, 8]);
    let v: Vec<f32> = h
        .raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let s = 1.0 / 8f32.sqrt();
    assert_eq!((v[0], v[1], v[8 + 1], v[3 * 8 + 5]), (s, s, -s, -s));

    let m = export_model(&hadamard_graph(4), &ExportOptions::default()).expect("export");
    assert_eq!(op_types(&m), ["Shape", "Reshape", "MatMul", "Reshape"]);
    let reshape = node_of(&m, "Reshape");
    assert_eq!(init_ints(&m, &reshape.input[1]), vec![-1, 4]);
    assert_eq!(m.graph.output[0].name, "y");
}

#[test]
fn router_top_k_is_refused_clearly() {
    let mut g = Graph::new("r");
    let x = g.add_input("scores", TensorType::known(DType::F32, &[1, 8]));
    let r = g.add_node(
        Op::RouterTopK(RouterTopK { capacity: 0.5 }),
        vec![Some(x.into())],
        vec![TensorType::known(DType::I64, &[1, 4])],
        "router",
    );
    g.outputs.push(GraphOutput {
        name: "idx".into(),
        value: r.into(),
    });
    let e = export_model(&g, &ExportOptions::default()).expect_err("not exportable");
    assert!(matches!(e, ExportError::Node(_)));
    assert!(
        e.to_string().contains("router_top_k is not exportable"),
        "{e}"
    );
}

#[test]
fn int4_weights_raise_the_opset() {
    let mut g = Graph::new("q");
    g.opsets.insert(String::new(), 17);
    let w = g.add_const(Weight::from_bytes("w", DType::I4, vec![4], vec![0x21, 0x43]).expect("w"));
    let s = g.add_const(Weight::from_f32("s", vec![], &[0.5]).expect("s"));
    let d = g.add_node(
        Op::from_name("dequantize_linear", Default::default()).expect("op"),
        vec![Some(w.into()), Some(s.into())],
        vec![TensorType::known(DType::F32, &[4])],
        "dq",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: d.into(),
    });
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    assert_eq!(m.opset_import[0].version, 21);
    assert_eq!(m.ir_version, 10);
    let e = export_model(&g, &opts(Some(17))).expect_err("17 has no int4");
    assert!(e.to_string().contains("needs opset 21"), "{e}");
    let again = reimport(&m);
    assert_eq!(signature(&again), signature(&g));
}

#[test]
fn outputs_that_are_inputs_or_weights_get_identity_nodes() {
    let mut g = Graph::new("pass");
    let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
    let c = g.add_const(Weight::from_f32("c", vec![2], &[1.0, 2.0]).expect("c"));
    g.outputs.push(GraphOutput {
        name: "x_again".into(),
        value: x.into(),
    });
    g.outputs.push(GraphOutput {
        name: "c_out".into(),
        value: c.into(),
    });
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    assert_eq!(op_types(&m), ["Identity", "Identity"]);
    assert_eq!(m.graph.initializer.len(), 1);
    let again = reimport(&m);
    assert_eq!(again.outputs.len(), 2);
}

#[test]
fn matmul_nbits_keeps_its_domain() {
    let mut n = node("MatMulNBits", "mm", &["a", "b", "s"], &["y"]);
    n.domain = "com.microsoft".into();
    let n = with_attrs(
        n,
        vec![
            a_int("K", 16),
            a_int("N", 2),
            a_int("bits", 4),
            a_int("block_size", 16),
        ],
    );
    let packed = onnx_protobuf::TensorProto {
        name: "b".into(),
        dims: vec![2, 1, 8],
        data_type: 2,
        raw_data: (0..16).collect(),
        ..Default::default()
    };
    let mut src = model(
        17,
        graph(
            vec![n],
            vec![vi("a", FLOAT, &[D::P("m"), D::N(16)])],
            vec![vi("y", FLOAT, &[D::P("m"), D::N(2)])],
            vec![packed, t_f32("s", &[2], &[0.5, 0.25])],
        ),
    );
    add_opset(&mut src, "com.microsoft", 1);
    let g = import_bytes(&bytes(&src), None).expect("import");
    assert!(g
        .node_ids()
        .any(|id| matches!(g.node(id).op, Op::MatMulNBits(_))));
    let m = export_model(&g, &ExportOptions::default()).expect("export");
    assert_eq!(node_of(&m, "MatMulNBits").domain, "com.microsoft");
    assert!(m
        .opset_import
        .iter()
        .any(|o| o.domain == "com.microsoft" && o.version == 1));
    assert_eq!(signature(&reimport(&m)), signature(&g));
}

/// The torch-exported models under the repository's `tests/fixtures` survive
/// import → export → import unchanged.
#[test]
fn fixture_models_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: no fixtures at {}", dir.display());
        return;
    };
    let mut seen = 0;
    for e in entries {
        let p = e.expect("entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("onnx") {
            continue;
        }
        let g = compc_frontend_onnx::import_file(&p).expect("import fixture");
        let m = export_model(&g, &ExportOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(signature(&reimport(&m)), signature(&g), "{}", p.display());
        seen += 1;
    }
    eprintln!("{seen} fixture models round-tripped");
}

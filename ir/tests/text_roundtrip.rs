//! Text format round trips: graphs built with the `Graph` API print, parse and print again
//! to the same bytes; one small graph's text is checked literally.

use compc_ir::attr::{Attr, Attrs, Literal};
use compc_ir::op::{Axis0, CustomOp, Split};
use compc_ir::text::{parse, parse_with_weights, print};
use compc_ir::{DType, Dim, Graph, Op, Shape, TensorType, ValueRef, Weight};

fn sym(dims: &[Dim], dtype: DType) -> TensorType {
    TensorType::new(dtype, Shape::Ranked(dims.to_vec()))
}

fn batch(n: u64) -> TensorType {
    sym(&[Dim::Sym("batch".into()), Dim::Known(n)], DType::F32)
}

fn roundtrip(g: &Graph) -> String {
    let text = print(g);
    let parsed =
        parse(&text).unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
    let again = print(&parsed);
    assert_eq!(again, text, "print -> parse -> print changed the text");
    text
}

fn f32_weight(name: &str, dims: Vec<u64>) -> Weight {
    let n: u64 = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i as f32) * 0.25 - 3.0).collect();
    Weight::from_f32(name, dims, &values).expect("valid weight")
}

/// Everything the format has: symbolic dims, quoted names, big and small consts of many
/// dtypes, a shared weight, multi-output nodes, omitted inputs, custom ops with every kind
/// of attribute, outputs reading a slot of a multi-output node, opsets.
fn kitchen_sink() -> Graph {
    let mut g = Graph::new("block");
    g.opsets.insert(String::new(), 17);
    g.opsets.insert("com.microsoft".into(), 1);
    let x = g.add_input("x", batch(64));
    let ids = g.add_input("input.1", TensorType::known(DType::I64, &[2]));
    let digits = g.add_input("0", sym(&[Dim::Unknown, Dim::Known(3)], DType::F32));
    let _spaced = g.add_input("a \"quoted\" name", TensorType::unranked(DType::F16));

    let w = g.add_const(f32_weight("fc1.weight", vec![64, 64]));
    let w_again = match g.node(w).op {
        Op::Const(wid) => g.add_const_ref(wid),
        _ => unreachable!(),
    };
    let odd = g.add_const(f32_weight("onnx::MatMul_123", vec![8, 8]));
    let small = g.add_const(Weight::from_i64("shape", vec![2], &[1, -2]).expect("weight"));

    let mm = g.add_node(
        Op::MatMul,
        vec![Some(x.into()), Some(w.into())],
        vec![batch(64)],
        "/layers.0/MatMul",
    );
    let mm2 = g.add_node(
        Op::MatMul,
        vec![Some(mm.into()), Some(w_again.into())],
        vec![batch(64)],
        "",
    );
    let split = g.add_node(
        Op::Split(Split {
            axis: 1,
            ..Default::default()
        }),
        vec![Some(mm2.into())],
        vec![batch(32), batch(32)],
        "",
    );
    let mut attrs = Attrs::new();
    attrs.insert("i".into(), Attr::Int(-3));
    attrs.insert("f".into(), Attr::Float(1e-5));
    attrs.insert("inf".into(), Attr::Float(f32::NEG_INFINITY));
    attrs.insert("nan".into(), Attr::Float(f32::NAN));
    attrs.insert("s".into(), Attr::Str("tab\there \"q\" \\ ü \u{1}".into()));
    attrs.insert("ints".into(), Attr::Ints(vec![1, -2, i64::MAX, i64::MIN]));
    attrs.insert("floats".into(), Attr::Floats(vec![1.0, 2.5, -0.0, 3e38]));
    attrs.insert("no_floats".into(), Attr::Floats(vec![]));
    attrs.insert("strs".into(), Attr::Strs(vec!["a".into(), "".into()]));
    attrs.insert("to".into(), Attr::Type(DType::BF16));
    attrs.insert("odd name".into(), Attr::Int(1));
    attrs.insert("t".into(), Attr::Tensor(Literal::scalar_f32(0.5)));
    attrs.insert(
        "t2".into(),
        Attr::Tensor(Literal {
            dtype: DType::I4,
            dims: vec![3],
            bytes: vec![0x7F, 0x08],
        }),
    );
    attrs.insert(
        "raw".into(),
        Attr::Tensor(Literal {
            dtype: DType::Str,
            dims: vec![1],
            bytes: b"hi".to_vec(),
        }),
    );
    let custom = g.add_node(
        Op::Custom(CustomOp {
            domain: "com.example".into(),
            op_type: "Foo".into(),
            attrs,
        }),
        vec![Some(ValueRef::new(split, 0)), None, Some(odd.into())],
        vec![TensorType::unranked(DType::F32), sym(&[], DType::I64)],
        "custom/foo",
    );
    let gather = g.add_node(
        Op::Gather(Axis0 { axis: 0 }),
        vec![Some(digits.into()), Some(ids.into())],
        vec![sym(&[Dim::Known(2), Dim::Known(3)], DType::F32)],
        "",
    );
    let _sink = g.add_node(
        Op::Custom(CustomOp {
            domain: String::new(),
            op_type: "Print".into(),
            attrs: Attrs::new(),
        }),
        vec![Some(small.into())],
        vec![],
        "",
    );
    g.outputs.push(compc_ir::GraphOutput {
        name: "logits".into(),
        value: ValueRef::new(custom, 0),
    });
    g.outputs.push(compc_ir::GraphOutput {
        name: "second half".into(),
        value: ValueRef::new(split, 1),
    });
    g.outputs.push(compc_ir::GraphOutput {
        name: "g".into(),
        value: gather.into(),
    });
    g.outputs.push(compc_ir::GraphOutput {
        name: "x_out".into(),
        value: x.into(),
    });
    g
}

#[test]
fn kitchen_sink_round_trips() {
    let g = kitchen_sink();
    let text = roundtrip(&g);
    assert!(
        text.contains(
            "%x: tensor<{batch}x64xf32>, %input.1: tensor<2xi64>, %\"0\": tensor<?x3xf32>"
        ),
        "{text}"
    );
    assert!(text.contains("weight = @fc1.weight}"), "{text}");
    assert!(text.contains("weight = @\"onnx::MatMul_123\"}"), "{text}");
    // The const's name is its weight's, so no `loc` repeats it.
    assert!(
        text.contains("%3 = \"const\"() {value = dense<[1, -2]>} : () -> tensor<2xi64>\n"),
        "{text}"
    );
    assert!(text.contains("%6:2 = \"split\"(%5) {axis = 1}"), "{text}");
    assert!(
        text.contains("%7:2 = \"custom:com.example:Foo\"(%6#0, _, %2)"),
        "{text}"
    );
    assert!(
        text.contains("  \"custom::Print\"(%3) : (tensor<2xi64>) -> ()\n"),
        "{text}"
    );
    assert!(text.contains("return %7#0, %6#1, %8, %x"), "{text}");
    assert!(
        text.contains("-> (logits: tensor<*xf32>, \"second half\": tensor<{batch}x32xf32>"),
        "{text}"
    );
    assert!(
        text.contains("opsets {\"\" = 17, \"com.microsoft\" = 1}"),
        "{text}"
    );
}

#[test]
fn parsed_graph_has_the_same_structure() {
    let g = kitchen_sink();
    let p = parse(&print(&g)).expect("parses");
    assert_eq!(p.name, "block");
    assert_eq!(p.inputs().len(), 4);
    let names: Vec<&str> = p
        .inputs()
        .iter()
        .map(|&i| p.node(i).name.as_str())
        .collect();
    assert_eq!(names, ["x", "input.1", "0", "a \"quoted\" name"]);
    let outs: Vec<&str> = p.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, ["logits", "second half", "g", "x_out"]);
    assert_eq!(p.outputs[1].value.slot, 1);
    assert_eq!(p.outputs[3].value.node, p.inputs()[0]);
    assert_eq!(p.node_count(), g.node_count());
    assert_eq!(p.opsets, g.opsets);
    // The two consts reading fc1.weight still share one weight.
    let fc1: Vec<_> = p
        .node_ids()
        .filter_map(|id| match p.node(id).op {
            Op::Const(w) if p.weights.get(w).name == "fc1.weight" => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(fc1.len(), 2);
    assert_eq!(fc1[0], fc1[1]);
    assert!(p.weights.get(fc1[0]).is_missing());
    // Attributes come back as they were.
    let custom = p
        .node_ids()
        .find(|&id| p.node(id).name == "custom/foo")
        .expect("custom node");
    let orig = g
        .node_ids()
        .find(|&id| g.node(id).name == "custom/foo")
        .expect("custom node");
    let (a, b) = (p.node(custom).op.attrs(), g.node(orig).op.attrs());
    assert_eq!(a.len(), b.len());
    for (k, v) in &b {
        match (v, &a[k]) {
            (Attr::Float(x), Attr::Float(y)) => {
                assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
            }
            (Attr::Floats(x), Attr::Ints(y)) if x.is_empty() => assert!(y.is_empty()),
            (x, y) => assert_eq!(x, y, "attribute {k}"),
        }
    }
}

#[test]
fn small_consts_of_every_dtype_round_trip_bit_for_bit() {
    let mut g = Graph::new("consts");
    let cases: Vec<(DType, Vec<u64>, Vec<u8>)> = vec![
        (
            DType::F32,
            vec![4],
            [1.5f32, -0.0, f32::INFINITY, 1e-45]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            DType::F32,
            vec![1],
            f32::from_bits(0x7fc0_0001).to_le_bytes().to_vec(),
        ),
        (
            DType::F64,
            vec![2],
            [0.1f64, f64::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            DType::F16,
            vec![3],
            [
                half::f16::from_f32(0.1),
                half::f16::MAX,
                half::f16::from_bits(1),
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        ),
        (
            DType::BF16,
            vec![2],
            [half::bf16::from_f32(3.3), half::bf16::NEG_INFINITY]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (DType::I4, vec![3], vec![0x8F, 0x07]),
        (DType::U4, vec![2, 2], vec![0xF0, 0x21]),
        (DType::Bool, vec![3], vec![1, 0, 1]),
        (DType::Bool, vec![1], vec![2]),
        (DType::U64, vec![1], u64::MAX.to_le_bytes().to_vec()),
        (DType::I8, vec![2], vec![0x80, 0x7F]),
        (DType::U16, vec![1], 65535u16.to_le_bytes().to_vec()),
        (DType::I32, vec![], (-7i32).to_le_bytes().to_vec()),
        (DType::U8, vec![0], vec![]),
    ];
    let mut consts = Vec::new();
    for (i, (dtype, dims, bytes)) in cases.iter().enumerate() {
        let w = Weight::from_bytes(format!("c{i}"), *dtype, dims.clone(), bytes.clone())
            .expect("weight");
        consts.push(g.add_const(w));
    }
    for (i, &c) in consts.iter().enumerate() {
        g.outputs.push(compc_ir::GraphOutput {
            name: format!("o{i}"),
            value: c.into(),
        });
    }
    let text = roundtrip(&g);
    assert!(text.contains("dense<[1.5, -0.0, inf, 1e-45]>"), "{text}");
    assert!(text.contains("dense<\"0x0100C07F\">"), "{text}");
    assert!(text.contains("dense<[-1, -8, 7]>"), "{text}");
    assert!(text.contains("dense<[18446744073709551615]>"), "{text}");
    assert!(text.contains("dense<[true, false, true]>"), "{text}");
    let p = parse(&text).expect("parses");
    for (i, (_, _, bytes)) in cases.iter().enumerate() {
        let w = p.const_weight(p.outputs[i].value).expect("const");
        assert_eq!(
            w.bytes().expect("inline data"),
            &bytes[..],
            "case {i}: {}",
            w.name
        );
    }
}

#[test]
fn exact_text_of_a_small_graph() {
    let mut g = Graph::new("mlp");
    let x = g.add_input("x", batch(4));
    let w = g.add_const(f32_weight("fc.weight", vec![4, 8]));
    let b = g.add_const(Weight::from_f32("fc.bias", vec![2], &[0.5, -1.0]).expect("weight"));
    let mm = g.add_node(
        Op::MatMul,
        vec![Some(x.into()), Some(w.into())],
        vec![batch(8)],
        "/fc/MatMul",
    );
    let sp = g.add_node(
        Op::Split(Split {
            axis: 1,
            num_outputs: Some(2),
            split: None,
        }),
        vec![Some(mm.into())],
        vec![batch(4), batch(4)],
        "",
    );
    let add = g.add_node(
        Op::Binary(compc_ir::op::BinaryOp::Add),
        vec![Some(ValueRef::new(sp, 1)), Some(b.into())],
        vec![batch(4)],
        "",
    );
    g.outputs.push(compc_ir::GraphOutput {
        name: "y".into(),
        value: add.into(),
    });
    let hash = match g.node(w).op {
        Op::Const(wid) => g.weights.get(wid).content_hash(),
        _ => unreachable!(),
    };
    let expected = format!(
        r#"graph @mlp(%x: tensor<{{batch}}x4xf32>) -> (y: tensor<{{batch}}x4xf32>) {{
  %0 = "const"() {{sha = "{hash:016x}", weight = @fc.weight}} : () -> tensor<4x8xf32>
  %1 = "const"() {{value = dense<[0.5, -1.0]>}} : () -> tensor<2xf32>
  %2 = "matmul"(%x, %0) : (tensor<{{batch}}x4xf32>, tensor<4x8xf32>) -> tensor<{{batch}}x8xf32> loc("/fc/MatMul")
  %3:2 = "split"(%2) {{axis = 1, num_outputs = 2}} : (tensor<{{batch}}x8xf32>) -> (tensor<{{batch}}x4xf32>, tensor<{{batch}}x4xf32>)
  %4 = "add"(%3#1, %1) : (tensor<{{batch}}x4xf32>, tensor<2xf32>) -> tensor<{{batch}}x4xf32>
  return %4
}}
"#
    );
    assert_eq!(print(&g), expected);
    roundtrip(&g);
}

#[test]
fn hand_written_text_is_renumbered() {
    let src = r#"
// A comment before the graph.
graph @"my graph"  ( %in : tensor< 2 x f32 > )
    -> ( out : tensor<2xf32> )
{
  %h = "relu" ( %in ) : ( tensor<2xf32> ) -> tensor<2xf32>   // trailing comment
  %c = "const"() {value = dense<[[1], [2]]>} : () -> tensor<2x1xf32> loc("bias")
  %t:2 = "top_k"(%h, _) {axis = 0} : (tensor<2xf32>, none) -> (tensor<2xf32>, tensor<2xi64>)
  %s = "shape"(%c) : (tensor<2x1xf32>) -> tensor<2xi64>
  return %t#0
}
"#;
    let g = parse(src).expect("parses");
    let text = print(&g);
    let expected = r#"graph @"my graph"(%in: tensor<2xf32>) -> (out: tensor<2xf32>) {
  %0 = "relu"(%in) : (tensor<2xf32>) -> tensor<2xf32>
  %1 = "const"() {value = dense<[1.0, 2.0]>} : () -> tensor<2x1xf32> loc("bias")
  %2:2 = "top_k"(%0, _) {axis = 0} : (tensor<2xf32>, none) -> (tensor<2xf32>, tensor<2xi64>)
  %3 = "shape"(%1) : (tensor<2x1xf32>) -> tensor<2xi64>
  return %2#0
}
"#;
    assert_eq!(text, expected);
    assert_eq!(print(&parse(&text).expect("reparses")), text);
}

#[test]
fn empty_graph_and_zero_outputs() {
    let g = Graph::new("");
    assert_eq!(roundtrip(&g), "graph @\"\"() -> () {\n  return\n}\n");
}

#[test]
fn weights_resolve_against_a_store() {
    let g = kitchen_sink();
    let text = print(&g);
    let p = parse_with_weights(&text, &g.weights).expect("resolves");
    assert_eq!(print(&p), text);
    let fc1 = p
        .node_ids()
        .find_map(|id| match p.node(id).op {
            Op::Const(w) if p.weights.get(w).name == "fc1.weight" => Some(w),
            _ => None,
        })
        .expect("fc1");
    let w = p.weights.get(fc1);
    assert!(!w.is_missing());
    assert_eq!(w.to_f32_vec().expect("data").len(), 64 * 64);
}

#[test]
fn store_errors() {
    let g = kitchen_sink();
    let text = print(&g);
    let mut other = compc_ir::WeightStore::new();
    let err = parse_with_weights(&text, &other).expect_err("empty store");
    assert!(
        err.message
            .contains("weight `@fc1.weight` is not in the weight store"),
        "{err}"
    );
    other.add(f32_weight("fc1.weight", vec![64, 63]));
    let err = parse_with_weights(&text, &other).expect_err("different data");
    assert!(
        err.message.contains("weight `@fc1.weight` has hash"),
        "{err}"
    );
    assert!(err.message.contains("in the store, the text says"), "{err}");
    let line = text
        .lines()
        .position(|l| l.contains("@fc1.weight"))
        .expect("line")
        + 1;
    assert_eq!(err.line, line);
}

#[test]
fn cyclic_graph_prints_without_panicking() {
    let mut g = Graph::new("cyc");
    let x = g.add_input("x", TensorType::known(DType::F32, &[1]));
    let a = g.add_node(
        Op::Unary(compc_ir::op::UnaryOp::Relu),
        vec![Some(x.into())],
        vec![TensorType::known(DType::F32, &[1])],
        "",
    );
    let b = g.add_node(
        Op::Unary(compc_ir::op::UnaryOp::Relu),
        vec![Some(a.into())],
        vec![TensorType::known(DType::F32, &[1])],
        "",
    );
    g.set_input(a, 0, Some(b.into()));
    let text = print(&g);
    assert!(
        text.starts_with("// error: the graph has a cycle"),
        "{text}"
    );
    assert!(parse(&text).is_err());
}

#[test]
fn canonical_nans_print_as_nan() {
    let mut g = Graph::new("nans");
    let f32s = Weight::from_f32("a", vec![2], &[f32::NAN, 1.0]).expect("weight");
    let f64s = Weight::from_bytes("b", DType::F64, vec![1], f64::NAN.to_le_bytes().to_vec())
        .expect("weight");
    let f16s = Weight::from_bytes(
        "c",
        DType::F16,
        vec![1],
        half::f16::NAN.to_le_bytes().to_vec(),
    )
    .expect("weight");
    for w in [f32s, f64s, f16s] {
        let c = g.add_const(w);
        g.outputs.push(compc_ir::GraphOutput {
            name: format!("o{}", g.outputs.len()),
            value: c.into(),
        });
    }
    let text = roundtrip(&g);
    assert!(text.contains("dense<[nan, 1.0]>"), "{text}");
    assert!(
        text.contains("dense<[nan]>} : () -> tensor<1xf64>"),
        "{text}"
    );
    assert!(
        text.contains("dense<[nan]>} : () -> tensor<1xf16>"),
        "{text}"
    );
}

#[test]
fn input_op_outside_the_input_list_prints_in_the_body() {
    let mut g = Graph::new("g");
    let t = TensorType::known(DType::F32, &[1]);
    let stray = g.add_node(Op::Input, vec![], vec![t.clone()], "stray");
    let r = g.add_node(
        Op::Unary(compc_ir::op::UnaryOp::Relu),
        vec![Some(stray.into())],
        vec![t],
        "",
    );
    g.outputs.push(compc_ir::GraphOutput {
        name: "y".into(),
        value: r.into(),
    });
    let text = roundtrip(&g);
    assert!(
        text.contains("  %0 = \"input\"() : () -> tensor<1xf32> loc(\"stray\")\n"),
        "{text}"
    );
    let p = parse(&text).expect("parses");
    assert!(p.inputs().is_empty());
}

#[test]
fn hand_written_reference_without_sha_resolves_with_a_store() {
    let mut store = compc_ir::WeightStore::new();
    store.add(f32_weight("w", vec![32]));
    let src = "graph @g() -> (y: tensor<32xf32>) {\n  %w = \"const\"() {weight = @w} : () -> tensor<32xf32>\n  return %w\n}\n";
    let g = parse_with_weights(src, &store).expect("resolves");
    let hash = store
        .iter()
        .next()
        .map(|(_, w)| w.content_hash())
        .expect("weight");
    let expected = format!("graph @g() -> (y: tensor<32xf32>) {{\n  %0 = \"const\"() {{sha = \"{hash:016x}\", weight = @w}} : () -> tensor<32xf32>\n  return %0\n}}\n");
    assert_eq!(print(&g), expected);
    let err = parse_with_weights(&src.replace("32xf32", "16xf32"), &store).expect_err("wrong type");
    assert_eq!(
        err.to_string(),
        "2:19: weight `@w` is tensor<32xf32> in the store, the text says tensor<16xf32>"
    );
}

//! Import of well-formed models: ops, weights, types, opset normalization.

mod common;

use common::*;
use compc_frontend_onnx::{import_bytes, meta};
use compc_ir::{Attr, DType, Dim, Graph, NodeId, Op, Shape, TensorType, WeightData};

fn import(m: &onnx_protobuf::ModelProto) -> Graph {
    import_bytes(&bytes(m), None).expect("import")
}

fn find(g: &Graph, name: &str) -> NodeId {
    g.node_ids()
        .find(|&id| g.node(id).name == name)
        .unwrap_or_else(|| panic!("no node named {name}"))
}

#[test]
fn mlp_imports_with_symbolic_batch() {
    let g = import(&mlp());
    assert_eq!(g.node_count(), 6, "x, w, b, matmul, add, relu");
    assert_eq!(g.inputs().len(), 1);
    let x = g.node(g.inputs()[0]);
    assert_eq!(x.name, "x");
    assert_eq!(
        x.outputs[0].shape,
        Shape::Ranked(vec![Dim::Sym("batch".into()), Dim::Known(4)])
    );
    assert_eq!(g.node(find(&g, "fc")).op, Op::MatMul);
    assert_eq!(g.node(find(&g, "act")).op.name(), "relu");
    assert_eq!(g.outputs.len(), 1);
    assert_eq!(g.outputs[0].name, "y");
    let y = g.value_type(g.outputs[0].value).expect("output type");
    assert_eq!(y.dtype, DType::F32);
    assert_eq!(g.opsets.get(""), Some(&17));
    assert_eq!(
        g.metadata.get(meta::PRODUCER_NAME).map(String::as_str),
        Some("tests")
    );

    let b = g.node(find(&g, "bias"));
    let bw = g
        .const_weight(b.input(1).expect("bias input"))
        .expect("b is a constant");
    assert_eq!(bw.to_f32_vec().expect("f32"), vec![0.1, -0.2, 0.3]);
    let w = g
        .const_weight(g.node(find(&g, "fc")).input(1).expect("w"))
        .expect("w");
    assert_eq!(w.dims, vec![4, 3]);
    assert!(matches!(w.data(), WeightData::Owned(_)));
}

#[test]
fn intermediate_values_get_a_placeholder_type() {
    let g = import(&mlp());
    let h = g.node(find(&g, "fc"));
    // No value_info for `h`: unranked until shape inference knows better.
    assert!(h.outputs[0].shape == Shape::Unranked || h.outputs[0].shape.rank() == Some(2));
}

#[test]
fn shared_initializer_has_one_const_node() {
    let m = model(
        17,
        graph(
            vec![
                node("Add", "a1", &["x", "c"], &["t"]),
                node("Mul", "m1", &["t", "c"], &["y"]),
            ],
            vec![vi("x", FLOAT, &[D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            vec![t_f32("c", &[2], &[1.0, 2.0]), t_f32("unused", &[1], &[0.0])],
        ),
    );
    let g = import(&m);
    let c1 = g.node(find(&g, "a1")).input(1);
    let c2 = g.node(find(&g, "m1")).input(1);
    assert_eq!(c1, c2);
    assert_eq!(g.node_count(), 4, "x, c, add, mul; `unused` leaves no node");
}

#[test]
fn constant_nodes_and_reshape() {
    let m = model(
        17,
        graph(
            vec![
                with_attrs(
                    node("Constant", "shape_c", &[], &["shape"]),
                    vec![a_tensor("value", t_i64("", &[2], &[3, -1]))],
                ),
                with_attrs(
                    node("Constant", "scale_c", &[], &["scale"]),
                    vec![a_float("value_float", 2.0)],
                ),
                node("Reshape", "r", &["x", "shape"], &["xr"]),
                node("Mul", "m", &["xr", "scale"], &["y"]),
            ],
            vec![vi("x", FLOAT, &[D::N(6)])],
            vec![vi("y", FLOAT, &[D::N(3), D::N(2)])],
            vec![],
        ),
    );
    let g = import(&m);
    let r = g.node(find(&g, "r"));
    assert!(matches!(r.op, Op::Reshape(_)));
    let shape = g
        .const_weight(r.input(1).expect("shape"))
        .expect("shape is constant");
    assert_eq!(shape.to_i64_vec().expect("ints"), vec![3, -1]);
    assert_eq!(shape.name, "shape");
    let scale = g
        .const_weight(g.node(find(&g, "m")).input(1).expect("scale"))
        .expect("const");
    assert_eq!(scale.dims, Vec::<u64>::new());
    assert_eq!(scale.to_f32_vec().expect("f32"), vec![2.0]);
}

#[test]
fn squeeze_constant_axes_become_an_attribute() {
    let m = model(
        17,
        graph(
            vec![
                node("Squeeze", "sq", &["x", "axes"], &["s"]),
                node("Unsqueeze", "unsq", &["s", "dyn_axes"], &["y"]),
            ],
            vec![
                vi("x", FLOAT, &[D::N(1), D::N(3)]),
                vi("dyn_axes", INT64, &[D::N(1)]),
            ],
            vec![vi("y", FLOAT, &[D::N(1), D::N(3)])],
            vec![{
                let mut t = t_i64("axes", &[1], &[0]);
                // raw_data form of an int64 initializer
                t.raw_data = 0i64.to_le_bytes().to_vec();
                t.int64_data.clear();
                t
            }],
        ),
    );
    let g = import(&m);
    let sq = g.node(find(&g, "sq"));
    assert_eq!(sq.inputs().len(), 1, "the axes input is dropped");
    assert_eq!(sq.op.attrs().get("axes"), Some(&Attr::Ints(vec![0])));
    let unsq = g.node(find(&g, "unsq"));
    assert_eq!(unsq.inputs().len(), 2, "computed axes stay an input");
    assert_eq!(unsq.op.attrs().get("axes"), None);
    assert_eq!(
        g.node_count(),
        4,
        "x, dyn_axes, squeeze, unsqueeze: no const for axes"
    );
}

#[test]
fn reduce_axes_from_opset_18_input_and_opset_13_attribute_agree() {
    let old = model(
        13,
        graph(
            vec![with_attrs(
                node("ReduceMean", "rm", &["x"], &["y"]),
                vec![a_ints("axes", &[1]), a_int("keepdims", 0)],
            )],
            vec![vi("x", FLOAT, &[D::N(2), D::N(3)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            vec![],
        ),
    );
    let new = model(
        18,
        graph(
            vec![with_attrs(
                node("ReduceMean", "rm", &["x", "ax"], &["y"]),
                vec![a_int("keepdims", 0)],
            )],
            vec![vi("x", FLOAT, &[D::N(2), D::N(3)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            vec![t_i64("ax", &[1], &[1])],
        ),
    );
    let a = import(&old);
    let b = import(&new);
    assert_eq!(a.node(find(&a, "rm")).op, b.node(find(&b, "rm")).op);
    assert_eq!(b.node(find(&b, "rm")).inputs().len(), 1);
}

#[test]
fn custom_ops_are_kept_verbatim() {
    let mut m = model(
        17,
        graph(
            vec![with_attrs(
                {
                    let mut n = node("FancyOp", "f", &["x"], &["y", "z"]);
                    n.domain = "com.example".into();
                    n
                },
                vec![
                    a_int("k", 3),
                    a_str("mode", "fast"),
                    a_ints("dims", &[1, 2]),
                ],
            )],
            vec![vi("x", FLOAT, &[D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(2)]), vi("z", INT64, &[])],
            vec![],
        ),
    );
    add_opset(&mut m, "com.example", 3);
    let g = import(&m);
    let f = g.node(find(&g, "f"));
    let Op::Custom(c) = &f.op else {
        panic!("expected a custom op, got {:?}", f.op)
    };
    assert_eq!(
        (c.domain.as_str(), c.op_type.as_str()),
        ("com.example", "FancyOp")
    );
    assert_eq!(c.attrs.get("k"), Some(&Attr::Int(3)));
    assert_eq!(c.attrs.get("mode"), Some(&Attr::Str("fast".into())));
    assert_eq!(f.outputs.len(), 2);
    assert_eq!(f.outputs[1].dtype, DType::I64);
    assert_eq!(g.opsets.get("com.example"), Some(&3));
}

#[test]
fn contrib_and_dtype_attributes() {
    let mut sln = node("SimplifiedLayerNormalization", "rms", &["x", "g"], &["n"]);
    sln.domain = "com.microsoft".into();
    let sln = with_attrs(sln, vec![a_float("epsilon", 1e-6), a_int("axis", -1)]);
    let cast = with_attrs(node("Cast", "c", &["n"], &["y"]), vec![a_int("to", 10)]);
    let mut m = model(
        17,
        graph(
            vec![sln, cast],
            vec![vi("x", FLOAT, &[D::N(2), D::N(4)])],
            vec![vi("y", 10, &[D::N(2), D::N(4)])],
            vec![t_f32("g", &[4], &[1.0; 4])],
        ),
    );
    add_opset(&mut m, "com.microsoft", 1);
    let g = import(&m);
    let rms = g.node(find(&g, "rms"));
    assert!(matches!(rms.op, Op::RmsNorm(_)), "{:?}", rms.op);
    assert_eq!(rms.op.attrs().get("epsilon"), Some(&Attr::Float(1e-6)));
    let c = g.node(find(&g, "c"));
    assert_eq!(c.op.attrs().get("to"), Some(&Attr::Type(DType::F16)));
}

#[test]
fn empty_input_names_are_none_and_trailing_ones_trimmed() {
    let m = model(
        17,
        graph(
            vec![node("Clip", "clip", &["x", "", "hi", ""], &["y"])],
            vec![vi("x", FLOAT, &[D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(2)])],
            vec![t_f32("hi", &[], &[6.0])],
        ),
    );
    let g = import(&m);
    let c = g.node(find(&g, "clip"));
    assert_eq!(c.inputs().len(), 3);
    assert!(c.inputs()[1].is_none());
    assert!(c.inputs()[2].is_some());
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let mut m = mlp();
    m.graph.as_mut().expect("graph").node.reverse();
    let g = import(&m);
    let order = g.topo_order().expect("acyclic");
    let pos = |n: &str| {
        order
            .iter()
            .position(|&id| g.node(id).name == n)
            .expect("node")
    };
    assert!(pos("fc") < pos("bias") && pos("bias") < pos("act"));
}

#[test]
fn initializer_that_is_also_an_input_stays_an_input() {
    let mut m = mlp();
    let gp = m.graph.as_mut().expect("graph");
    gp.input.push(vi("b", FLOAT, &[D::N(3)]));
    let g = import(&m);
    assert_eq!(g.inputs().len(), 2);
    let b = g.node(find(&g, "bias")).input(1).expect("b");
    assert_eq!(g.node(b.node).op, Op::Input);
}

#[test]
fn bodies_read_enclosing_values_through_explicit_captures() {
    // Loop body: acc_out = acc + w, where `w` is an initializer of the enclosing graph and
    // `cond` passes through.
    let body = graph(
        vec![
            node("Add", "add", &["acc", "w"], &["acc_out"]),
            node("Identity", "keep", &["cond"], &["cond_out"]),
        ],
        vec![
            vi("i", INT64, &[]),
            vi("cond", 9, &[]),
            vi("acc", FLOAT, &[D::N(2)]),
        ],
        vec![vi("cond_out", 9, &[]), vi("acc_out", FLOAT, &[D::N(2)])],
        vec![],
    );
    let m = model(
        17,
        graph(
            vec![with_attrs(
                node("Loop", "loop", &["m", "", "a0"], &["a"]),
                vec![a_graph("body", body)],
            )],
            vec![vi("m", INT64, &[]), vi("a0", FLOAT, &[D::N(2)])],
            vec![vi("a", FLOAT, &[D::N(2)])],
            vec![t_f32("w", &[2], &[1.0, 2.0])],
        ),
    );
    let g = import(&m);
    let l = g.node(find(&g, "loop"));
    let Op::Loop(op) = &l.op else {
        panic!("{:?}", l.op)
    };
    assert_eq!(op.captures, 1);
    // M, the omitted cond, a0, then the captured w.
    assert_eq!(l.inputs().len(), 4);
    assert!(l.inputs()[1].is_none());
    let w = g
        .const_weight(l.input(3).expect("w"))
        .expect("w is a constant");
    assert_eq!(w.name, "w");
    let body = op.body.graph();
    let names: Vec<&str> = body
        .inputs()
        .iter()
        .map(|&i| body.node(i).name.as_str())
        .collect();
    assert_eq!(names, ["i", "cond", "acc", "w"]);
    assert_eq!(
        body.node(body.inputs()[3]).outputs[0],
        TensorType::known(DType::F32, &[2])
    );
}

#[test]
fn old_opsets_are_rewritten_to_their_opset_13_forms() {
    // Opset 9: Upsample with scales becomes Resize; Softmax over axis 1 of a 3-D input
    // flattens first (its meaning before opset 13).
    let m = model(
        9,
        graph(
            vec![
                node("Upsample", "up", &["x", "scales"], &["u"]),
                node("Softmax", "sm", &["u"], &["y"]),
            ],
            vec![vi("x", FLOAT, &[D::N(1), D::N(2), D::N(2)])],
            vec![vi("y", FLOAT, &[D::N(1), D::N(2), D::N(4)])],
            vec![t_f32("scales", &[3], &[1.0, 1.0, 2.0])],
        ),
    );
    let g = import(&m);
    assert_eq!(g.opsets.get(""), Some(&13));
    let up = g.node(find(&g, "up"));
    let Op::Resize(r) = &up.op else {
        panic!("{:?}", up.op)
    };
    assert_eq!(r.coordinate_transformation_mode, "asymmetric");
    assert_eq!(r.nearest_mode, "floor");
    let names: Vec<&str> = g.node_ids().map(|id| g.node(id).op.name()).collect();
    for op in ["flatten", "softmax", "shape", "reshape"] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
    let y = g.value_type(g.outputs[0].value).expect("y");
    assert_eq!(y, &TensorType::known(DType::F32, &[1, 2, 4]));
}

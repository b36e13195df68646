//! Each verifier check fires on a graph broken in exactly that way, naming the node; a
//! valid graph passes.

use compc_ir::infer::infer_graph;
use compc_ir::op::{Axis0, BinaryOp, Concat, CustomOp, Gemm, UnaryOp};
use compc_ir::verify::verify;
use compc_ir::{DType, Graph, GraphOutput, NodeId, Op, TensorType, ValueRef, Weight, WeightId};

fn t(dtype: DType, dims: &[u64]) -> TensorType {
    TensorType::known(dtype, dims)
}

fn f32t(dims: &[u64]) -> TensorType {
    t(DType::F32, dims)
}

fn add(g: &mut Graph, op: Op, inputs: &[ValueRef], outputs: Vec<TensorType>, name: &str) -> NodeId {
    g.add_node(op, inputs.iter().map(|&v| Some(v)).collect(), outputs, name)
}

fn output(g: &mut Graph, name: &str, v: impl Into<ValueRef>) {
    g.outputs.push(GraphOutput {
        name: name.into(),
        value: v.into(),
    });
}

fn relu() -> Op {
    Op::Unary(UnaryOp::Relu)
}

/// `y = relu(x · w + b)` with every type right.
fn mlp() -> (Graph, NodeId) {
    let mut g = Graph::new("mlp");
    let x = g.add_input("x", f32t(&[4, 8]));
    let w = g.add_const(Weight::from_f32("w", vec![8, 16], &[0.5; 128]).unwrap());
    let b = g.add_const(Weight::from_f32("b", vec![16], &[0.0; 16]).unwrap());
    let mm = add(
        &mut g,
        Op::MatMul,
        &[x.into(), w.into()],
        vec![f32t(&[4, 16])],
        "mm",
    );
    let ad = add(
        &mut g,
        Op::Binary(BinaryOp::Add),
        &[mm.into(), b.into()],
        vec![f32t(&[4, 16])],
        "",
    );
    let r = add(&mut g, relu(), &[ad.into()], vec![f32t(&[4, 16])], "act");
    output(&mut g, "y", r);
    (g, r)
}

fn fails(g: &Graph) -> String {
    verify(g)
        .expect_err("the verifier should reject this graph")
        .to_string()
}

#[test]
fn a_valid_graph_passes() {
    let (mut g, r) = mlp();
    verify(&g).unwrap();
    // Unused nodes and custom ops with any types are fine.
    let op = Op::Custom(CustomOp {
        domain: "x".into(),
        op_type: "Y".into(),
        attrs: Default::default(),
    });
    add(
        &mut g,
        op,
        &[r.into()],
        vec![t(DType::I8, &[3]), TensorType::unranked(DType::Str)],
        "",
    );
    verify(&g).unwrap();
}

#[test]
fn a_cycle_is_reported() {
    let (mut g, r) = mlp();
    let a = add(&mut g, relu(), &[r.into()], vec![f32t(&[4, 16])], "a");
    let b = add(&mut g, relu(), &[a.into()], vec![f32t(&[4, 16])], "b");
    g.set_input(a, 0, Some(b.into()));
    let e = fails(&g);
    assert!(e.ends_with("is on a cycle"), "{e}");
    assert!(
        e.contains("(relu \"a\")") || e.contains("(relu \"b\")"),
        "{e}"
    );
}

#[test]
fn input_slots_must_exist() {
    let (mut g, r) = mlp();
    add(
        &mut g,
        relu(),
        &[ValueRef::new(r, 3)],
        vec![f32t(&[4, 16])],
        "bad",
    );
    assert_eq!(
        fails(&g),
        "n6 (relu \"bad\"): input 0 reads output 3 of n5 (relu \"act\"), which has 1 outputs"
    );
}

#[test]
fn input_and_output_counts() {
    let (mut g, r) = mlp();
    add(
        &mut g,
        relu(),
        &[r.into(), r.into()],
        vec![f32t(&[4, 16])],
        "two",
    );
    assert_eq!(
        fails(&g),
        "n6 (relu \"two\"): has 2 inputs, but `relu` takes 1"
    );

    let (mut g, r) = mlp();
    add(&mut g, relu(), &[r.into()], vec![], "none");
    assert_eq!(
        fails(&g),
        "n6 (relu \"none\"): has 0 outputs, but `relu` has 1"
    );

    let (mut g, r) = mlp();
    let gemm = Op::Gemm(Gemm::default());
    g.add_node(gemm, vec![Some(r.into()), None], vec![f32t(&[4, 16])], "");
    assert_eq!(fails(&g), "n6 (gemm): input 1 is required but missing");
}

#[test]
fn constants_must_match_their_weight() {
    let (mut g, _) = mlp();
    let w = g.node_ids().nth(1).unwrap();
    g.node_mut(w).outputs = vec![f32t(&[16, 8])];
    assert_eq!(
        fails(&g),
        "n1 (const \"w\"): output is tensor<16x8xf32> but weight `w` is tensor<8x16xf32>"
    );

    let (mut g, _) = mlp();
    add(
        &mut g,
        Op::Const(WeightId(99)),
        &[],
        vec![f32t(&[1])],
        "ghost",
    );
    assert_eq!(fails(&g), "n6 (const \"ghost\"): weight w99 does not exist");
}

#[test]
fn input_nodes_must_be_graph_inputs() {
    let (mut g, _) = mlp();
    add(&mut g, Op::Input, &[], vec![f32t(&[1])], "stray");
    assert_eq!(
        fails(&g),
        "n6 (input \"stray\"): is an input node but not in the graph's input list"
    );
}

#[test]
fn graph_outputs_are_checked() {
    let (mut g, r) = mlp();
    output(&mut g, "", r);
    assert_eq!(fails(&g), "graph: output 1 has an empty name");

    let (mut g, r) = mlp();
    output(&mut g, "y", r);
    assert_eq!(fails(&g), "graph: output name `y` is used twice");

    let (mut g, r) = mlp();
    output(&mut g, "z", ValueRef::new(r, 1));
    assert!(fails(&g).starts_with("graph: output `z` reads output 1 of n5 (relu \"act\")"));

    let (mut g, r) = mlp();
    let gone = add(&mut g, relu(), &[r.into()], vec![f32t(&[4, 16])], "");
    g.remove_node(gone).unwrap();
    output(&mut g, "z", gone);
    assert_eq!(
        fails(&g),
        "graph: output `z` refers to n6, which does not exist"
    );
}

#[test]
fn element_types_are_checked() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2]));
    let b = g.add_input("b", t(DType::F16, &[2]));
    add(
        &mut g,
        Op::Binary(BinaryOp::Add),
        &[a.into(), b.into()],
        vec![f32t(&[2])],
        "",
    );
    assert_eq!(
        fails(&g),
        "n2 (add): inputs 0 and 1 have different element types: f32 vs f16"
    );

    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[2]));
    let e = g.add_input("e", t(DType::I32, &[2]));
    add(
        &mut g,
        Op::Binary(BinaryOp::Pow),
        &[a.into(), e.into()],
        vec![f32t(&[2])],
        "",
    );
    verify(&g).unwrap();

    let mut g = Graph::new("t");
    let data = g.add_input("data", f32t(&[5, 3]));
    let idx = g.add_input("idx", f32t(&[2]));
    add(
        &mut g,
        Op::Gather(Axis0 { axis: 0 }),
        &[data.into(), idx.into()],
        vec![f32t(&[2, 3])],
        "emb",
    );
    assert_eq!(
        fails(&g),
        "n2 (gather \"emb\"): indices (input 1) must be i32 or i64, found f32"
    );

    let mut g = Graph::new("t");
    let c = g.add_input("c", f32t(&[2]));
    add(
        &mut g,
        Op::Where,
        &[c.into(), c.into(), c.into()],
        vec![f32t(&[2])],
        "",
    );
    assert_eq!(
        fails(&g),
        "n1 (where): condition (input 0) must be bool, found f32"
    );

    let mut g = Graph::new("t");
    let p = g.add_input("p", t(DType::Bool, &[2, 2]));
    add(
        &mut g,
        Op::MatMul,
        &[p.into(), p.into()],
        vec![t(DType::Bool, &[2, 2])],
        "",
    );
    assert_eq!(fails(&g), "n1 (matmul): `matmul` needs numbers, found bool");
}

#[test]
fn stored_types_must_agree_with_inference() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4, 8]));
    add(&mut g, relu(), &[x.into()], vec![f32t(&[4, 16])], "");
    assert_eq!(
        fails(&g),
        "n1 (relu): output 0 is tensor<4x16xf32> but inference gives tensor<4x8xf32>"
    );

    // Unknown and symbolic dims do not contradict anything.
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4, 8]));
    let loose = TensorType::new(
        DType::F32,
        compc_ir::Shape::Ranked(vec![compc_ir::Dim::Unknown, compc_ir::Dim::Sym("n".into())]),
    );
    add(&mut g, relu(), &[x.into()], vec![loose], "");
    verify(&g).unwrap();

    let mut g = Graph::new("t");
    let x = g.add_input("x", f32t(&[4, 8]));
    add(
        &mut g,
        relu(),
        &[x.into()],
        vec![t(DType::F16, &[4, 8])],
        "",
    );
    assert_eq!(
        fails(&g),
        "n1 (relu): output 0 is tensor<4x8xf16> but inference gives tensor<4x8xf32>"
    );
}

#[test]
fn inference_failures_are_reported() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", f32t(&[4, 64]));
    let b = g.add_input("b", f32t(&[4, 32]));
    add(
        &mut g,
        Op::Concat(Concat { axis: 0 }),
        &[a.into(), b.into()],
        vec![f32t(&[8, 64])],
        "cat",
    );
    assert_eq!(
        fails(&g),
        "n2 (concat \"cat\"): shape inference fails: Concat inputs disagree on dim 1: 64 vs 32"
    );
}

#[test]
fn inferred_graphs_verify() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::unranked(DType::F32));
    let w = g.add_const(Weight::from_f32("w", vec![8, 16], &[0.5; 128]).unwrap());
    let mm = add(
        &mut g,
        Op::MatMul,
        &[x.into(), w.into()],
        vec![TensorType::unranked(DType::F32)],
        "",
    );
    output(&mut g, "y", mm);
    infer_graph(&mut g).unwrap();
    verify(&g).unwrap();
}

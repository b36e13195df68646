//! Control-flow ops in the IR: bodies survive the text format, inference types the node
//! from its bodies, and the verifier checks inside bodies.

use compc_ir::infer::infer_graph;
use compc_ir::op::{BinaryOp, IfOp, Subgraph};
use compc_ir::{text, DType, Graph, GraphOutput, Op, Shape, TensorType, ValueRef};

fn branch(name: &str, k: BinaryOp) -> Subgraph {
    let mut b = Graph::new(name);
    let x = b.add_input("x", TensorType::unranked(DType::F32));
    let y = b.add_node(
        Op::Binary(k),
        vec![Some(x.into()), Some(x.into())],
        vec![TensorType::unranked(DType::F32)],
        "op",
    );
    b.outputs.push(GraphOutput {
        name: "y".into(),
        value: y.into(),
    });
    Subgraph::new(b)
}

fn if_graph() -> Graph {
    let mut g = Graph::new("g");
    let c = g.add_input("c", TensorType::new(DType::Bool, Shape::scalar()));
    let x = g.add_input("x", TensorType::known(DType::F32, &[2, 3]));
    let op = Op::If(IfOp {
        then_branch: branch("then", BinaryOp::Add),
        else_branch: branch("else", BinaryOp::Mul),
    });
    let y = g.add_node(
        op,
        vec![Some(c.into()), Some(x.into())],
        vec![TensorType::unranked(DType::F32)],
        "if",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: ValueRef::from(y),
    });
    infer_graph(&mut g).expect("infer");
    g
}

#[test]
fn bodies_are_typed_from_the_node_and_type_it() {
    let g = if_graph();
    // The captured x has the outer value's type inside the bodies, and so does y.
    let y = g.value_type(g.outputs[0].value).unwrap();
    assert_eq!(y, &TensorType::known(DType::F32, &[2, 3]));
    compc_ir::verify::verify(&g).expect("verify");
}

#[test]
fn bodies_round_trip_through_the_text_format() {
    let g = if_graph();
    let a = text::print(&g);
    assert!(a.contains("\"if\""), "{a}");
    let parsed = text::parse(&a).expect("parse");
    assert_eq!(text::print(&parsed), a);
    let node = parsed
        .node_ids()
        .map(|id| parsed.node(id))
        .find(|n| n.name == "if")
        .expect("the if node");
    let Op::If(i) = &node.op else {
        panic!("{:?}", node.op)
    };
    assert_eq!(i.then_branch.graph().inputs().len(), 1);
}

#[test]
fn a_body_that_breaks_the_rules_fails_verification() {
    let mut g = if_graph();
    // A body whose output reads nothing valid: the verifier looks inside bodies.
    let id = g
        .node_ids()
        .find(|&id| g.node(id).name == "if")
        .expect("if");
    if let Op::If(i) = &mut g.node_mut(id).op {
        let b = i.then_branch.graph_mut();
        let x = b.inputs()[0];
        b.outputs[0].value = ValueRef::new(x, 5);
    }
    let e = compc_ir::verify::verify(&g).unwrap_err().to_string();
    assert!(e.contains("body 0"), "{e}");
}

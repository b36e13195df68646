//! Shape inference of the ops that compute or rearrange shapes, including the symbolic
//! `Shape → Gather → Unsqueeze → Concat → Reshape` chain of torch-exported models.

use compc_ir::infer::infer_graph;
use compc_ir::op::{Axes, Axis0, Concat, ConstantOfShape, Flatten, Reshape, ShapeOf, Transpose};
use compc_ir::{DType, Graph, Literal, NodeId, Op, TensorType, Weight};

mod common;
use common::*;

fn unsqueeze0(g: &mut Graph, x: NodeId) -> NodeId {
    node(
        g,
        Op::Unsqueeze(Axes {
            axes: Some(vec![0]),
        }),
        &[x],
        1,
    )
}

#[test]
fn llama_reshape_chain_keeps_batch_and_seq() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x{seq}x64xf32");
    let shape = node(&mut g, Op::Shape(ShapeOf::default()), &[x], 1);
    let i0 = scalar_i64(&mut g, "i0", 0);
    let i1 = scalar_i64(&mut g, "i1", 1);
    let b = node(&mut g, Op::Gather(Axis0 { axis: 0 }), &[shape, i0], 1);
    let s = node(&mut g, Op::Gather(Axis0 { axis: 0 }), &[shape, i1], 1);
    let ub = unsqueeze0(&mut g, b);
    let us = unsqueeze0(&mut g, s);
    let heads = ints(&mut g, "heads", &[8, 8]);
    let target = node(&mut g, Op::Concat(Concat { axis: 0 }), &[ub, us, heads], 1);
    let r = node(&mut g, Op::Reshape(Reshape::default()), &[x, target], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, shape, 0), "tensor<3xi64>");
    assert_eq!(out(&g, b, 0), "tensor<i64>");
    assert_eq!(out(&g, target, 0), "tensor<4xi64>");
    assert_eq!(out(&g, r, 0), "tensor<{batch}x{seq}x8x8xf32>");
}

#[test]
fn run_time_parts_of_a_shape_keep_the_rest() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x{seq}x64xf32");
    let n = input(&mut g, "n", "1xi64");
    let shape = node(&mut g, Op::Shape(ShapeOf::default()), &[x], 1);
    let i0 = scalar_i64(&mut g, "i0", 0);
    let b = node(&mut g, Op::Gather(Axis0 { axis: 0 }), &[shape, i0], 1);
    let ub = unsqueeze0(&mut g, b);
    let eight = ints(&mut g, "eight", &[8]);
    let target = node(&mut g, Op::Concat(Concat { axis: 0 }), &[ub, n, eight], 1);
    let r = node(&mut g, Op::Reshape(Reshape::default()), &[x, target], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, r, 0), "tensor<{batch}x?x8xf32>");
}

#[test]
fn reshape_minus_one_cancels_symbols() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x{seq}x4096xf32");
    let shape = node(
        &mut g,
        Op::Shape(ShapeOf {
            start: 0,
            end: Some(2),
        }),
        &[x],
        1,
    );
    let tail = ints(&mut g, "tail", &[-1, 128]);
    let target = node(&mut g, Op::Concat(Concat { axis: 0 }), &[shape, tail], 1);
    let r = node(&mut g, Op::Reshape(Reshape::default()), &[x, target], 1);
    // Back again: the -1 stands for 32 * 128.
    let back = ints(&mut g, "back", &[0, 0, -1]);
    let r2 = node(&mut g, Op::Reshape(Reshape::default()), &[r, back], 1);
    // Merging batch and seq cannot be expressed: unknown.
    let flat = ints(&mut g, "flat", &[-1, 4096]);
    let r3 = node(&mut g, Op::Reshape(Reshape::default()), &[x, flat], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, shape, 0), "tensor<2xi64>");
    assert_eq!(out(&g, r, 0), "tensor<{batch}x{seq}x32x128xf32>");
    assert_eq!(out(&g, r2, 0), "tensor<{batch}x{seq}x4096xf32>");
    assert_eq!(out(&g, r3, 0), "tensor<?x4096xf32>");
}

#[test]
fn reshape_zero_minus_one_and_allowzero() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3x4xf32");
    let t1 = ints(&mut g, "t1", &[0, -1]);
    let r1 = node(&mut g, Op::Reshape(Reshape::default()), &[x, t1], 1);
    let e = input(&mut g, "e", "0x3xf32");
    let t2 = ints(&mut g, "t2", &[3, 0]);
    let r2 = node(
        &mut g,
        Op::Reshape(Reshape { allowzero: true }),
        &[e, t2],
        1,
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, r1, 0), "tensor<2x12xf32>");
    assert_eq!(out(&g, r2, 0), "tensor<3x0xf32>");
}

#[test]
fn reshape_errors_name_the_node() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3x4xf32");
    let t = ints(&mut g, "t", &[5, -1]);
    let ins = vec![Some(x.into()), Some(t.into())];
    g.add_node(
        Op::Reshape(Reshape::default()),
        ins,
        vec![TensorType::unranked(DType::F32)],
        "bad",
    );
    let e = err_of(&mut g);
    assert!(e.contains("(reshape \"bad\")"), "{e}");
    assert!(e.contains("24 elements are not a multiple of 5"), "{e}");

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3xf32");
    let t = ints(&mut g, "t", &[4, 2]);
    node(&mut g, Op::Reshape(Reshape::default()), &[x, t], 1);
    let e = err_of(&mut g);
    assert!(
        e.contains("cannot reshape [2x3] (6 elements) to [4x2] (8 elements)"),
        "{e}"
    );
}

#[test]
fn reshape_with_unknown_target_keeps_its_length() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3xf32");
    let t = input(&mut g, "t", "3xi64");
    let r = node(&mut g, Op::Reshape(Reshape::default()), &[x, t], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, r, 0), "tensor<?x?x?xf32>");
}

#[test]
fn expand_and_constant_of_shape_read_shape_values() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x1x{seq}xf32");
    let shape = node(&mut g, Op::Shape(ShapeOf::default()), &[x], 1);
    let ones = node(
        &mut g,
        Op::ConstantOfShape(ConstantOfShape::default()),
        &[shape],
        1,
    );
    let target = ints(&mut g, "target", &[1, 8, 1]);
    let ex = node(&mut g, Op::Expand, &[x, target], 1);
    let lit = Literal {
        dtype: DType::I64,
        dims: vec![1],
        bytes: 1i64.to_le_bytes().to_vec(),
    };
    let n3 = ints(&mut g, "n3", &[3]);
    let filled = node(
        &mut g,
        Op::ConstantOfShape(ConstantOfShape { value: Some(lit) }),
        &[n3],
        1,
    );
    // torch's expand pattern: the target comes out of ConstantOfShape's value.
    let ex_ones = node(&mut g, Op::Expand, &[x, filled], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, ones, 0), "tensor<{batch}x1x{seq}xf32>");
    assert_eq!(out(&g, ex, 0), "tensor<{batch}x8x{seq}xf32>");
    assert_eq!(out(&g, filled, 0), "tensor<3xi64>");
    assert_eq!(out(&g, ex_ones, 0), "tensor<{batch}x1x{seq}xf32>");
}

#[test]
fn tile_and_range() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x{seq}xf32");
    let reps = ints(&mut g, "reps", &[3, 1]);
    let tiled = node(&mut g, Op::Tile, &[x, reps], 1);
    let (a, b, c) = (
        scalar_i64(&mut g, "a", 2),
        scalar_i64(&mut g, "b", 11),
        scalar_i64(&mut g, "c", 3),
    );
    let r = node(&mut g, Op::Range, &[a, b, c], 1);
    let fa = g.add_const(Weight::from_f32("fa", vec![], &[0.0]).unwrap());
    let fb = g.add_const(Weight::from_f32("fb", vec![], &[1.0]).unwrap());
    let fc = g.add_const(Weight::from_f32("fc", vec![], &[0.25]).unwrap());
    let rf = node(&mut g, Op::Range, &[fa, fb, fc], 1);
    let down = node(&mut g, Op::Range, &[b, a, c], 1);
    // torch's arange(seq): Range(0, seq, 1) keeps the symbol.
    let shape = node(
        &mut g,
        Op::Shape(ShapeOf {
            start: 1,
            end: None,
        }),
        &[x],
        1,
    );
    let i0 = scalar_i64(&mut g, "i0", 0);
    let seq = node(&mut g, Op::Gather(Axis0 { axis: 0 }), &[shape, i0], 1);
    let zero = scalar_i64(&mut g, "zero", 0);
    let one = scalar_i64(&mut g, "one", 1);
    let pos = node(&mut g, Op::Range, &[zero, seq, one], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, tiled, 0), "tensor<6x{seq}xf32>");
    assert_eq!(out(&g, r, 0), "tensor<3xi64>");
    assert_eq!(out(&g, rf, 0), "tensor<4xf32>");
    assert_eq!(out(&g, down, 0), "tensor<0xi64>");
    assert_eq!(out(&g, pos, 0), "tensor<{seq}xi64>");
}

#[test]
fn shape_start_end_and_transpose() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3x4x5xf32");
    let s = node(
        &mut g,
        Op::Shape(ShapeOf {
            start: -3,
            end: Some(-1),
        }),
        &[x],
        1,
    );
    let s2 = node(
        &mut g,
        Op::Shape(ShapeOf {
            start: 10,
            end: None,
        }),
        &[x],
        1,
    );
    let t = node(
        &mut g,
        Op::Transpose(Transpose {
            perm: Some(vec![0, 2, 3, 1]),
        }),
        &[x],
        1,
    );
    let rev = node(&mut g, Op::Transpose(Transpose { perm: None }), &[x], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, s, 0), "tensor<2xi64>");
    assert_eq!(out(&g, s2, 0), "tensor<0xi64>");
    assert_eq!(out(&g, t, 0), "tensor<2x4x5x3xf32>");
    assert_eq!(out(&g, rev, 0), "tensor<5x4x3x2xf32>");

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3xf32");
    node(
        &mut g,
        Op::Transpose(Transpose {
            perm: Some(vec![0, 0]),
        }),
        &[x],
        1,
    );
    assert!(err_of(&mut g).contains("axis 0 is repeated"));
}

#[test]
fn squeeze_unsqueeze_with_attr_or_input() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "1x{seq}x1x4xf32");
    let sq_attr = node(
        &mut g,
        Op::Squeeze(Axes {
            axes: Some(vec![0, -2]),
        }),
        &[x],
        1,
    );
    let axes = ints(&mut g, "axes", &[2]);
    let sq_in = node(&mut g, Op::Squeeze(Axes { axes: None }), &[x, axes], 1);
    // Without axes, a symbolic dim might be 1: the rank is unknown.
    let sq_all = node(&mut g, Op::Squeeze(Axes { axes: None }), &[x], 1);
    let y = input(&mut g, "y", "3x4xf32");
    let un_attr = node(
        &mut g,
        Op::Unsqueeze(Axes {
            axes: Some(vec![0, -1]),
        }),
        &[y],
        1,
    );
    let ax2 = ints(&mut g, "ax2", &[1]);
    let un_in = node(&mut g, Op::Unsqueeze(Axes { axes: None }), &[y, ax2], 1);
    let sq_known = node(&mut g, Op::Squeeze(Axes { axes: None }), &[un_attr], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, sq_attr, 0), "tensor<{seq}x4xf32>");
    assert_eq!(out(&g, sq_in, 0), "tensor<1x{seq}x4xf32>");
    assert_eq!(out(&g, sq_all, 0), "tensor<*xf32>");
    assert_eq!(out(&g, un_attr, 0), "tensor<1x3x4x1xf32>");
    assert_eq!(out(&g, un_in, 0), "tensor<3x1x4xf32>");
    assert_eq!(out(&g, sq_known, 0), "tensor<3x4xf32>");

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x3xf32");
    node(
        &mut g,
        Op::Squeeze(Axes {
            axes: Some(vec![1]),
        }),
        &[x],
        1,
    );
    assert!(err_of(&mut g).contains("cannot squeeze axis 1 of size 3"));
}

#[test]
fn flatten_products() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x3x4x5xf32");
    let f1 = node(&mut g, Op::Flatten(Flatten { axis: 1 }), &[x], 1);
    let f0 = node(&mut g, Op::Flatten(Flatten { axis: 0 }), &[x], 1);
    let f4 = node(&mut g, Op::Flatten(Flatten { axis: 4 }), &[x], 1);
    let fm = node(&mut g, Op::Flatten(Flatten { axis: -2 }), &[x], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, f1, 0), "tensor<{batch}x60xf32>");
    assert_eq!(out(&g, f0, 0), "tensor<1x?xf32>");
    assert_eq!(out(&g, f4, 0), "tensor<?x1xf32>");
    assert_eq!(out(&g, fm, 0), "tensor<?x20xf32>");
}

#[test]
fn declared_types_merge_with_inferred() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "?x{seq}x8xf32");
    // Declared: a known batch the inference cannot see, a placeholder dtype.
    let ins = vec![Some(x.into())];
    let r = g.add_node(
        Op::Unary(compc_ir::op::UnaryOp::Relu),
        ins,
        vec![ty("4x?x?xi64")],
        "relu",
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, r, 0), "tensor<4x{seq}x8xf32>");

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x8xf32");
    let ins = vec![Some(x.into())];
    g.add_node(
        Op::Unary(compc_ir::op::UnaryOp::Relu),
        ins,
        vec![ty("2x16xf32")],
        "relu",
    );
    let e = err_of(&mut g);
    assert_eq!(
        e,
        "n1 (relu \"relu\"): output 0: declared tensor<2x16xf32> but inference gives tensor<2x8xf32>"
    );
}

#[test]
fn custom_ops_keep_declared_types() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "2x8xf32");
    let op = Op::Custom(compc_ir::op::CustomOp {
        domain: "x".into(),
        op_type: "Y".into(),
        attrs: Default::default(),
    });
    let c = g.add_node(op, vec![Some(x.into())], vec![ty("5xf16"), ty("*xi8")], "");
    let r = node(&mut g, Op::Unary(compc_ir::op::UnaryOp::Neg), &[c], 1);
    assert!(compc_ir::infer::infer_node(&g, c).unwrap().is_none());
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, c, 0), "tensor<5xf16>");
    assert_eq!(out(&g, c, 1), "tensor<*xi8>");
    assert_eq!(out(&g, r, 0), "tensor<5xf16>");
}

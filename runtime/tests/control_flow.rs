//! Control flow (If, Loop, Scan, SequenceMap) with captured outer values, the sequence and
//! optional ops, and string tensors, on graphs built by hand.

mod common;
use common::*;
use compc_ir::infer::infer_graph;
use compc_ir::op::{
    BinaryOp, ConcatFromSequence, IfOp, LoopOp, OptionalOp, ScanOp, SequenceMapOp, SplitToSequence,
    StringNormalizer, Subgraph, UnaryOp,
};
use compc_ir::{DType, Graph, GraphOutput, NodeId, Op, Shape, TensorType, ValueRef};
use compc_runtime::{run, run_values, Sequence, StrTensor, Tensor, Value};

fn unranked(d: DType) -> TensorType {
    TensorType::unranked(d)
}

fn scalar(d: DType) -> TensorType {
    TensorType::new(d, Shape::scalar())
}

fn out(g: &mut Graph, name: &str, v: impl Into<ValueRef>) {
    g.outputs.push(GraphOutput {
        name: name.into(),
        value: v.into(),
    });
}

fn node(g: &mut Graph, op: Op, ins: &[NodeId]) -> NodeId {
    let ins = ins.iter().map(|&i| Some(ValueRef::from(i))).collect();
    g.add_node(op, ins, vec![unranked(DType::F32)], "")
}

fn bin(g: &mut Graph, k: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
    node(g, Op::Binary(k), &[a, b])
}

/// `if c { x + 1 } else { x * x }` where both branches read the outer `x`.
#[test]
fn if_runs_the_chosen_branch_on_captured_values() {
    let branch = |then: bool| {
        let mut b = Graph::new(if then { "then" } else { "else" });
        let x = b.add_input("x", unranked(DType::F32));
        let y = if then {
            let one = b.add_const(compc_ir::Weight::from_f32("one", vec![], &[1.0]).unwrap());
            bin(&mut b, BinaryOp::Add, x, one)
        } else {
            bin(&mut b, BinaryOp::Mul, x, x)
        };
        out(&mut b, "y", y);
        Subgraph::new(b)
    };
    let mut g = Graph::new("if");
    let c = g.add_input("c", scalar(DType::Bool));
    let x = g.add_input("x", TensorType::known(DType::F32, &[2]));
    let op = Op::If(IfOp {
        then_branch: branch(true),
        else_branch: branch(false),
    });
    let y = g.add_node(
        op,
        vec![Some(c.into()), Some(x.into())],
        vec![unranked(DType::F32)],
        "if",
    );
    out(&mut g, "y", y);
    infer_graph(&mut g).unwrap();
    compc_ir::verify::verify(&g).unwrap();
    let xs = f(&[2], &[2.0, -3.0]);
    for (cond, want) in [(true, [3.0, -2.0]), (false, [4.0, 9.0])] {
        let ins = vec![
            ("c".to_string(), Tensor::from_bool(vec![], vec![cond])),
            ("x".to_string(), xs.clone()),
        ];
        let r = run(&g, &ins).unwrap();
        assert_close(&r[0].1, &[2], &want, 0.0);
    }
}

/// `for i in 0..3 { acc = acc + i * k }` with `k` captured; also the scan output of
/// `acc` per iteration.
fn loop_graph() -> Graph {
    let mut b = Graph::new("body");
    let i = b.add_input("i", scalar(DType::I64));
    let cond = b.add_input("cond", scalar(DType::Bool));
    let acc = b.add_input("acc", unranked(DType::F32));
    let k = b.add_input("k", unranked(DType::F32));
    let fi = b.add_node(
        Op::Cast(compc_ir::op::Cast {
            to: DType::F32,
            saturate: true,
        }),
        vec![Some(i.into())],
        vec![unranked(DType::F32)],
        "",
    );
    let ik = bin(&mut b, BinaryOp::Mul, fi, k);
    let next = bin(&mut b, BinaryOp::Add, acc, ik);
    let keep = node(&mut b, Op::Unary(UnaryOp::Identity), &[cond]);
    out(&mut b, "cond_out", keep);
    out(&mut b, "acc_out", next);
    out(&mut b, "scan", next);

    let mut g = Graph::new("loop");
    let m = g.add_input("m", scalar(DType::I64));
    let c = g.add_input("c", scalar(DType::Bool));
    let a0 = g.add_input("a0", TensorType::known(DType::F32, &[1]));
    let k = g.add_input("k", TensorType::known(DType::F32, &[1]));
    let l = g.add_node(
        Op::Loop(LoopOp {
            body: Subgraph::new(b),
            captures: 1,
        }),
        vec![
            Some(m.into()),
            Some(c.into()),
            Some(a0.into()),
            Some(k.into()),
        ],
        vec![unranked(DType::F32), unranked(DType::F32)],
        "loop",
    );
    out(&mut g, "acc", ValueRef::new(l, 0));
    out(&mut g, "scan", ValueRef::new(l, 1));
    infer_graph(&mut g).unwrap();
    compc_ir::verify::verify(&g).unwrap();
    g
}

#[test]
fn loop_carries_values_and_stacks_scan_outputs() {
    let g = loop_graph();
    // Loop-carried values may change shape between iterations: only their element type
    // is inferred.
    let scan_ty = g.value_type(g.outputs[1].value).unwrap();
    assert_eq!(scan_ty, &unranked(DType::F32));
    let ins = |m: i64, c: bool| {
        vec![
            ("m".to_string(), Tensor::scalar_i64(m)),
            ("c".to_string(), Tensor::from_bool(vec![], vec![c])),
            ("a0".to_string(), f(&[1], &[10.0])),
            ("k".to_string(), f(&[1], &[2.0])),
        ]
    };
    let r = run(&g, &ins(3, true)).unwrap();
    assert_close(&r[0].1, &[1], &[16.0], 0.0);
    assert_close(&r[1].1, &[3, 1], &[10.0, 12.0, 16.0], 0.0);
    // A false condition runs no iteration.
    let r = run(&g, &ins(3, false)).unwrap();
    assert_close(&r[0].1, &[1], &[10.0], 0.0);
    assert_eq!(r[1].1.shape(), &[0]);
}

/// Running sum over the rows of X: state `s`, output `s` after each row.
#[test]
fn scan_runs_over_slices_in_either_direction() {
    let mut b = Graph::new("body");
    let s = b.add_input("s", unranked(DType::F32));
    let x = b.add_input("x", unranked(DType::F32));
    let n = bin(&mut b, BinaryOp::Add, s, x);
    out(&mut b, "s_out", n);
    out(&mut b, "y", n);
    let scan = |reverse: bool| {
        let mut g = Graph::new("scan");
        let s0 = g.add_input("s0", TensorType::known(DType::F32, &[2]));
        let xs = g.add_input("xs", TensorType::known(DType::F32, &[3, 2]));
        let op = Op::Scan(ScanOp {
            body: Subgraph::new(b.clone()),
            num_scan_inputs: 1,
            scan_input_directions: Some(vec![reverse as i64]),
            ..ScanOp::default()
        });
        let id = g.add_node(
            op,
            vec![Some(s0.into()), Some(xs.into())],
            vec![unranked(DType::F32), unranked(DType::F32)],
            "scan",
        );
        out(&mut g, "s", ValueRef::new(id, 0));
        out(&mut g, "ys", ValueRef::new(id, 1));
        infer_graph(&mut g).unwrap();
        g
    };
    let ins = vec![
        ("s0".to_string(), f(&[2], &[0.0, 0.0])),
        ("xs".to_string(), f(&[3, 2], &[1., 2., 3., 4., 5., 6.])),
    ];
    let r = run(&scan(false), &ins).unwrap();
    assert_close(&r[0].1, &[2], &[9., 12.], 0.0);
    assert_close(&r[1].1, &[3, 2], &[1., 2., 4., 6., 9., 12.], 0.0);
    let r = run(&scan(true), &ins).unwrap();
    assert_close(&r[1].1, &[3, 2], &[5., 6., 8., 10., 9., 12.], 0.0);
}

fn seq(items: Vec<Tensor>) -> Value {
    Value::Sequence(Sequence {
        dtype: DType::F32,
        items,
    })
}

#[test]
fn sequence_ops_build_read_and_split() {
    let mut g = Graph::new("seq");
    let a = g.add_input("a", unranked(DType::F32));
    let b = g.add_input("b", unranked(DType::F32));
    let pos = g.add_input("pos", scalar(DType::I64));
    let s = node(&mut g, Op::SequenceConstruct, &[a, b]);
    let s2 = node(&mut g, Op::SequenceInsert, &[s, a, pos]);
    let len = node(&mut g, Op::SequenceLength, &[s2]);
    let at = node(&mut g, Op::SequenceAt, &[s2, pos]);
    let cat = node(
        &mut g,
        Op::ConcatFromSequence(ConcatFromSequence {
            axis: 0,
            new_axis: true,
        }),
        &[s2],
    );
    let split = node(
        &mut g,
        Op::SplitToSequence(SplitToSequence {
            axis: 1,
            keepdims: false,
        }),
        &[cat],
    );
    out(&mut g, "len", len);
    out(&mut g, "at", at);
    out(&mut g, "cat", cat);
    out(&mut g, "split", split);
    infer_graph(&mut g).unwrap();
    let ins = vec![
        ("a".to_string(), Value::Tensor(f(&[2], &[1., 2.]))),
        ("b".to_string(), Value::Tensor(f(&[2], &[3., 4.]))),
        ("pos".to_string(), Value::Tensor(Tensor::scalar_i64(-1))),
    ];
    let r = run_values(&g, &ins).unwrap();
    // [a, b] with a inserted before the last: [a, a, b].
    assert_eq!(r[0].1, Value::Tensor(Tensor::scalar_i64(3)));
    assert_eq!(r[1].1, Value::Tensor(f(&[2], &[3., 4.])));
    assert_eq!(r[2].1, Value::Tensor(f(&[3, 2], &[1., 2., 1., 2., 3., 4.])));
    assert_eq!(
        r[3].1,
        seq(vec![f(&[3], &[1., 1., 3.]), f(&[3], &[2., 2., 4.])])
    );
    // A position past the end is an error, not a panic.
    let bad = vec![
        ins[0].clone(),
        ins[1].clone(),
        ("pos".to_string(), Value::Tensor(Tensor::scalar_i64(7))),
    ];
    let e = run_values(&g, &bad).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn sequence_map_runs_the_body_per_element() {
    let mut b = Graph::new("body");
    let x = b.add_input("x", unranked(DType::F32));
    let k = b.add_input("k", unranked(DType::F32));
    let y = bin(&mut b, BinaryOp::Mul, x, k);
    out(&mut b, "y", y);
    let mut g = Graph::new("map");
    let s = g.add_input("s", unranked(DType::F32));
    let k = g.add_input("k", TensorType::known(DType::F32, &[]));
    let m = g.add_node(
        Op::SequenceMap(SequenceMapOp {
            body: Subgraph::new(b),
            captures: 1,
        }),
        vec![Some(s.into()), Some(k.into())],
        vec![unranked(DType::F32)],
        "map",
    );
    out(&mut g, "out", m);
    infer_graph(&mut g).unwrap();
    let ins = vec![
        (
            "s".to_string(),
            seq(vec![f(&[1], &[1.]), f(&[2], &[2., 3.])]),
        ),
        ("k".to_string(), Value::Tensor(f(&[], &[10.]))),
    ];
    let r = run_values(&g, &ins).unwrap();
    assert_eq!(r[0].1, seq(vec![f(&[1], &[10.]), f(&[2], &[20., 30.])]));
}

#[test]
fn optionals_wrap_and_unwrap() {
    let mut g = Graph::new("opt");
    let x = g.add_input("x", unranked(DType::F32));
    let empty = g.add_node(
        Op::Optional(OptionalOp {
            elem_type: Some(DType::F32),
            of_sequence: false,
        }),
        vec![],
        vec![unranked(DType::F32)],
        "",
    );
    let full = node(&mut g, Op::Optional(OptionalOp::default()), &[x]);
    let has_empty = node(&mut g, Op::OptionalHasElement, &[empty]);
    let has_full = node(&mut g, Op::OptionalHasElement, &[full]);
    let got = node(&mut g, Op::OptionalGetElement, &[full]);
    out(&mut g, "has_empty", has_empty);
    out(&mut g, "has_full", has_full);
    out(&mut g, "got", got);
    infer_graph(&mut g).unwrap();
    let r = run(&g, &[("x".into(), f(&[1], &[5.]))]).unwrap();
    assert_eq!(r[0].1.as_bool(), Some(&[false][..]));
    assert_eq!(r[1].1.as_bool(), Some(&[true][..]));
    assert_close(&r[2].1, &[1], &[5.], 0.0);
}

#[test]
fn strings_cast_both_ways_and_normalize() {
    let mut g = Graph::new("str");
    let x = g.add_input("x", unranked(DType::F32));
    let cast = |to| Op::Cast(compc_ir::op::Cast { to, saturate: true });
    let s = node(&mut g, cast(DType::Str), &[x]);
    let back = node(&mut g, cast(DType::F32), &[s]);
    let words = g.add_input("w", unranked(DType::Str));
    let norm = node(
        &mut g,
        Op::StringNormalizer(StringNormalizer {
            case_change_action: "UPPER".into(),
            stopwords: Some(vec!["monday".into()]),
            ..StringNormalizer::default()
        }),
        &[words],
    );
    out(&mut g, "s", s);
    out(&mut g, "back", back);
    out(&mut g, "norm", norm);
    infer_graph(&mut g).unwrap();
    let xs = f(&[4], &[0.039187793, 1.0, 1.5e-5, f32::NEG_INFINITY]);
    let words = Value::Strings(StrTensor {
        shape: vec![3],
        values: vec!["Monday".into(), "tuesday".into(), "monday".into()],
    });
    let r = run_values(
        &g,
        &[("x".into(), Value::Tensor(xs.clone())), ("w".into(), words)],
    )
    .unwrap();
    let Value::Strings(s) = &r[0].1 else {
        panic!("{:?}", r[0].1)
    };
    // numpy's spelling: shortest round trip, `.0` on integers, two-digit exponents.
    assert_eq!(s.values, ["0.039187793", "1.0", "1.5e-05", "-inf"]);
    assert_eq!(r[1].1, Value::Tensor(xs));
    assert_eq!(
        r[2].1,
        Value::Strings(StrTensor {
            shape: vec![1],
            values: vec!["TUESDAY".into()],
        })
    );
}

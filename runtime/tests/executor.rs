// Expected values are pasted from numpy / onnxruntime output at full printed precision.
#![allow(clippy::excessive_precision)]

mod common;
use common::*;
use compc_ir::op::UnaryOp;
use compc_ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
use compc_runtime::{npz, run, Executor, Tensor};

fn ty(dims: Vec<Dim>) -> TensorType {
    TensorType::new(DType::F32, Shape::Ranked(dims))
}

/// x → relu → neg → relu → … (n ops) → y, plus a weight added at the end.
fn chain(n: usize) -> (Graph, Vec<ValueRef>) {
    let mut g = Graph::new("chain");
    let t = ty(vec![Dim::Sym("batch".into()), Dim::Known(3)]);
    let x = g.add_input("x", t.clone());
    let mut cur = ValueRef::from(x);
    let mut vals = vec![cur];
    for k in 0..n {
        let op = Op::Unary(if k % 2 == 0 {
            UnaryOp::Relu
        } else {
            UnaryOp::Neg
        });
        cur = g
            .add_node(op, vec![Some(cur)], vec![t.clone()], format!("op{k}"))
            .into();
        vals.push(cur);
    }
    let w = g.add_const(Weight::from_f32("bias", vec![3], &[1., 2., 3.]).unwrap());
    let y = g.add_node(
        Op::Binary(compc_ir::op::BinaryOp::Add),
        vec![Some(cur), Some(w.into())],
        vec![t],
        "add",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: y.into(),
    });
    vals.push(y.into());
    (g, vals)
}

#[test]
fn chain_runs_and_frees_intermediates() {
    let (g, vals) = chain(10);
    let x = f(&[2, 3], &[-1., 2., -3., 4., -5., 6.]);
    let ex = Executor::new(&g).unwrap();
    let out = ex.run(&[("x".into(), x.clone())]).unwrap();
    assert_eq!(out[0].0, "y");
    // relu then neg leaves -relu(x) ≤ 0, which the next relu zeroes: only the bias is left.
    assert_close(&out[0].1, &[2, 3], &[1., 2., 3., 1., 2., 3.], 0.0);
    let (g1, _) = chain(3);
    let y1 = run(&g1, &[("x".into(), x.clone())]).unwrap();
    assert_close(&y1[0].1, &[2, 3], &[1., 2., 3., 1., 2., 3.], 0.0);
    let (g2, _) = chain(2);
    let y2 = run(&g2, &[("x".into(), x.clone())]).unwrap();
    assert_close(&y2[0].1, &[2, 3], &[1., 0., 3., -3., 2., -3.], 0.0);
    // Only the value being read and the one being produced are alive at any time.
    assert!(ex.peak_live_values() <= 2, "peak {}", ex.peak_live_values());
    // Taps arrive in topological order, as soon as computed.
    let mut seen = Vec::new();
    let taps = [vals[3], vals[1], vals[0]];
    ex.run_with_taps(&[("x".into(), x.clone())], &taps, &mut |v, t| {
        assert_eq!(t.shape(), &[2, 3]);
        seen.push(v);
    })
    .unwrap();
    assert_eq!(seen, vec![vals[0], vals[1], vals[3]]);
    // Weights are converted once and reused: a second run gives the same result.
    assert_eq!(run(&g, &[("x".into(), x)]).unwrap(), out);
}

#[test]
fn input_errors_name_the_input_and_the_problem() {
    let (g, _) = chain(1);
    let ex = Executor::new(&g).unwrap();
    let e = ex
        .run(&[("x".into(), f(&[2, 4], &[0.; 8]))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input `x`") && e.contains("dim 1 is 4, not 3"),
        "{e}"
    );
    let e = ex.run(&[]).unwrap_err().to_string();
    assert!(e.contains("input `x`: missing"), "{e}");
    let e = ex
        .run(&[("x".into(), Tensor::from_i64(vec![1, 3], vec![0; 3]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected element type f32, got i64"), "{e}");
    let e = ex
        .run(&[("x".into(), f(&[3], &[0.; 3]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank 1"), "{e}");
    let e = ex
        .run(&[
            ("x".into(), f(&[1, 3], &[0.; 3])),
            ("z".into(), f(&[1], &[0.])),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("input `z`: the graph has no such input"), "{e}");
}

#[test]
fn symbols_must_agree_across_inputs() {
    let mut g = Graph::new("two");
    let t = ty(vec![Dim::Sym("seq".into())]);
    let a = g.add_input("a", t.clone());
    let b = g.add_input("b", t.clone());
    let y = g.add_node(
        Op::Binary(compc_ir::op::BinaryOp::Add),
        vec![Some(a.into()), Some(b.into())],
        vec![t],
        "",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: y.into(),
    });
    let ok = run(
        &g,
        &[
            ("a".into(), f(&[2], &[1., 2.])),
            ("b".into(), f(&[2], &[3., 4.])),
        ],
    )
    .unwrap();
    assert_close(&ok[0].1, &[2], &[4., 6.], 0.0);
    let e = run(
        &g,
        &[
            ("a".into(), f(&[2], &[1., 2.])),
            ("b".into(), f(&[3], &[3., 4., 5.])),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`seq` is 3 here but 2 in input `a`"), "{e}");
}

#[test]
fn kernel_errors_name_the_node() {
    let mut g = Graph::new("bad");
    let a = g.add_input("a", ty(vec![Dim::Known(2)]));
    let b = g.add_input("b", ty(vec![Dim::Known(3)]));
    let y = g.add_node(
        Op::Binary(compc_ir::op::BinaryOp::Mul),
        vec![Some(a.into()), Some(b.into())],
        vec![ty(vec![Dim::Unknown])],
        "/blk/Mul",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: y.into(),
    });
    let e = run(
        &g,
        &[
            ("a".into(), f(&[2], &[1., 2.])),
            ("b".into(), f(&[3], &[3., 4., 5.])),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!(
            "{y} (mul \"/blk/Mul\"): shapes [2] and [3] do not broadcast"
        )),
        "{e}"
    );
    let c = compc_ir::op::CustomOp {
        domain: "x.y".into(),
        op_type: "Magic".into(),
        attrs: Default::default(),
    };
    let z = g.add_node(
        Op::Custom(c),
        vec![Some(a.into())],
        vec![ty(vec![Dim::Unknown])],
        "",
    );
    g.outputs[0].value = z.into();
    let e = run(
        &g,
        &[
            ("a".into(), f(&[2], &[1., 2.])),
            ("b".into(), f(&[3], &[3., 4., 5.])),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unsupported op `x.y:Magic`"), "{e}");
}

#[test]
fn npz_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.npz");
    let tensors = vec![
        (
            "input_ids".to_string(),
            Tensor::from_i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]),
        ),
        ("x".to_string(), f(&[2, 2], &[0.5, -1.0, 3.25, 1e-8])),
        ("s".to_string(), f(&[], &[7.0])),
        (
            "mask".to_string(),
            Tensor::from_bool(vec![3], vec![true, false, true]),
        ),
        (
            "h".to_string(),
            Tensor::from_f32_as(DType::F16, vec![2], vec![0.1, 2.0]).unwrap(),
        ),
        (
            "q".to_string(),
            Tensor::from_i64_as(DType::U8, vec![2], vec![0, 255]).unwrap(),
        ),
        ("e".to_string(), f(&[0, 4], &[])),
    ];
    npz::write_npz(&p, &tensors).unwrap();
    let back = npz::read_npz(&p).unwrap();
    assert_eq!(back, tensors);
    let e = npz::read_npz(&dir.path().join("missing.npz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.npz"), "{e}");
}

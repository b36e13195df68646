//! Shape inference of Concat, Split, Slice, the Gather family, Pad, OneHot, TopK, NonZero.

use compc_ir::infer::infer_graph;
use compc_ir::op::{Axis0, Concat, GatherNd, OneHot, Pad, Split, TopK};
use compc_ir::{DType, Graph, Op, TensorType};

mod common;
use common::*;

#[test]
fn concat_sums_the_axis_and_unifies_the_rest() {
    let mut g = Graph::new("t");
    let a = input(&mut g, "a", "{batch}x?x64xf32");
    let b = input(&mut g, "b", "?x{seq}x32xf32");
    let c = node(&mut g, Op::Concat(Concat { axis: -1 }), &[a, b], 1);
    let d = input(&mut g, "d", "?x{seq}x{k}xf32");
    let e = node(&mut g, Op::Concat(Concat { axis: 2 }), &[a, d], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, c, 0), "tensor<{batch}x{seq}x96xf32>");
    assert_eq!(out(&g, e, 0), "tensor<{batch}x{seq}x?xf32>");
}

#[test]
fn concat_mismatch_message() {
    let mut g = Graph::new("t");
    let a = input(&mut g, "a", "4x64xf32");
    let b = input(&mut g, "b", "4x32xf32");
    let ins = vec![Some(a.into()), Some(b.into())];
    g.add_node(
        Op::Concat(Concat { axis: 0 }),
        ins,
        vec![TensorType::unranked(DType::F32)],
        "cat",
    );
    assert_eq!(
        err_of(&mut g),
        "n2 (concat \"cat\"): Concat inputs disagree on dim 1: 64 vs 32"
    );
}

#[test]
fn split_by_attr_input_num_outputs_and_count() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x10x12xf32");
    let by_attr = node(
        &mut g,
        Op::Split(Split {
            axis: 1,
            num_outputs: None,
            split: Some(vec![3, 7]),
        }),
        &[x],
        2,
    );
    let sizes = ints(&mut g, "sizes", &[2, 4, 6]);
    let by_input = node(
        &mut g,
        Op::Split(Split {
            axis: -1,
            ..Default::default()
        }),
        &[x, sizes],
        3,
    );
    let by_num = node(
        &mut g,
        Op::Split(Split {
            axis: 1,
            num_outputs: Some(4),
            split: None,
        }),
        &[x],
        4,
    );
    let by_count = node(
        &mut g,
        Op::Split(Split {
            axis: 2,
            ..Default::default()
        }),
        &[x],
        3,
    );
    let on_sym = node(
        &mut g,
        Op::Split(Split {
            axis: 0,
            ..Default::default()
        }),
        &[x],
        2,
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(
        outs(&g, by_attr),
        ["tensor<{batch}x3x12xf32>", "tensor<{batch}x7x12xf32>"]
    );
    assert_eq!(
        outs(&g, by_input),
        [
            "tensor<{batch}x10x2xf32>",
            "tensor<{batch}x10x4xf32>",
            "tensor<{batch}x10x6xf32>"
        ]
    );
    // Opset 18: chunks of ceil(10 / 4) = 3, the last one smaller.
    assert_eq!(
        outs(&g, by_num),
        [
            "tensor<{batch}x3x12xf32>",
            "tensor<{batch}x3x12xf32>",
            "tensor<{batch}x3x12xf32>",
            "tensor<{batch}x1x12xf32>"
        ]
    );
    assert_eq!(outs(&g, by_count), ["tensor<{batch}x10x4xf32>"; 3]);
    assert_eq!(outs(&g, on_sym), ["tensor<?x10x12xf32>"; 2]);
}

#[test]
fn split_errors() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "10xf32");
    node(
        &mut g,
        Op::Split(Split {
            axis: 0,
            num_outputs: None,
            split: Some(vec![3, 3]),
        }),
        &[x],
        2,
    );
    assert!(err_of(&mut g).contains("split sizes sum to 6 but the dim has 10"));

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "10xf32");
    node(&mut g, Op::Split(Split::default()), &[x], 3);
    assert!(err_of(&mut g).contains("dim 0 of size 10 cannot be split into 3 equal parts"));

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "10xf32");
    node(
        &mut g,
        Op::Split(Split {
            axis: 0,
            num_outputs: None,
            split: Some(vec![5, 5]),
        }),
        &[x],
        3,
    );
    assert!(err_of(&mut g).contains("split has 2 sizes but the node has 3 outputs"));
}

#[test]
fn slice_negative_clamped_and_stepped() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "10x20x{seq}xf32");
    let starts = ints(&mut g, "starts", &[-3, 100, 0]);
    let ends = ints(&mut g, "ends", &[i64::MAX, 0, i64::MAX]);
    let axes = ints(&mut g, "axes", &[0, 1, 2]);
    let steps = ints(&mut g, "steps", &[1, -3, 1]);
    let s = node(&mut g, Op::Slice, &[x, starts, ends, axes, steps], 1);
    // Default axes and steps; the end past the dim is clamped.
    let st2 = ints(&mut g, "st2", &[1, 5]);
    let en2 = ints(&mut g, "en2", &[1000, -5]);
    let s2 = node(&mut g, Op::Slice, &[x, st2, en2], 1);
    // Reverse the whole axis.
    let st3 = ints(&mut g, "st3", &[-1]);
    let en3 = ints(&mut g, "en3", &[i64::MIN]);
    let ax3 = ints(&mut g, "ax3", &[-1]);
    let sp3 = ints(&mut g, "sp3", &[-1]);
    let s3 = node(&mut g, Op::Slice, &[x, st3, en3, ax3, sp3], 1);
    let st4 = ints(&mut g, "st4", &[0]);
    let en4 = ints(&mut g, "en4", &[4]);
    let s4 = node(&mut g, Op::Slice, &[x, st4, en4, ax3], 1);
    infer_graph(&mut g).unwrap();
    // Axis 1: from 19 down to (excluding) 0 by 3: 19, 16, 13, 10, 7, 4, 1.
    assert_eq!(out(&g, s, 0), "tensor<3x7x{seq}xf32>");
    assert_eq!(out(&g, s2, 0), "tensor<9x10x{seq}xf32>");
    assert_eq!(out(&g, s3, 0), "tensor<10x20x{seq}xf32>");
    assert_eq!(out(&g, s4, 0), "tensor<10x20x?xf32>");
}

#[test]
fn slice_with_symbolic_end_keeps_the_symbol() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{batch}x{seq}xi64");
    let cache = input(&mut g, "cache", "{seq}x64xf32");
    let shape = node(
        &mut g,
        Op::Shape(compc_ir::op::ShapeOf {
            start: 1,
            end: Some(2),
        }),
        &[x],
        1,
    );
    let zero = ints(&mut g, "zero", &[0]);
    let s = node(&mut g, Op::Slice, &[cache, zero, shape], 1);
    // A table of the maximum length sliced to the sequence: `min(512, seq)`, taken to be
    // `seq` as ONNX does.
    let table = input(&mut g, "table", "512x64xf32");
    let t = node(&mut g, Op::Slice, &[table, zero, shape], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, s, 0), "tensor<{seq}x64xf32>");
    assert_eq!(out(&g, t, 0), "tensor<{seq}x64xf32>");
}

#[test]
fn gather_family() {
    let mut g = Graph::new("t");
    let emb = input(&mut g, "emb", "32000x64xf32");
    let ids = input(&mut g, "ids", "{batch}x{seq}xi64");
    let e = node(&mut g, Op::Gather(Axis0 { axis: 0 }), &[emb, ids], 1);
    let idx = ints(&mut g, "idx", &[1, 3]);
    let cols = node(&mut g, Op::Gather(Axis0 { axis: 1 }), &[emb, idx], 1);
    let x = input(&mut g, "x", "4x5xf32");
    let gi = input(&mut g, "gi", "4x2xi64");
    let ge = node(&mut g, Op::GatherElements(Axis0 { axis: 1 }), &[x, gi], 1);
    let data = input(&mut g, "data", "2x3x4x5xf32");
    let nd_idx = input(&mut g, "nd_idx", "2x7x2xi64");
    let nd = node(
        &mut g,
        Op::GatherNd(GatherNd { batch_dims: 1 }),
        &[data, nd_idx],
        1,
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, e, 0), "tensor<{batch}x{seq}x64xf32>");
    assert_eq!(out(&g, cols, 0), "tensor<32000x2xf32>");
    assert_eq!(out(&g, ge, 0), "tensor<4x2xf32>");
    assert_eq!(out(&g, nd, 0), "tensor<2x7x5xf32>");

    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "4x5xf32");
    let idx = ints(&mut g, "idx", &[7]);
    node(&mut g, Op::Gather(Axis0 { axis: 1 }), &[x, idx], 1);
    assert!(err_of(&mut g).contains("index 7 is out of range for axis 1 of size 5"));
}

#[test]
fn pad_one_hot_top_k_non_zero() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "1x3x{h}x10xf32");
    let pads = ints(&mut g, "pads", &[0, 0, 0, 2, 0, 0, 0, -1]);
    let p = node(&mut g, Op::Pad(Pad::default()), &[x, pads], 1);
    let p2 = ints(&mut g, "p2", &[1, 1]);
    let ax = ints(&mut g, "ax", &[-1]);
    let pa = node_opt(
        &mut g,
        Op::Pad(Pad::default()),
        &[Some(x), Some(p2), None, Some(ax)],
        1,
    );
    let idx = input(&mut g, "idx", "4x5xi64");
    let depth = ints(&mut g, "depth", &[10]);
    let vals = input(&mut g, "vals", "2xf16");
    let oh = node(
        &mut g,
        Op::OneHot(OneHot { axis: 1 }),
        &[idx, depth, vals],
        1,
    );
    let k = ints(&mut g, "k", &[3]);
    let tk = node(&mut g, Op::TopK(TopK::default()), &[x, k], 2);
    let nz = node(&mut g, Op::NonZero, &[x], 1);
    infer_graph(&mut g).unwrap();
    assert_eq!(out(&g, p, 0), "tensor<1x3x{h}x11xf32>");
    assert_eq!(out(&g, pa, 0), "tensor<1x3x{h}x12xf32>");
    assert_eq!(out(&g, oh, 0), "tensor<4x10x5xf16>");
    assert_eq!(
        outs(&g, tk),
        ["tensor<1x3x{h}x3xf32>", "tensor<1x3x{h}x3xi64>"]
    );
    assert_eq!(out(&g, nz, 0), "tensor<4x?xi64>");
}

//! Conv, pool and resize output sizes, checked against hand-computed values (the
//! comments give the arithmetic).

use compc_ir::infer::infer_graph;
use compc_ir::op::{Conv, ConvTranspose, Pool, Resize};
use compc_ir::{Graph, Op, Weight};

mod common;
use common::*;

/// Infers a one-node graph `op(x, w)` and returns output 0.
fn conv_out(x: &str, w: &str, op: Op) -> Result<String, String> {
    let mut g = Graph::new("t");
    let xi = input(&mut g, "x", x);
    let wi = input(&mut g, "w", w);
    let n = node(&mut g, op, &[xi, wi], 1);
    infer_graph(&mut g).map_err(|e| e.to_string())?;
    Ok(g.node(n).outputs[0].to_string())
}

fn pool_out(x: &str, p: Pool, is_max: bool) -> Result<String, String> {
    let mut g = Graph::new("t");
    let xi = input(&mut g, "x", x);
    let op = if is_max {
        Op::MaxPool(p)
    } else {
        Op::AveragePool(p)
    };
    let n = node(&mut g, op, &[xi], 1);
    infer_graph(&mut g).map_err(|e| e.to_string())?;
    Ok(g.node(n).outputs[0].to_string())
}

fn conv(strides: &[i64], pads: &[i64], dilations: &[i64], auto_pad: &str, group: i64) -> Op {
    Op::Conv(Conv {
        auto_pad: auto_pad.into(),
        dilations: dilations.to_vec(),
        group,
        kernel_shape: vec![],
        pads: pads.to_vec(),
        strides: strides.to_vec(),
    })
}

#[test]
fn conv_output_sizes() {
    // ResNet stem: (224 + 3 + 3 - 7) / 2 + 1 = 112.
    let stem = conv(&[2, 2], &[3, 3, 3, 3], &[], "NOTSET", 1);
    assert_eq!(
        conv_out("1x3x224x224xf32", "64x3x7x7xf32", stem).unwrap(),
        "tensor<1x64x112x112xf32>"
    );
    // Dilation 2, kernel 3: extent 5, (10 - 5) / 1 + 1 = 6; asymmetric pads on the width:
    // (12 + 0 + 2 - 5) / 1 + 1 = 10.
    let dil = conv(&[], &[0, 0, 0, 2], &[2, 2], "NOTSET", 1);
    assert_eq!(
        conv_out("1x1x10x12xf32", "4x1x3x3xf32", dil).unwrap(),
        "tensor<1x4x6x10xf32>"
    );
    // SAME_UPPER: ceil(15 / 2) = 8; VALID: (15 - 3) / 2 + 1 = 7.
    let same = conv(&[2, 2], &[], &[], "SAME_UPPER", 1);
    assert_eq!(
        conv_out("1x1x15x15xf32", "2x1x3x3xf32", same).unwrap(),
        "tensor<1x2x8x8xf32>"
    );
    let valid = conv(&[2, 2], &[5, 5, 5, 5], &[], "VALID", 1);
    assert_eq!(
        conv_out("1x1x15x15xf32", "2x1x3x3xf32", valid).unwrap(),
        "tensor<1x2x7x7xf32>"
    );
    // 1-D conv, stride 3: (20 + 0 + 0 - 4) / 3 + 1 = 6.
    let c1 = conv(&[3], &[], &[], "NOTSET", 1);
    assert_eq!(
        conv_out("2x8x20xf32", "16x8x4xf32", c1).unwrap(),
        "tensor<2x16x6xf32>"
    );
}

#[test]
fn depthwise_conv_keeps_symbolic_sizes() {
    // Stride 1 with pads (1, 1) around a 3x3 kernel keeps the size, even unknown.
    let dw = conv(&[], &[1, 1, 1, 1], &[], "NOTSET", 32);
    assert_eq!(
        conv_out("{n}x32x{h}x{w}xf32", "32x1x3x3xf32", dw).unwrap(),
        "tensor<{n}x32x{h}x{w}xf32>"
    );
    let strided = conv(&[2, 2], &[1, 1, 1, 1], &[], "NOTSET", 32);
    assert_eq!(
        conv_out("1x32x{h}x9xf32", "32x1x3x3xf32", strided).unwrap(),
        "tensor<1x32x?x5xf32>"
    );
}

#[test]
fn conv_errors() {
    let plain = conv(&[], &[], &[], "NOTSET", 1);
    let e = conv_out("1x3x8x8xf32", "8x4x3x3xf32", plain.clone()).unwrap_err();
    assert!(
        e.contains("input has 3 channels but the weights expect 4 × group 1"),
        "{e}"
    );
    let e = conv_out("1x3x2x2xf32", "8x3x3x3xf32", plain).unwrap_err();
    assert!(e.contains("is smaller than the kernel extent 3"), "{e}");
    let e = conv_out(
        "1x3x8x8xf32",
        "8x3x3x3xf32",
        conv(&[1], &[], &[], "NOTSET", 1),
    )
    .unwrap_err();
    assert!(
        e.contains("strides has 1 entries for 2 spatial dims"),
        "{e}"
    );
}

#[test]
fn conv_transpose_sizes() {
    // 2 * (7 - 1) + 1 + 3 - 1 - 1 = 14 per spatial dim; 8 per group × 2 groups.
    let op = Op::ConvTranspose(ConvTranspose {
        group: 2,
        output_padding: vec![1, 1],
        pads: vec![1, 1, 1, 1],
        strides: vec![2, 2],
        ..Default::default()
    });
    assert_eq!(
        conv_out("1x16x7x7xf32", "16x8x3x3xf32", op).unwrap(),
        "tensor<1x16x14x14xf32>"
    );
    let shaped = Op::ConvTranspose(ConvTranspose {
        output_shape: vec![15, 15],
        strides: vec![2, 2],
        ..Default::default()
    });
    assert_eq!(
        conv_out("1x16x7x7xf32", "16x8x3x3xf32", shaped).unwrap(),
        "tensor<1x8x15x15xf32>"
    );
}

fn pool(kernel: &[i64], strides: &[i64], pads: &[i64], ceil_mode: bool) -> Pool {
    Pool {
        kernel_shape: kernel.to_vec(),
        strides: strides.to_vec(),
        pads: pads.to_vec(),
        ceil_mode,
        ..Default::default()
    }
}

#[test]
fn pool_sizes_with_ceil_mode() {
    // floor((112 + 2 - 3) / 2) + 1 = 56; ceil gives ceil(111 / 2) + 1 = 57.
    let p = pool(&[3, 3], &[2, 2], &[1, 1, 1, 1], false);
    assert_eq!(
        pool_out("1x64x112x112xf32", p, true).unwrap(),
        "tensor<1x64x56x56xf32>"
    );
    let p = pool(&[3, 3], &[2, 2], &[1, 1, 1, 1], true);
    assert_eq!(
        pool_out("1x64x112x112xf32", p, true).unwrap(),
        "tensor<1x64x57x57xf32>"
    );
    // ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start at 6 ≥ 5 + 1 (in the
    // end padding): dropped, 3 (PyTorch agrees).
    let p = pool(&[2], &[2], &[1, 1], true);
    assert_eq!(
        pool_out("1x1x5xf32", p, false).unwrap(),
        "tensor<1x1x3xf32>"
    );
    // Strides default to 1: 7 - 2 + 1 = 6.
    let p = pool(&[2, 2], &[], &[], false);
    assert_eq!(
        pool_out("1x1x7x7xf32", p, false).unwrap(),
        "tensor<1x1x6x6xf32>"
    );
    let e = pool_out("1x1x7x7xf32", pool(&[], &[], &[], false), true).unwrap_err();
    assert!(e.contains("kernel_shape is required"), "{e}");
}

#[test]
fn max_pool_indices_and_global_pool() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "{n}x64x7x7xf32");
    let mp = node(&mut g, Op::MaxPool(pool(&[7, 7], &[], &[], false)), &[x], 2);
    let gp = node(&mut g, Op::GlobalAveragePool, &[x], 1);
    infer_graph(&mut g).unwrap();
    let outs: Vec<String> = g.node(mp).outputs.iter().map(|t| t.to_string()).collect();
    assert_eq!(outs, ["tensor<{n}x64x1x1xf32>", "tensor<{n}x64x1x1xi64>"]);
    assert_eq!(g.node(gp).outputs[0].to_string(), "tensor<{n}x64x1x1xf32>");
}

#[test]
fn resize_by_scales_or_sizes() {
    let mut g = Graph::new("t");
    let x = input(&mut g, "x", "1x3x{h}x10xf32");
    let scales = g.add_const(Weight::from_f32("scales", vec![4], &[1.0, 1.0, 2.0, 2.5]).unwrap());
    let by_scale = node_opt(
        &mut g,
        Op::Resize(Resize::default()),
        &[Some(x), None, Some(scales)],
        1,
    );
    let sizes = g.add_const(Weight::from_i64("sizes", vec![2], &[32, 48]).unwrap());
    let axes = Resize {
        axes: Some(vec![2, 3]),
        ..Default::default()
    };
    let by_size = node_opt(
        &mut g,
        Op::Resize(axes),
        &[Some(x), None, None, Some(sizes)],
        1,
    );
    let y = input(&mut g, "y", "1x3x100x200xf32");
    let small = g.add_const(Weight::from_i64("small", vec![2], &[50, 50]).unwrap());
    let keep = Resize {
        axes: Some(vec![2, 3]),
        keep_aspect_ratio_policy: "not_larger".into(),
        ..Default::default()
    };
    // Ratios 0.5 and 0.25; not_larger takes 0.25 for both axes.
    let aspect = node_opt(
        &mut g,
        Op::Resize(keep),
        &[Some(y), None, None, Some(small)],
        1,
    );
    // torchscript builds the scales with a Concat of constants.
    let ones = g.add_const(Weight::from_f32("ones", vec![2], &[1.0, 1.0]).unwrap());
    let twos = g.add_const(Weight::from_f32("twos", vec![2], &[2.0, 2.0]).unwrap());
    let cat = node(
        &mut g,
        Op::Concat(compc_ir::op::Concat { axis: 0 }),
        &[ones, twos],
        1,
    );
    let by_cat = node_opt(
        &mut g,
        Op::Resize(Resize::default()),
        &[Some(x), None, Some(cat)],
        1,
    );
    infer_graph(&mut g).unwrap();
    assert_eq!(
        g.node(by_scale).outputs[0].to_string(),
        "tensor<1x3x?x25xf32>"
    );
    assert_eq!(
        g.node(by_cat).outputs[0].to_string(),
        "tensor<1x3x?x20xf32>"
    );
    assert_eq!(
        g.node(by_size).outputs[0].to_string(),
        "tensor<1x3x32x48xf32>"
    );
    assert_eq!(
        g.node(aspect).outputs[0].to_string(),
        "tensor<1x3x25x50xf32>"
    );
}

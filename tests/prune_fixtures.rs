//! `prune` on the fixture models: 2:4 holds exactly on every pruned weight of the LM;
//! pruning nothing is an exact no-op; structured pruning removes channels and heads that
//! are already zero with identical outputs, gives smaller models that onnxruntime runs
//! with the same outputs as compc's runtime, and composes with `quant`. On the CNN,
//! convolution channel groups are found across BatchNorm, depthwise convs, residual adds,
//! squeeze-excite and the channel Concat, zero channels are removed with identical
//! outputs, and onnxruntime runs the shrunk model, whether channels are scored by
//! magnitude, Wanda or Taylor; on a small conv pair the activation-aware scores keep the
//! channel that carries the large activations, which magnitude removes.

mod common;

use common::{close, lm, lm_ids, model_path, ort_outputs, outputs, read_npz, run_pipeline};
use compc::ir::{Graph, NodeId, ValueRef};
use compc::passes::idioms::Idioms;
use compc::passes::prune::pattern::holds_nm;
use compc::passes::quant::layers::{read_w, select_skipping, write_w};
use compc::passes::{CalibData, GraphStats, PassManager, Registry};
use compc::runtime::Tensor;

/// The pruned model gives the dense model's first output `before` to 1e-4, in compc's
/// runtime and, where the oracle is installed, in onnxruntime.
fn assert_outputs_kept(out: &Graph, inputs: &[(String, Tensor)], before: &[Vec<f32>]) {
    let after = outputs(out, inputs);
    assert!(close(&before[0], &after[0], 1e-4, 1e-4), "outputs changed");
    if let Some(ort) = ort_outputs(out, inputs) {
        assert!(
            close(&ort[0], &after[0], 1e-4, 1e-4),
            "onnxruntime disagrees"
        );
    }
}

#[test]
fn lm_two_four_holds_on_every_pruned_weight() {
    let g = lm();
    let calib = CalibData {
        tensors: lm_ids(4, 32, 0),
    };
    for method in ["wanda", "sparsegpt", "magnitude"] {
        let out = run_pipeline(
            &g,
            &format!("prune{{method={method},pattern=2:4}}"),
            Some(&calib),
        );
        let idioms = Idioms::find(&out).unwrap();
        let sel = select_skipping(&out, &idioms, &[]);
        let mut pruned = 0;
        for l in &sel.layers {
            let w = read_w(&out, l).unwrap();
            if w.contains(&0.0) {
                pruned += 1;
                assert!(
                    holds_nm(&w, l.cols, 2, 4),
                    "{method}: `{}` breaks 2:4",
                    l.name
                );
                let zeros = w.iter().filter(|&&x| x == 0.0).count();
                assert_eq!(zeros * 2, w.len(), "{method}: `{}`", l.name);
            }
        }
        // q, k, v, o, gate, up, down in each of the 4 blocks; lm_head stays dense.
        assert_eq!(pruned, 28, "{method}");
    }
}

/// Global scope ranks every layer's Wanda scores against one threshold, and their scales
/// differ by layer: on the LM, layer 0 ends almost empty. The report names such layers
/// and points to the per-row and per-layer scopes, which never warn.
#[test]
fn global_scope_warns_about_nearly_empty_layers() {
    let g = lm();
    let calib = CalibData {
        tensors: lm_ids(8, 64, 0),
    };
    let notes = |pipeline: &str| {
        let passes = Registry::with_builtin_passes().parse(pipeline).unwrap();
        let mut out = g.clone();
        let mut pm = PassManager::new(passes);
        pm.calib = Some(&calib);
        let ledger = pm.run(&mut out).unwrap();
        ledger.passes[0].record.notes.clone()
    };
    let global = notes("prune{method=wanda,scope=global}");
    let warning = global
        .iter()
        .find(|n| n.starts_with("warning: scope=global left"))
        .unwrap_or_else(|| panic!("no warning in {global:?}"));
    // Every layer it names has a report row at 95% zeros or more.
    let named: Vec<&str> = warning.split('`').skip(1).step_by(2).collect();
    assert!(!named.is_empty(), "{warning}");
    for name in named {
        let row = global
            .iter()
            .find(|n| n.starts_with(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("no report row for {name}"));
        let sparsity: f64 = row
            .split("sparsity ")
            .nth(1)
            .unwrap()
            .split('%')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(sparsity >= 95.0, "{row}");
    }
    let row = notes("prune{method=wanda}");
    assert!(row.iter().all(|n| !n.starts_with("warning:")), "{row:?}");
}

#[test]
fn pruning_nothing_is_an_exact_no_op() {
    let g = lm();
    let text = compc::ir::text::print(&g);
    for p in [
        "prune{sparsity=0}",
        "prune{structured=mlp,ratio=0}",
        "prune{structured=heads,heads=0}",
        "prune{structured=hidden,ratio=0}",
    ] {
        let out = run_pipeline(&g, p, None);
        assert_eq!(compc::ir::text::print(&out), text, "{p}");
    }
}

/// Zeroes `k` MLP units (up/gate rows and down columns) and `heads` heads (q/k/v rows and
/// o columns) in every block.
fn zero_units(g: &mut Graph, k: usize, heads: usize) {
    zero_units_in(g, k, heads, true)
}

/// Zeroes `k` MLP units and `heads` heads in every block: different ones per block with
/// `vary`, else the same ones in every block.
fn zero_units_in(g: &mut Graph, k: usize, heads: usize, vary: bool) {
    let idioms = Idioms::find(g).unwrap();
    let sel = select_skipping(g, &idioms, &[]);
    let layer = |i: usize| sel.layers.iter().find(|l| l.index == i).unwrap().clone();
    let zero = |g: &mut Graph, li: usize, rows: bool, idx: &[usize]| {
        let l = layer(li);
        let mut w = read_w(g, &l).unwrap();
        for r in 0..l.rows {
            for c in 0..l.cols {
                if idx.contains(if rows { &r } else { &c }) {
                    w[r * l.cols + c] = 0.0;
                }
            }
        }
        write_w(g, &l, &w).unwrap();
    };
    for (bi, m) in idioms.mlps.iter().enumerate() {
        // 7 is prime to the MLP widths, so these are k distinct units.
        let n = idioms.linears[m.up].out_features.unwrap() as usize;
        let bi = if vary { bi } else { 0 };
        let units: Vec<usize> = (0..k).map(|i| (3 + 7 * i + bi) % n).collect();
        zero(g, m.up, true, &units);
        if let Some(gate) = m.gate {
            zero(g, gate, true, &units);
        }
        zero(g, m.down, false, &units);
    }
    for (ai, a) in idioms.attention.iter().enumerate() {
        let d = a.head_dim.unwrap() as usize;
        let ai = if vary { ai } else { 0 };
        let hs: Vec<usize> = (0..heads)
            .map(|i| (1 + 2 * i + ai) % a.num_heads.unwrap() as usize)
            .collect();
        let idx: Vec<usize> = hs.iter().flat_map(|h| h * d..(h + 1) * d).collect();
        for li in [a.q, a.k, a.v] {
            zero(g, li, true, &idx);
        }
        zero(g, a.o.unwrap(), false, &idx);
    }
    compc::passes::dce::remove_dead_nodes(g).unwrap();
}

#[test]
fn lm_structured_pruning_of_zero_units_keeps_outputs() {
    let mut g = lm();
    // 172 of 688 units (25%) and 2 of 8 heads.
    zero_units(&mut g, 172, 2);
    let inputs = lm_ids(2, 24, 1000);
    let before = outputs(&g, &inputs);
    let out = run_pipeline(
        &g,
        "prune{structured=both,ratio=0.25,heads=2,importance=magnitude}",
        None,
    );
    let f32_params = |g: &Graph| GraphStats::of(g).bytes_by_dtype["f32"] / 4;
    let (pb, pa) = (f32_params(&g), f32_params(&out));
    // 4 blocks × (172·256·3 + 2·32·256·4) removed.
    assert_eq!(pb - pa, 4 * (172 * 256 * 3 + 2 * 32 * 256 * 4));
    assert_outputs_kept(&out, &inputs, &before);
}

/// The weight constants the model's linears read, counted once each.
fn distinct_linear_weights(g: &Graph) -> usize {
    let idioms = Idioms::find(g).unwrap();
    let sel = select_skipping(g, &idioms, &[]);
    let weights: std::collections::HashSet<ValueRef> = sel
        .layers
        .iter()
        .filter_map(|l| g.node(l.node()).input(1))
        .collect();
    weights.len()
}

#[test]
fn structured_pruning_keeps_blocks_tied_by_share_layers_tied() {
    // The same units and heads zeroed in every block stay zero in share-layers' average
    // of the blocks, so magnitude pruning of the tied model removes exactly them.
    let mut g = lm();
    zero_units_in(&mut g, 172, 2, false);
    let tied = run_pipeline(&g, "share-layers", None);
    let inputs = lm_ids(2, 24, 1000);
    let before = outputs(&tied, &inputs);
    let out = run_pipeline(
        &tied,
        "prune{structured=both,ratio=0.25,heads=2,importance=magnitude}",
        None,
    );
    // Every tie still reads one constant per weight: the 4 blocks' 7 linears each, over
    // 2 shared blocks, and the output head.
    assert_eq!(distinct_linear_weights(&g), 4 * 7 + 1);
    assert_eq!(distinct_linear_weights(&tied), 2 * 7 + 1);
    assert_eq!(
        distinct_linear_weights(&out),
        distinct_linear_weights(&tied)
    );
    let f32_params = |g: &Graph| GraphStats::of(g).bytes_by_dtype["f32"] / 4;
    // 2 shared blocks × (172·256·3 + 2·32·256·4) removed.
    assert_eq!(
        f32_params(&tied) - f32_params(&out),
        2 * (172 * 256 * 3 + 2 * 32 * 256 * 4)
    );
    assert_outputs_kept(&out, &inputs, &before);
    // Wanda's scores differ between the sites of a tie (their inputs differ): the tie
    // still gets one plan, from the summed scores, so it stays one constant per weight.
    // (On the trained weights: the zeroed units above would make every compensation 0.)
    let tied = run_pipeline(&lm(), "share-layers", None);
    let calib = CalibData {
        tensors: lm_ids(2, 32, 0),
    };
    for opts in ["", ",compensate=true"] {
        let wanda = run_pipeline(
            &tied,
            &format!("prune{{structured=both,ratio=0.25,heads=2{opts}}}"),
            Some(&calib),
        );
        assert_eq!(distinct_linear_weights(&wanda), 2 * 7 + 1, "{opts}");
        // The compensation biases of a tie's sites are one constant too: the tie's
        // o_proj and down_proj, two sites each.
        let biases: Vec<ValueRef> = wanda
            .node_ids()
            .filter(|&id| wanda.node(id).name.ends_with("_compensation"))
            .filter_map(|id| wanda.node(id).input(1))
            .collect();
        let distinct: std::collections::HashSet<_> = biases.iter().collect();
        let expected = if opts.is_empty() { (0, 0) } else { (8, 4) };
        assert_eq!((biases.len(), distinct.len()), expected, "{opts}");
    }
}

#[test]
fn encoder_structured_pruning_runs_in_onnxruntime() {
    let g = compc::driver::load_model(&model_path("encoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("encoder", "b3"));
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    let mut zeroed = g.clone();
    zero_units(&mut zeroed, 64, 1);
    let z_before = outputs(&zeroed, &inputs);
    let z_out = run_pipeline(
        &zeroed,
        "prune{structured=both,ratio=0.25,heads=1,importance=magnitude}",
        None,
    );
    for (a, b) in z_before.iter().zip(outputs(&z_out, &inputs)) {
        assert!(close(a, &b, 1e-4, 1e-4), "zero units: outputs changed");
    }
    for imp in ["wanda", "taylor"] {
        let out = run_pipeline(
            &g,
            &format!(
                "prune{{structured=both,ratio=0.25,heads=1,importance={imp},compensate=true}}"
            ),
            Some(&calib),
        );
        assert!(GraphStats::of(&out).parameters < GraphStats::of(&g).parameters);
        let ours = outputs(&out, &inputs);
        if let Some(ort) = ort_outputs(&out, &inputs) {
            for (a, b) in ort.iter().zip(&ours) {
                assert!(close(a, b, 1e-4, 1e-4), "{imp}: onnxruntime disagrees");
            }
        }
    }
}

#[test]
fn sparse_then_quantized_keeps_the_zeros() {
    let g = lm();
    let calib = CalibData {
        tensors: lm_ids(2, 32, 0),
    };
    let sparse = run_pipeline(&g, "prune{method=magnitude,pattern=2:4}", None);
    // GPTQ spreads rounding errors over later columns; the pruned ones stay zero.
    let both = run_pipeline(
        &g,
        "prune{method=magnitude,pattern=2:4},quant{bits=8,method=gptq,format=qdq}",
        Some(&calib),
    );
    // Every MatMul of the quantized model reads DequantizeLinear(codes, scale, zero
    // point); evaluate those and compare their zeros with the sparse model's.
    let idioms = Idioms::find(&sparse).unwrap();
    let sel = select_skipping(&sparse, &idioms, &[]);
    let mut probe = both.clone();
    let mut checked = Vec::new();
    for l in &sel.layers {
        let w = read_w(&sparse, l).unwrap();
        if !w.contains(&0.0) {
            continue;
        }
        let name = &sparse.node(l.node()).name;
        let mm = both
            .node_ids()
            .find(|&id| &both.node(id).name == name && both.node(id).op.name() == "matmul")
            .unwrap_or_else(|| panic!("`{name}` is gone"));
        let dq = both.node(mm).input(1).unwrap();
        assert_eq!(
            both.node(dq.node).op.name(),
            "dequantize_linear",
            "`{name}`"
        );
        probe.outputs.push(compc::ir::GraphOutput {
            name: format!("dq{}", checked.len()),
            value: dq,
        });
        checked.push((l.clone(), w));
    }
    assert_eq!(checked.len(), 28);
    let values = compc::runtime::run(&probe, &lm_ids(1, 4, 0)).unwrap();
    let n0 = values.len() - checked.len();
    for ((l, w), (_, t)) in checked.iter().zip(&values[n0..]) {
        // Stored [in, out] = Wᵀ.
        let q = t.to_f32_vec();
        for r in 0..l.rows {
            for c in 0..l.cols {
                if w[r * l.cols + c] == 0.0 {
                    assert_eq!(q[c * l.rows + r], 0.0, "`{}` [{r}, {c}]", l.name);
                }
            }
        }
        let wq: Vec<f32> = (0..l.rows * l.cols)
            .map(|k| q[(k % l.cols) * l.rows + k / l.cols])
            .collect();
        assert!(holds_nm(&wq, l.cols, 2, 4), "`{}`", l.name);
    }
}

/// Zeroes `round(ratio · C)` channels of every prunable channel group of a CNN in every
/// weight that scores them (producer filters, consumer input slices, depthwise filters,
/// classifier columns); returns (first writer, channels, zeroed channels) per group.
fn zero_channels(g: &mut Graph, ratio: f64) -> Vec<(NodeId, usize, Vec<usize>)> {
    use compc::passes::prune::structured::channels::{channel_groups, ChannelMember};
    use compc::passes::prune::structured::channels_rewrite::take_axis;
    let mut out = Vec::new();
    for (conv, grp) in channel_groups(g).unwrap() {
        let Ok(grp) = grp else { continue };
        let c = grp.channels;
        let k = (ratio * c as f64).round() as usize;
        // 7 is prime to every channel count here, so these are k distinct channels.
        let zeroed: Vec<usize> = (0..k).map(|i| (2 + 7 * i) % c).collect();
        for m in &grp.members {
            let (node, axis, offset) = match *m {
                ChannelMember::ConvOut(n) | ChannelMember::Depthwise(n) => (n, 0, 0),
                ChannelMember::ConvIn(n) => (n, 1, 0),
                ChannelMember::ConvInAt { node, offset } => (node, 1, offset),
                ChannelMember::LinearIn(n) => (n, 1, 0), // the classifier is Gemm transB=1
                _ => continue,
            };
            let at: Vec<usize> = zeroed.iter().map(|c| offset + c).collect();
            let wv = g.node(node).input(1).unwrap();
            let w = g.const_weight(wv).unwrap().clone();
            let shape: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
            let mut x = w.to_f32_vec().unwrap();
            let n = shape[axis];
            let inner: usize = shape[axis + 1..].iter().product();
            for (i, v) in x.iter_mut().enumerate() {
                if at.contains(&((i / inner) % n)) {
                    *v = 0.0;
                }
            }
            assert!(take_axis(&x, &shape, axis, &at).iter().all(|&v| v == 0.0));
            let t = Tensor::from_f32(shape, x);
            let nw = t.to_weight(&w.name).unwrap();
            let cn = g.add_const(nw);
            g.set_input(node, 1, Some(ValueRef::new(cn, 0)));
        }
        out.push((conv, c, zeroed));
    }
    compc::passes::dce::remove_dead_nodes(g).unwrap();
    out
}

#[test]
fn cnn_channel_groups_cover_the_network_through_the_concat() {
    use compc::passes::prune::structured::channels::{channel_groups, ChannelMember};
    for exporter in ["torchscript", "dynamo"] {
        let g = compc::driver::load_model(&model_path("cnn", exporter)).unwrap();
        let groups = channel_groups(&g).unwrap();
        let ok: Vec<usize> = groups
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|grp| grp.channels))
            .collect();
        // stem+projection (residual, 16), expand (48), block-2 hidden with its SE
        // excitation (64), SE hidden (16), block-2 output (24: average pool into block 3,
        // and offset 0 of the Concat into the fused 1x1), block-3 hidden with its SE (96),
        // SE hidden (24), block-3 output (40: Resize, then offset 24 of the Concat), the
        // fused 1x1 (96), the head conv feeding the classifier (192). The spatial gate's
        // single channel is no group.
        assert_eq!(ok, [16, 48, 64, 16, 24, 96, 24, 40, 96, 192], "{exporter}");
        let refused: Vec<&String> = groups
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        assert!(refused.is_empty(), "{exporter}: {refused:?}");
        // Both Concat inputs reach the fused conv's input axis, at offsets 0 and 24.
        let at: Vec<usize> = groups
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flat_map(|grp| grp.members.iter())
            .filter_map(|m| match m {
                ChannelMember::ConvInAt { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect();
        assert_eq!(at, [0, 24], "{exporter}");
    }
}

#[test]
fn cnn_zero_channels_are_removed_with_identical_outputs() {
    for exporter in ["torchscript", "dynamo"] {
        let mut g = compc::driver::load_model(&model_path("cnn", exporter)).unwrap();
        let zeroed = zero_channels(&mut g, 0.25);
        let inputs = read_npz(&common::inputs_path("cnn", "b3"));
        let before = outputs(&g, &inputs);
        let out = run_pipeline(&g, "prune{structured=channels,ratio=0.25}", None);
        // Every writer conv lost exactly its zeroed channels.
        for (conv, c, z) in &zeroed {
            let w = out.node(*conv).input(1).unwrap();
            let dims = &out.const_weight(w).unwrap().dims;
            assert_eq!(dims[0] as usize, c - z.len(), "{exporter}");
        }
        assert!(GraphStats::of(&out).parameters < GraphStats::of(&g).parameters);
        let after = outputs(&out, &inputs);
        assert!(
            close(&before[0], &after[0], 1e-4, 1e-4),
            "{exporter}: outputs changed"
        );
        if let Some(ort) = ort_outputs(&out, &inputs) {
            assert!(
                close(&ort[0], &after[0], 1e-4, 1e-4),
                "{exporter}: onnxruntime disagrees"
            );
        }
    }
}

#[test]
fn cnn_channel_pruning_shrinks_the_model_and_onnxruntime_agrees() {
    let g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("cnn", "b3"));
    let out = run_pipeline(&g, "prune{structured=channels,ratio=0.5}", None);
    let (pb, pa) = (
        GraphStats::of(&g).parameters,
        GraphStats::of(&out).parameters,
    );
    assert!(pa * 10 < pb * 7, "parameters {pb} → {pa}");
    let ours = outputs(&out, &inputs);
    assert_eq!(ours[0].len(), 3 * 10);
    if let Some(ort) = ort_outputs(&out, &inputs) {
        assert!(
            close(&ort[0], &ours[0], 1e-4, 1e-4),
            "onnxruntime disagrees"
        );
    }
}

#[test]
fn gqa_head_pruning_keeps_kv_heads_with_their_query_heads() {
    // 8 query heads share 4 KV heads (2 each) after mean pooling.
    let mut g = run_pipeline(&lm(), "gqa{groups=4,method=mean}", None);
    let idioms = Idioms::find(&g).unwrap();
    let sel = select_skipping(&g, &idioms, &[]);
    let layer = |i: usize| sel.layers.iter().find(|l| l.index == i).unwrap().clone();
    // Zero KV group j = (1 + block) % 4 of every attention: k and v rows of KV head j, q
    // rows of the query heads reading it, the same o columns. gqa repeats KV heads with
    // Tile, so query head p reads KV head p mod 4: KV head j serves query heads j and j + 4.
    for (ai, a) in idioms.attention.iter().enumerate() {
        assert_eq!((a.num_heads, a.num_kv_heads), (Some(8), Some(4)));
        let d = a.head_dim.unwrap() as usize;
        let j = (1 + ai) % 4;
        let heads =
            |hs: &[usize]| -> Vec<usize> { hs.iter().flat_map(|h| h * d..(h + 1) * d).collect() };
        for (li, idx, rows) in [
            (a.q, heads(&[j, j + 4]), true),
            (a.k, heads(&[j]), true),
            (a.v, heads(&[j]), true),
            (a.o.unwrap(), heads(&[j, j + 4]), false),
        ] {
            let l = layer(li);
            let mut w = read_w(&g, &l).unwrap();
            for r in 0..l.rows {
                for c in 0..l.cols {
                    if idx.contains(if rows { &r } else { &c }) {
                        w[r * l.cols + c] = 0.0;
                    }
                }
            }
            write_w(&mut g, &l, &w).unwrap();
        }
    }
    compc::passes::dce::remove_dead_nodes(&mut g).unwrap();
    let inputs = lm_ids(2, 24, 1000);
    let before = outputs(&g, &inputs);
    // heads= counts query heads; under GQA it must be a multiple of the group size.
    let err = common::try_pipeline(&g, "prune{structured=heads,heads=1}", None).unwrap_err();
    assert!(err.contains("not a multiple of the 2 query heads"), "{err}");
    let out = run_pipeline(
        &g,
        "prune{structured=heads,heads=2,importance=magnitude}",
        None,
    );
    let after_idioms = Idioms::find(&out).unwrap();
    for a in &after_idioms.attention {
        assert_eq!((a.num_heads, a.num_kv_heads), (Some(6), Some(3)));
    }
    // 4 blocks × (q and o: 2 heads × 32 × 256 each; k and v: 1 head × 32 × 256 each).
    let f32_params = |g: &Graph| GraphStats::of(g).bytes_by_dtype["f32"] / 4;
    assert_eq!(
        f32_params(&g) - f32_params(&out),
        4 * (2 * 2 * 32 * 256 + 2 * 32 * 256)
    );
    assert_outputs_kept(&out, &inputs, &before);
}

#[test]
fn lm_hidden_size_pruning_of_zero_channels_keeps_outputs() {
    let mut g = lm();
    let idioms = Idioms::find(&g).unwrap();
    let sel = select_skipping(&g, &idioms, &[]);
    // 64 of the 256 stream channels: zero in the embedding table, in every writer's output
    // (o, down) and every reader's input (q, k, v, gate, up, lm_head), so the stream is
    // zero there and every member scores them lowest.
    let zeroed: Vec<usize> = (0..64).map(|i| (5 + 7 * i) % 256).collect();
    let table = g
        .node_ids()
        .find_map(|id| match g.node(id).op {
            compc::ir::Op::Gather(_) => g
                .node(id)
                .input(0)
                .filter(|t| g.const_weight(*t).is_some())
                .map(|t| (id, t)),
            _ => None,
        })
        .unwrap();
    let w = g.const_weight(table.1).unwrap().clone();
    let mut e = w.to_f32_vec().unwrap();
    for (i, x) in e.iter_mut().enumerate() {
        if zeroed.contains(&(i % 256)) {
            *x = 0.0;
        }
    }
    let c = g.add_const(
        Tensor::from_f32(vec![256, 256], e)
            .to_weight(&w.name)
            .unwrap(),
    );
    g.set_input(table.0, 0, Some(ValueRef::new(c, 0)));
    let mut readers = 0;
    for l in &sel.layers {
        let mut w = read_w(&g, l).unwrap();
        // Writers have 256 outputs and are read by a residual Add; everything else with 256
        // inputs reads the stream (through a norm).
        let writer = idioms.residuals.iter().any(|r| r.branch == l.linear.output);
        for r in 0..l.rows {
            for c in 0..l.cols {
                if zeroed.contains(if writer { &r } else { &c }) && (writer || l.cols == 256) {
                    w[r * l.cols + c] = 0.0;
                }
            }
        }
        readers += usize::from(!writer && l.cols == 256);
        write_w(&mut g, l, &w).unwrap();
    }
    // q, k, v, gate, up per block and lm_head.
    assert_eq!(readers, 4 * 5 + 1);
    compc::passes::dce::remove_dead_nodes(&mut g).unwrap();
    let inputs = lm_ids(2, 24, 1000);
    let before = outputs(&g, &inputs);
    let out = run_pipeline(&g, "prune{structured=hidden,ratio=0.25}", None);
    let after_idioms = Idioms::find(&out).unwrap();
    let mut seen = 0;
    for r in &after_idioms.residuals {
        let l = after_idioms
            .linears
            .iter()
            .find(|l| l.output == r.branch)
            .unwrap();
        assert_eq!(l.out_features, Some(192));
        seen += 1;
    }
    assert_eq!(seen, 8);
    // Every stream reader now reads 192 features; the o projections still read the
    // 8 heads × 32 of the attention context.
    let narrow = after_idioms
        .linears
        .iter()
        .filter(|l| l.in_features == Some(192))
        .count();
    assert_eq!(narrow, readers);
    assert_outputs_kept(&out, &inputs, &before);
    // Wanda and Taylor (from calibration data) score the zero channels 0 too: readers see
    // a zero input channel, writers a zero output row.
    let calib = CalibData {
        tensors: lm_ids(4, 32, 7),
    };
    for imp in ["wanda", "taylor"] {
        let out = run_pipeline(
            &g,
            &format!("prune{{structured=hidden,ratio=0.25,importance={imp}}}"),
            Some(&calib),
        );
        let after = outputs(&out, &inputs);
        assert!(
            close(&before[0], &after[0], 1e-4, 1e-4),
            "{imp}: outputs changed"
        );
    }
    // Without zeroed channels the function changes, but stays close at a small ratio.
    let lossy = run_pipeline(&lm(), "prune{structured=hidden,ratio=0.0625}", None);
    assert!(GraphStats::of(&lossy).parameters < GraphStats::of(&lm()).parameters);
}

/// A conv writing 4 channels into a ReLU and a 1x1 conv that sums them. Input channel 0
/// is 100× larger than channel 1 on the calibration data; the first conv's channel 0
/// reads only input 0, with the smallest weight (0.5), and channels 1–3 read input 1 with
/// weights 1.0, 1.1, 1.2; the second conv reads all four with weight 1.
const WANDA_VS_MAGNITUDE: &str = r#"graph @wanda_vs_magnitude(%x: tensor<4x2x2x2xf32>) -> (y: tensor<4x1x2x2xf32>) {
  %w1 = "const"() {value = dense<[[[[0.5]], [[0.0]]], [[[0.0]], [[1.0]]], [[[0.0]], [[1.1]]], [[[0.0]], [[1.2]]]]>} : () -> tensor<4x2x1x1xf32>
  %w2 = "const"() {value = dense<[[[[1.0]], [[1.0]], [[1.0]], [[1.0]]]]>} : () -> tensor<1x4x1x1xf32>
  %0 = "conv"(%x, %w1) {kernel_shape = [1, 1]} : (tensor<4x2x2x2xf32>, tensor<4x2x1x1xf32>) -> tensor<4x4x2x2xf32>
  %1 = "relu"(%0) : (tensor<4x4x2x2xf32>) -> tensor<4x4x2x2xf32>
  %2 = "conv"(%1, %w2) {kernel_shape = [1, 1]} : (tensor<4x4x2x2xf32>, tensor<1x4x1x1xf32>) -> tensor<4x1x2x2xf32>
  return %2
}
"#;

/// The filters of the first conv (4 input-channel pairs, flattened) after pruning.
fn first_conv_filters(g: &Graph) -> Vec<f32> {
    let conv = g
        .node_ids()
        .find(|&id| {
            matches!(g.node(id).op, compc::ir::Op::Conv(_))
                && g.node(id)
                    .input(1)
                    .and_then(|w| g.const_weight(w))
                    .is_some_and(|w| w.dims[1] == 2)
        })
        .expect("the first conv");
    let w = g.node(conv).input(1).unwrap();
    g.const_weight(w).unwrap().to_f32_vec().unwrap()
}

#[test]
fn conv_channel_importance_follows_the_activations_for_wanda_and_taylor() {
    let g = compc::ir::text::parse(WANDA_VS_MAGNITUDE).unwrap();
    // Per sample and position: input 0 is ±100, input 1 is ±1 (alternating signs).
    let x: Vec<f32> = (0..4 * 2 * 4)
        .map(|i| {
            let (c, pos) = ((i / 4) % 2, i % 4);
            let sign = if (i / 8 + pos) % 2 == 0 { 1.0 } else { -1.0 };
            sign * if c == 0 { 100.0 } else { 1.0 }
        })
        .collect();
    let calib = CalibData {
        tensors: vec![("x".to_string(), Tensor::from_f32(vec![4, 2, 2, 2], x))],
    };
    let pruned = |importance: &str| {
        let out = run_pipeline(
            &g,
            &format!("prune{{structured=channels,ratio=0.25,importance={importance}}}"),
            Some(&calib),
        );
        first_conv_filters(&out)
    };
    // Magnitude: the 0.5 filter (and the equal consumer weights) make channel 0 the least
    // important; it goes.
    assert_eq!(pruned("magnitude"), [0.0, 1.0, 0.0, 1.1, 0.0, 1.2]);
    // Wanda: channel 0 multiplies the large input and its ReLU output is large, so it
    // stays and channel 1 (weight 1.0 on the small input) goes; Taylor (consumer side,
    // ‖W_{:,c}‖²·E[x_c²]) agrees.
    assert_eq!(pruned("wanda"), [0.5, 0.0, 0.0, 1.1, 0.0, 1.2]);
    assert_eq!(pruned("taylor"), [0.5, 0.0, 0.0, 1.1, 0.0, 1.2]);
    // With calibration data and no importance=, channels are scored by Wanda, as MLP
    // units and heads are.
    let default = run_pipeline(&g, "prune{structured=channels,ratio=0.25}", Some(&calib));
    assert_eq!(first_conv_filters(&default), [0.5, 0.0, 0.0, 1.1, 0.0, 1.2]);
    // Without calibration the activation-aware scores are refused with a clear error.
    let err = common::try_pipeline(
        &g,
        "prune{structured=channels,ratio=0.25,importance=wanda}",
        None,
    )
    .unwrap_err();
    assert!(err.contains("calibration"), "{err}");
}

/// Channel 0 of the first conv has a zero filter and bias 2, so after the ReLU it is the
/// constant 2, which the second conv reads with weight 0.8: the least important channel
/// by magnitude, and one whose removal compensation undoes exactly (1×1 kernels).
const CONSTANT_CHANNEL: &str = r#"graph @constant_channel(%x: tensor<4x2x2x2xf32>) -> (y: tensor<4x1x2x2xf32>) {
  %w1 = "const"() {value = dense<[[[[0.0]], [[0.0]]], [[[1.0]], [[0.5]]], [[[0.7]], [[-1.0]]], [[[1.3]], [[0.2]]]]>} : () -> tensor<4x2x1x1xf32>
  %b1 = "const"() {value = dense<[2.0, 0.1, -0.2, 0.3]>} : () -> tensor<4xf32>
  %w2 = "const"() {value = dense<[[[[0.8]], [[1.0]], [[-0.6]], [[0.9]]]]>} : () -> tensor<1x4x1x1xf32>
  %b2 = "const"() {value = dense<[0.25]>} : () -> tensor<1xf32>
  %0 = "conv"(%x, %w1, %b1) {kernel_shape = [1, 1]} : (tensor<4x2x2x2xf32>, tensor<4x2x1x1xf32>, tensor<4xf32>) -> tensor<4x4x2x2xf32>
  %1 = "relu"(%0) : (tensor<4x4x2x2xf32>) -> tensor<4x4x2x2xf32>
  %2 = "conv"(%1, %w2, %b2) {kernel_shape = [1, 1]} : (tensor<4x4x2x2xf32>, tensor<1x4x1x1xf32>, tensor<1xf32>) -> tensor<4x1x2x2xf32>
  return %2
}
"#;

/// A quarter of the channels of `g`'s first conv pruned by magnitude without and with
/// compensation, on 4 fixed samples that are also the calibration data.
struct CompensationRun {
    inputs: Vec<(String, Tensor)>,
    before: Vec<Vec<f32>>,
    plain: Graph,
    compensated: Graph,
}

fn compensation_pipeline(compensate: bool) -> String {
    format!("prune{{structured=channels,ratio=0.25,importance=magnitude,compensate={compensate}}}")
}

impl CompensationRun {
    /// Without compensation every output is `drop` lower; with it, nothing changes.
    fn assert_compensated_exactly(&self, drop: f32) {
        let lost = outputs(&self.plain, &self.inputs);
        for (a, b) in self.before[0].iter().zip(&lost[0]) {
            assert!((a - b - drop).abs() < 1e-5, "{a} vs {b}");
        }
        let kept = outputs(&self.compensated, &self.inputs);
        assert!(
            close(&self.before[0], &kept[0], 1e-6, 1e-6),
            "compensation is not exact"
        );
    }
}

fn prune_with_and_without_compensation(g: &Graph) -> CompensationRun {
    let x: Vec<f32> = (0..32)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
        .collect();
    let inputs = vec![("x".to_string(), Tensor::from_f32(vec![4, 2, 2, 2], x))];
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    CompensationRun {
        before: outputs(g, &inputs),
        plain: run_pipeline(g, &compensation_pipeline(false), Some(&calib)),
        compensated: run_pipeline(g, &compensation_pipeline(true), Some(&calib)),
        inputs,
    }
}

#[test]
fn conv_channel_compensation_restores_a_constant_channel_exactly() {
    let g = compc::ir::text::parse(CONSTANT_CHANNEL).unwrap();
    let run = prune_with_and_without_compensation(&g);
    for out in [&run.plain, &run.compensated] {
        assert_eq!(first_conv_filters(out), [1.0, 0.5, 0.7, -1.0, 1.3, 0.2]);
    }
    // The removed channel is the constant 2, read with weight 0.8.
    run.assert_compensated_exactly(1.6);
    let err = common::try_pipeline(&g, &compensation_pipeline(true), None).unwrap_err();
    assert!(err.contains("calibration"), "{err}");
}

/// [`CONSTANT_CHANNEL`] with the second conv bias-free and followed by a BatchNorm, the
/// usual conv–BN pair: compensation goes into the BN's running mean.
const CONSTANT_CHANNEL_BN: &str = r#"graph @constant_channel_bn(%x: tensor<4x2x2x2xf32>) -> (y: tensor<4x1x2x2xf32>) {
  %w1 = "const"() {value = dense<[[[[0.0]], [[0.0]]], [[[1.0]], [[0.5]]], [[[0.7]], [[-1.0]]], [[[1.3]], [[0.2]]]]>} : () -> tensor<4x2x1x1xf32>
  %b1 = "const"() {value = dense<[2.0, 0.1, -0.2, 0.3]>} : () -> tensor<4xf32>
  %w2 = "const"() {value = dense<[[[[0.8]], [[1.0]], [[-0.6]], [[0.9]]]]>} : () -> tensor<1x4x1x1xf32>
  %s = "const"() {value = dense<[1.5]>} : () -> tensor<1xf32>
  %b = "const"() {value = dense<[0.25]>} : () -> tensor<1xf32>
  %m = "const"() {value = dense<[0.4]>} : () -> tensor<1xf32>
  %v = "const"() {value = dense<[2.0]>} : () -> tensor<1xf32>
  %0 = "conv"(%x, %w1, %b1) {kernel_shape = [1, 1]} : (tensor<4x2x2x2xf32>, tensor<4x2x1x1xf32>, tensor<4xf32>) -> tensor<4x4x2x2xf32>
  %1 = "relu"(%0) : (tensor<4x4x2x2xf32>) -> tensor<4x4x2x2xf32>
  %2 = "conv"(%1, %w2) {kernel_shape = [1, 1]} : (tensor<4x4x2x2xf32>, tensor<1x4x1x1xf32>) -> tensor<4x1x2x2xf32>
  %3 = "batch_normalization"(%2, %s, %b, %m, %v) : (tensor<4x1x2x2xf32>, tensor<1xf32>, tensor<1xf32>, tensor<1xf32>, tensor<1xf32>) -> tensor<4x1x2x2xf32>
  return %3
}
"#;

#[test]
fn conv_channel_compensation_before_batch_norm_goes_into_its_mean() {
    let g = compc::ir::text::parse(CONSTANT_CHANNEL_BN).unwrap();
    let run = prune_with_and_without_compensation(&g);
    // The removed channel contributes 2 · 0.8 to the conv, i.e. 1.6 · 1.5/√(2 + 1e-5)
    // after the BN; the correction went into the BN's mean, so no bias was added.
    run.assert_compensated_exactly(1.6 * 1.5 / (2.0f32 + 1e-5).sqrt());
    let compensated = &run.compensated;
    assert_eq!(
        GraphStats::of(compensated).parameters,
        GraphStats::of(&run.plain).parameters,
        "compensation added parameters"
    );
    let conv2 = compensated
        .node_ids()
        .filter(|&id| matches!(compensated.node(id).op, compc::ir::Op::Conv(_)))
        .find(|&id| {
            compensated
                .value_users(ValueRef::new(id, 0))
                .iter()
                .any(|&(u, _)| matches!(compensated.node(u).op, compc::ir::Op::BatchNorm(_)))
        })
        .expect("the conv before the BatchNorm");
    assert!(
        compensated.node(conv2).input(2).is_none(),
        "a bias was added"
    );
}

#[test]
fn cnn_channel_pruning_by_wanda_and_taylor_with_compensation_runs_in_onnxruntime() {
    let g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("cnn", "b3"));
    let calib = CalibData {
        tensors: inputs.clone(),
    };
    let magnitude = run_pipeline(
        &g,
        "prune{structured=channels,ratio=0.5,importance=magnitude}",
        None,
    );
    for imp in ["wanda", "taylor", "taylor,compensate=true"] {
        let out = run_pipeline(
            &g,
            &format!("prune{{structured=channels,ratio=0.5,importance={imp}}}"),
            Some(&calib),
        );
        // The same channel counts go (the ratio decides them), so the same parameters;
        // compensation adds none either: the bias-free convs feed BatchNorms, whose means
        // take the correction.
        assert_eq!(
            GraphStats::of(&out).parameters,
            GraphStats::of(&magnitude).parameters,
            "{imp}"
        );
        let ours = outputs(&out, &inputs);
        assert_eq!(ours[0].len(), 3 * 10);
        if let Some(ort) = ort_outputs(&out, &inputs) {
            assert!(
                close(&ort[0], &ours[0], 1e-4, 1e-4),
                "{imp}: onnxruntime disagrees"
            );
        }
    }
}

/// The CNN's squeeze-excitation block is a 1×1-convolution MLP: `structured=mlp` cannot
/// prune it along the last axis, and says which option prunes convolution channels.
#[test]
fn a_convolution_mlp_points_to_channel_pruning() {
    let g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let err = common::try_pipeline(&g, "prune{structured=mlp}", None).unwrap_err();
    assert!(
        err.contains("cannot prune them") && err.contains("structured=channels"),
        "{err}"
    );
}

/// Pruning after `quant` finds only quantized layers: the refusal says the order is the
/// cause, for unstructured and structured pruning alike.
#[test]
fn pruning_a_quantized_model_says_to_prune_first() {
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let err = common::try_pipeline(&g, "quant{method=rtn},prune", None).unwrap_err();
    assert!(
        err.contains("already quantized") && err.contains("-p prune,quant"),
        "{err}"
    );
    // The CNN's convolutions are quantized in QDQ form, which counts the same way.
    let cnn = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let err = common::try_pipeline(&cnn, "quant{method=rtn},prune", None).unwrap_err();
    assert!(
        err.contains("all 18 linear layers are already quantized"),
        "{err}"
    );
    let err =
        common::try_pipeline(&g, "quant{method=rtn},prune{structured=both}", None).unwrap_err();
    assert!(
        err.contains("already quantized: run prune before quant"),
        "{err}"
    );
}

/// `structured=hidden` finds the residual stream as `rotate` does, but its refusals speak
/// for `prune`: a post-norm encoder, a quantized decoder and a router on the stream are
/// each refused in prune's words, never rotate's.
#[test]
fn hidden_size_refusals_speak_for_prune() {
    let enc = compc::driver::load_model(&model_path("encoder", "torchscript")).unwrap();
    let dec = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let cases = [
        (&enc, "prune{structured=hidden}", "cannot be shrunk"),
        (
            &dec,
            "quant{method=rtn},prune{structured=hidden}",
            "run prune before quant",
        ),
        (
            &dec,
            "mod-routers{router=norm,layers=0},prune{structured=hidden}",
            "run prune before passes that add such nodes",
        ),
    ];
    for (g, pipeline, says) in cases {
        let e = common::try_pipeline(g, pipeline, None).unwrap_err();
        assert!(
            e.contains("structured=hidden: ") && e.contains(says) && !e.contains("rotat"),
            "{pipeline}: {e}"
        );
    }
}

/// After `rotate`, each down projection reads the MLP's hidden units through the online
/// Hadamard, which mixes them all: structured MLP pruning is refused, and says to prune
/// before rotating.
#[test]
fn structured_mlp_pruning_after_rotate_says_to_prune_first() {
    let dec = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let e = common::try_pipeline(&dec, "rotate,prune{structured=mlp}", None).unwrap_err();
    assert!(
        e.contains("online Hadamard") && e.contains("run prune before rotate"),
        "{e}"
    );
    // Head pruning is not affected: the attention has no online rotation inside.
    common::try_pipeline(&dec, "rotate,prune{structured=heads}", None).unwrap();
}

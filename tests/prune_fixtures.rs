//! `prune` on the fixture models: 2:4 holds exactly on every pruned weight of the LM;
//! pruning nothing is an exact no-op; structured pruning removes channels and heads that
//! are already zero with identical outputs, gives smaller models that onnxruntime runs
//! with the same outputs as compc's runtime, and composes with `quant`.

mod common;

use common::{close, lm, lm_ids, model_path, ort_outputs, outputs, read_npz, run_pipeline};
use compc::ir::Graph;
use compc::passes::idioms::Idioms;
use compc::passes::prune::pattern::holds_nm;
use compc::passes::quant::layers::{read_w, select_skipping, write_w};
use compc::passes::{CalibData, GraphStats};

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

#[test]
fn pruning_nothing_is_an_exact_no_op() {
    let g = lm();
    let text = compc::ir::text::print(&g);
    for p in [
        "prune{sparsity=0}",
        "prune{structured=mlp,ratio=0}",
        "prune{structured=heads,heads=0}",
    ] {
        let out = run_pipeline(&g, p, None);
        assert_eq!(compc::ir::text::print(&out), text, "{p}");
    }
}

/// Zeroes `k` MLP units (up/gate rows and down columns) and `heads` heads (q/k/v rows and
/// o columns) in every block.
fn zero_units(g: &mut Graph, k: usize, heads: usize) {
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
        let units: Vec<usize> = (0..k).map(|i| (3 + 7 * i + bi) % n).collect();
        zero(g, m.up, true, &units);
        if let Some(gate) = m.gate {
            zero(g, gate, true, &units);
        }
        zero(g, m.down, false, &units);
    }
    for (ai, a) in idioms.attention.iter().enumerate() {
        let d = a.head_dim.unwrap() as usize;
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
    let after = outputs(&out, &inputs);
    assert!(close(&before[0], &after[0], 1e-4, 1e-4), "outputs changed");
    if let Some(ort) = ort_outputs(&out, &inputs) {
        assert!(
            close(&ort[0], &after[0], 1e-4, 1e-4),
            "onnxruntime disagrees"
        );
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

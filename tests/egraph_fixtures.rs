//! `egraph-opt` on the exported fixture models (CNN, encoder, decoder from both torch
//! exporters, and the trained LM when it is there):
//! - the reference runtime gives the same outputs before and after, to 1e-5 relative;
//! - the node count and the cost-model FLOPs do not grow, and shrink on the transformers;
//! - the exported result runs in onnxruntime and matches the fixtures' expected outputs
//!   (when the Python oracle is installed).

mod common;
use common::*;
use compc::ir::Graph;
use compc::passes::{GraphStats, PassManager, Registry};
use compc::runtime::Tensor;
use std::path::PathBuf;

fn optimize(g: &mut Graph) -> compc::passes::LedgerEntry {
    let passes = Registry::with_builtin_passes().parse("egraph-opt").unwrap();
    let ledger = PassManager::new(passes).run(g).unwrap();
    ledger.passes.into_iter().next().unwrap()
}

fn measured(e: &compc::passes::LedgerEntry, name: &str) -> f64 {
    e.record
        .errors
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("the ledger has no `{name}`"))
}

/// Outputs agree to `rel` relative to the output's own scale (its largest magnitude, at
/// least 1), so values near zero are not judged by a vanishing denominator.
fn same_outputs(a: &[(String, Tensor)], b: &[(String, Tensor)], rel: f32) -> Result<(), String> {
    for ((name, x), (_, y)) in a.iter().zip(b) {
        if x.shape() != y.shape() {
            return Err(format!("{name}: shape {:?} vs {:?}", x.shape(), y.shape()));
        }
        let (x, y) = (x.to_f32_vec(), y.to_f32_vec());
        let scale = x.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            if (p - q).abs() > rel * scale.max(p.abs()) {
                return Err(format!("{name}[{i}]: {p} vs {q} (scale {scale})"));
            }
        }
    }
    Ok(())
}

fn lm_paths() -> Vec<PathBuf> {
    EXPORTERS
        .iter()
        .map(|e| fixtures().join(format!("lm/lm.{e}.onnx")))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn egraph_opt_keeps_outputs_and_shrinks_the_fixtures() {
    for m in MODELS {
        for e in EXPORTERS {
            let before = compc::driver::load_model(&model_path(m, e)).unwrap();
            let mut g = before.clone();
            let entry = optimize(&mut g);
            for c in CASES {
                let inputs = read_npz(&inputs_path(m, c));
                let want = compc::runtime::run(&before, &inputs).unwrap();
                let got = compc::runtime::run(&g, &inputs)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c}: {err}"));
                same_outputs(&got, &want, 1e-5)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c} after egraph-opt: {err}"));
            }
            let (n0, n1) = (GraphStats::of(&before).nodes, GraphStats::of(&g).nodes);
            let (f0, f1) = (
                measured(&entry, "cost_model_flops_before"),
                measured(&entry, "cost_model_flops_after"),
            );
            eprintln!("{m}.{e}: nodes {n0} → {n1}, cost-model FLOPs {f0:.4e} → {f1:.4e}");
            assert!(n1 <= n0, "{m}.{e}: {n0} → {n1} nodes");
            assert!(f1 <= f0, "{m}.{e}: FLOPs {f0} → {f1}");
            if m != "cnn" {
                assert!(n1 < n0, "{m}.{e}: node count did not shrink ({n0})");
            }
        }
    }
}

#[test]
fn egraph_opt_output_runs_in_onnxruntime() {
    if !oracle_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for m in MODELS {
        for e in EXPORTERS {
            let mut g = compc::driver::load_model(&model_path(m, e)).unwrap();
            optimize(&mut g);
            let exported = dir.path().join(format!("{m}.{e}.onnx"));
            compc::onnx::export::export_file(&g, &exported, &Default::default())
                .unwrap_or_else(|err| panic!("{m}.{e}: {err}"));
            for c in CASES {
                let out = dir.path().join(format!("{m}.{e}.{c}.out.npz"));
                ort_run(&exported, &inputs_path(m, c), &out)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c}: {err}"));
                same_outputs(&read_npz(&out), &read_npz(&expected_path(m, e, c)), 1e-5)
                    .unwrap_or_else(|err| panic!("{m}.{e}.{c} in onnxruntime: {err}"));
            }
        }
    }
}

#[test]
fn egraph_opt_on_the_trained_lm() {
    let paths = lm_paths();
    if paths.is_empty() {
        eprintln!("skipping: tests/fixtures/lm/lm.*.onnx are not there");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let oracle = oracle_available();
    for p in paths {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let before = compc::driver::load_model(&p).unwrap();
        let mut g = before.clone();
        optimize(&mut g);
        let (n0, n1) = (GraphStats::of(&before).nodes, GraphStats::of(&g).nodes);
        eprintln!("{name}: nodes {n0} → {n1}");
        assert!(n1 < n0, "{name}: {n0} → {n1} nodes");
        // A line of the training text's kind, as bytes.
        let text = b"Call me Ishmael.";
        let ids = Tensor::from_i64(
            vec![1, text.len()],
            text.iter().map(|&b| b as i64).collect(),
        );
        let input = before.node(before.inputs()[0]).name.clone();
        let inputs = vec![(input, ids)];
        let want = compc::runtime::run(&before, &inputs).unwrap();
        let got = compc::runtime::run(&g, &inputs).unwrap();
        same_outputs(&got, &want, 1e-5).unwrap_or_else(|e| panic!("{name}: {e}"));
        if oracle {
            let ins = dir.path().join("lm.inputs.npz");
            compc::runtime::npz::write_npz(&ins, &inputs).unwrap();
            let exported = dir.path().join(format!("opt.{name}"));
            compc::onnx::export::export_file(&g, &exported, &Default::default()).unwrap();
            let (a, b) = (dir.path().join("a.npz"), dir.path().join("b.npz"));
            ort_run(&p, &ins, &a).unwrap();
            ort_run(&exported, &ins, &b).unwrap_or_else(|e| panic!("{name}: {e}"));
            same_outputs(&read_npz(&b), &read_npz(&a), 1e-5)
                .unwrap_or_else(|e| panic!("{name} in onnxruntime: {e}"));
        }
    }
}

/// Random inputs for a graph whose inputs have static shapes and numeric types.
fn random_inputs(g: &Graph, seed: u64) -> Option<Vec<(String, Tensor)>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = Vec::new();
    for &id in g.inputs() {
        let node = g.node(id);
        let ty = &node.outputs[0];
        let dims: Vec<usize> = ty.shape.as_known()?.iter().map(|&d| d as usize).collect();
        let n: usize = dims.iter().product();
        if n > 1 << 20 {
            return None;
        }
        let t = if ty.dtype.is_float() {
            let v = (0..n)
                .map(|_| ((next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0)
                .collect();
            Tensor::from_f32_as(ty.dtype, dims, v).ok()?
        } else if ty.dtype.is_int() {
            Tensor::from_i64_as(
                ty.dtype,
                dims,
                (0..n).map(|_| (next() % 3) as i64).collect(),
            )
            .ok()?
        } else {
            return None;
        };
        out.push((node.name.clone(), t));
    }
    Some(out)
}

/// Every ONNX backend node-test model (Debian's libonnx-testdata, when installed) goes
/// through `egraph-opt` without a panic and verifies; where the reference runtime runs the
/// model on random inputs, the outputs are unchanged.
#[test]
fn egraph_opt_on_the_onnx_node_tests() {
    let dir = std::path::Path::new("/usr/share/libonnx-testdata/data/node");
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("skipping: {} is not installed", dir.display());
        return;
    };
    let mut cases: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    cases.sort();
    let (mut optimized, mut compared) = (0, 0);
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(before) = compc::driver::load_model(&case.join("model.onnx")) else {
            continue;
        };
        if compc::ir::verify::verify(&before).is_err() {
            continue;
        }
        let mut g = before.clone();
        let passes = Registry::with_builtin_passes().parse("egraph-opt").unwrap();
        if let Err(e) = PassManager::new(passes).run(&mut g) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        optimized += 1;
        let Some(ins) = random_inputs(&before, 42) else {
            continue;
        };
        let Ok(want) = compc::runtime::run(&before, &ins) else {
            continue;
        };
        compared += 1;
        let ok = match compc::runtime::run(&g, &ins) {
            Ok(got) => allclose(&got, &want, 1e-4, 1e-5),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = ok {
            failures.push(format!("{name}: {e}"));
        }
    }
    eprintln!("node tests: {optimized} optimized, {compared} compared on random inputs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Shared by the integration tests: fixture paths, the onnxruntime oracle (a Python script
//! using stock onnxruntime, installed by the test command), and tensor comparison.

#![allow(dead_code)]

use compc::ir::graph::GraphOutput;
use compc::ir::op::Op;
use compc::ir::Graph;
use compc::passes::{CalibData, PassManager, Registry};
use compc::runtime::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MODELS: [&str; 3] = ["cnn", "encoder", "decoder"];
pub const EXPORTERS: [&str; 2] = ["torchscript", "dynamo"];
pub const CASES: [&str; 2] = ["b1", "b3"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_path(model: &str, exporter: &str) -> PathBuf {
    fixtures()
        .join("models")
        .join(format!("{model}.{exporter}.onnx"))
}

pub fn inputs_path(model: &str, case: &str) -> PathBuf {
    fixtures()
        .join("models")
        .join(format!("{model}.inputs.{case}.npz"))
}

pub fn expected_path(model: &str, exporter: &str, case: &str) -> PathBuf {
    fixtures()
        .join("models")
        .join(format!("{model}.{exporter}.expected.{case}.npz"))
}

/// True if `python3` can import onnxruntime; otherwise says why the caller skips.
pub fn oracle_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping the onnxruntime comparison: python3 cannot import onnxruntime (./scripts/test installs it)");
    }
    ok
}

/// Runs `model` in stock onnxruntime (optimizations off) on `inputs`, writing `outputs`.
pub fn ort_run(model: &Path, inputs: &Path, outputs: &Path) -> Result<(), String> {
    let o = Command::new("python3")
        .arg(fixtures().join("scripts/ort_run.py"))
        .args([model, inputs, outputs])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

pub fn read_npz(p: &Path) -> Vec<(String, Tensor)> {
    compc::runtime::npz::read_npz(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Largest absolute and relative differences between two output sets, matched by name.
/// Relative error is |a-b| / max(|b|, floor) so values near zero do not dominate.
pub fn max_errors(
    got: &[(String, Tensor)],
    want: &[(String, Tensor)],
    floor: f32,
) -> Result<(f32, f32), String> {
    let mut max_abs = 0f32;
    let mut max_rel = 0f32;
    for (name, w) in want {
        let g = got
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("output `{name}` missing"))?;
        if g.shape() != w.shape() {
            return Err(format!(
                "output `{name}`: shape {:?}, expected {:?}",
                g.shape(),
                w.shape()
            ));
        }
        for (a, b) in g.to_f32_vec().iter().zip(w.to_f32_vec()) {
            if a.is_nan() != b.is_nan() || (a.is_infinite() || b.is_infinite()) && a != &b {
                return Err(format!("output `{name}`: {a} vs {b}"));
            }
            if a.is_finite() && b.is_finite() {
                let d = (a - b).abs();
                max_abs = max_abs.max(d);
                max_rel = max_rel.max(d / b.abs().max(floor));
            }
        }
    }
    Ok((max_abs, max_rel))
}

/// numpy's `allclose` criterion, `|a - b| <= atol + rtol * |b|` for every element (NaN
/// only matches NaN, infinities must be equal). Returns the worst violation, if any.
pub fn allclose(
    got: &[(String, Tensor)],
    want: &[(String, Tensor)],
    rtol: f32,
    atol: f32,
) -> Result<(), String> {
    for (name, w) in want {
        let g = got
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| format!("output `{name}` missing"))?;
        if g.shape() != w.shape() {
            return Err(format!(
                "output `{name}`: shape {:?}, expected {:?}",
                g.shape(),
                w.shape()
            ));
        }
        let mut worst: Option<(f32, usize, f32, f32)> = None;
        for (i, (a, b)) in g.to_f32_vec().iter().zip(w.to_f32_vec()).enumerate() {
            let ok = if a.is_nan() || b.is_nan() {
                a.is_nan() && b.is_nan()
            } else if a.is_infinite() || b.is_infinite() {
                *a == b
            } else {
                (a - b).abs() <= atol + rtol * b.abs()
            };
            if !ok {
                let excess = (a - b).abs() - rtol * b.abs();
                if worst.is_none_or(|(e, ..)| excess > e || excess.is_nan()) {
                    worst = Some((excess, i, *a, b));
                }
            }
        }
        if let Some((_, i, a, b)) = worst {
            return Err(format!(
                "output `{name}`[{i}]: {a} vs {b} (rtol {rtol}, atol {atol})"
            ));
        }
    }
    Ok(())
}

/// The trained LM fixture.
pub fn lm() -> Graph {
    compc::driver::load_model(&fixtures().join("lm/lm.torchscript.onnx")).unwrap()
}

/// `n` byte windows of length `t` from the LM's calibration text, from byte `offset`.
pub fn lm_ids(n: usize, t: usize, offset: usize) -> Vec<(String, Tensor)> {
    let text = std::fs::read(fixtures().join("lm/calib_text.txt")).unwrap();
    let ids: Vec<i64> = (0..n * t).map(|i| text[offset + i] as i64).collect();
    vec![("input_ids".into(), Tensor::from_i64(vec![n, t], ids))]
}

/// `|a − b| ≤ atol + rtol·|b|` everywhere, same lengths.
pub fn close(a: &[f32], b: &[f32], rtol: f32, atol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= atol + rtol * y.abs())
}

/// Runs `pipeline` (pass-registry syntax) on a copy of `g`.
pub fn try_pipeline(g: &Graph, pipeline: &str, calib: Option<&CalibData>) -> Result<Graph, String> {
    let passes = Registry::with_builtin_passes()
        .parse(pipeline)
        .map_err(|e| e.to_string())?;
    let mut out = g.clone();
    let mut pm = PassManager::new(passes);
    pm.calib = calib;
    pm.run(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

pub fn run_pipeline(g: &Graph, pipeline: &str, calib: Option<&CalibData>) -> Graph {
    try_pipeline(g, pipeline, calib).unwrap_or_else(|e| panic!("{pipeline}: {e}"))
}

/// Every output of `g` on `inputs`, in compc's runtime, as f32.
pub fn outputs(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<Vec<f32>> {
    compc::runtime::run(g, inputs)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.to_f32_vec())
        .collect()
}

/// Exports `g` and runs it in onnxruntime; `None` when the oracle is missing.
pub fn ort_outputs(g: &Graph, inputs: &[(String, Tensor)]) -> Option<Vec<Vec<f32>>> {
    if !oracle_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    compc::onnx::export::export_file(g, &model, &Default::default()).unwrap();
    let inp = dir.path().join("in.npz");
    compc::runtime::npz::write_npz(&inp, inputs).unwrap();
    let out = dir.path().join("out.npz");
    ort_run(&model, &inp, &out).unwrap_or_else(|e| panic!("onnxruntime: {e}"));
    Some(
        read_npz(&out)
            .into_iter()
            .map(|(_, t)| t.to_f32_vec())
            .collect(),
    )
}

/// Asserts every output is within `tol` × the largest magnitude of the expected one (the
/// native backends' tolerance measure), printing the measured error.
pub fn check_scaled(what: &str, got: &[(String, Tensor)], want: &[(String, Tensor)], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: outputs");
    for ((n, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.shape(), w.shape(), "{what} {n}: shape");
        let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let err = g
            .iter()
            .zip(&w)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= tol * scale,
            "{what} {n}: max abs err {err:e} > {tol:e} × {scale:e}"
        );
        eprintln!("{what} {n}: max abs err {err:.2e} (scale {scale:.2e})");
    }
}

/// Relative L2 error of `a` against `b` over all outputs.
pub fn rel(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            num += ((p - q) as f64).powi(2);
            den += (*q as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

/// Op counts without constants.
pub fn census(g: &Graph) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in g.node_ids() {
        if !matches!(g.node(n).op, Op::Const(_)) {
            *m.entry(g.node(n).op.name().to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Integer constants read by quantized ops, by name.
pub fn integer_constants(g: &Graph) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for n in g.node_ids() {
        let node = g.node(n);
        if !matches!(node.op, Op::MatMulNBits(_) | Op::DequantizeLinear(_)) {
            continue;
        }
        for v in node.inputs().iter().flatten() {
            if let Some(w) = g.const_weight(*v) {
                if !w.dtype.is_float() {
                    m.insert(w.name.clone(), w.bytes().unwrap().to_vec());
                }
            }
        }
    }
    m
}

/// A seeded generator of uniform values in (0, 1) (a 64-bit LCG: reproducible noise for
/// tests, not quality).
pub fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// `n` standard-normal images `[n, 3, 32, 32]` (the CNN fixture's inputs are noise too).
pub fn cnn_images(n: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut uniform = uniform(seed);
    let v: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    vec![("input".into(), Tensor::from_f32(vec![n, 3, 32, 32], v))]
}

/// Replaces every float twin (`Graph::float_originals`) of a quantized layer by the weight
/// that layer really uses, as the graph's own DequantizeLinear computes it, so a test can
/// compare a compensated model with one whose float weights carry no quantization error.
pub fn twins_equal_to_quantized(g: &mut Graph, inputs: &[(String, Tensor)]) {
    let entries: Vec<_> = g.float_originals.iter().map(|(&n, &w)| (n, w)).collect();
    assert!(!entries.is_empty());
    let mut probe = g.clone();
    probe.outputs = entries
        .iter()
        .enumerate()
        .map(|(i, (n, _))| GraphOutput {
            name: format!("w{i}"),
            value: g.node(*n).input(1).unwrap(),
        })
        .collect();
    let deq = compc::runtime::run(&probe, inputs).unwrap();
    for ((_, wid), (_, t)) in entries.iter().zip(deq) {
        let old = g.weights.get(*wid);
        let w = t.to_weight(&old.name).unwrap();
        assert_eq!(w.dims, old.dims);
        g.weights.replace(*wid, w);
    }
}

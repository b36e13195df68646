//! Shared by the integration tests: fixture paths, the onnxruntime oracle (a Python script
//! using stock onnxruntime, installed by the test command), and tensor comparison.

#![allow(dead_code)]

use compc::runtime::Tensor;
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

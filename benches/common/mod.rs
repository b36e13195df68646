//! Shared by the benchmarks: the large generated model, peak-memory reading, fixture
//! inputs at a batch size, and the Python peers' timings.

#![allow(dead_code)]

use compc::ir::op::UnaryOp;
use compc::ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
use compc::runtime::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An MLP of `layers` square `width × width` f32 layers (MatMul + Relu), each weight made
/// by `values(layer, width²)`, over a symbolic batch.
pub fn big_mlp(layers: usize, width: u64, values: impl Fn(usize, usize) -> Vec<f32>) -> Graph {
    let mut g = Graph::new("big_mlp");
    g.opsets.insert(String::new(), 17);
    let ty = TensorType::new(
        DType::F32,
        Shape::Ranked(vec![Dim::Sym("batch".into()), Dim::Known(width)]),
    );
    let x = g.add_input("x", ty.clone());
    let mut v = ValueRef::new(x, 0);
    for l in 0..layers {
        let vals = values(l, (width * width) as usize);
        let w = g.add_const(
            Weight::from_f32(format!("layer{l}.weight"), vec![width, width], &vals)
                .expect("weight"),
        );
        let mm = g.add_node(
            Op::MatMul,
            vec![Some(v), Some(ValueRef::new(w, 0))],
            vec![ty.clone()],
            format!("layer{l}/MatMul"),
        );
        let act = g.add_node(
            Op::Unary(UnaryOp::Relu),
            vec![Some(ValueRef::new(mm, 0))],
            vec![ty.clone()],
            format!("layer{l}/Relu"),
        );
        v = ValueRef::new(act, 0);
    }
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: v,
    });
    g
}

/// This process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture's batch-1 inputs repeated to `batch` rows.
pub fn fixture_inputs(model: &str, batch: usize) -> Vec<(String, Tensor)> {
    let p = root().join(format!("tests/fixtures/models/{model}.inputs.b1.npz"));
    compc::runtime::npz::read_npz(&p)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let mut shape = t.shape().to_vec();
            shape[0] *= batch;
            let t = match t.dtype() {
                DType::I64 => Tensor::from_i64(shape, t.to_i64_vec().repeat(batch)),
                _ => Tensor::from_f32(shape, t.to_f32_vec().repeat(batch)),
            };
            (n, t)
        })
        .collect()
}

/// Median milliseconds a peer script (`tests/fixtures/scripts/SCRIPT MODEL IN.npz ARGS`)
/// prints as its first token, or `None` (with its stderr) when it fails.
pub fn peer_ms(script: &str, model: &Path, ins: &[(String, Tensor)], args: &[&str]) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let p = dir.path().join("in.npz");
    compc::runtime::npz::write_npz(&p, ins).ok()?;
    let o = Command::new("python3")
        .arg(root().join("tests/fixtures/scripts").join(script))
        .arg(model)
        .arg(&p)
        .args(args)
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!("{script}: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

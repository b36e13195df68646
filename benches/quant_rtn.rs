//! Benchmark (`cargo bench --bench quant_rtn`), not a test: streaming RTN quantization.
//!
//! A generated MLP of `LAYERS` square f32 layers (512 MiB of weights, external data, so
//! the importer memory-maps it) goes through `compc MODEL -p quant{bits=4,method=rtn}`
//! end to end: load, quantize to MatMulNBits, write model.onnx + model.data. Reported:
//! GB/s of f32 weights for the whole job and for the pass alone, and peak memory; then
//! onnxruntime's own RTN MatMulNBits quantizer on the same file in the same run, as a
//! ratio. Each measurement runs in a child process so its peak RSS is its own.

mod common;

use common::{big_mlp, peak_rss_mib};
use compc::onnx::export::{export_file, ExportOptions, ExternalData};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const LAYERS: usize = 8;
const WIDTH: u64 = 4096;
const PIPELINE: &str = "quant{bits=4,group=128,method=rtn,format=nbits}";

/// Gaussian-like weights (sum of uniforms from a splitmix64 stream), so that the
/// quantizer sees realistic ranges rather than a repeating ramp.
fn weights(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let r = next();
            let u = [r & 0xFFFF, (r >> 16) & 0xFFFF, (r >> 32) & 0xFFFF, r >> 48];
            let sum: f32 = u.iter().map(|&x| x as f32 / 65535.0).sum();
            (sum - 2.0) * 0.02
        })
        .collect()
}

/// Child mode: the whole `compc MODEL -p PIPELINE -o OUT` job; prints one JSON line.
fn measure(model: &Path, out: &Path) {
    let opts = compc::driver::CompileOptions {
        model: model.to_path_buf(),
        pipeline: Some(PIPELINE.into()),
        out: out.to_path_buf(),
        calib: None,
        print_ir_after_all: false,
        force: true,
        seed: 0,
        progress: false,
        external_data: true,
        target: Default::default(),
        chip: String::new(),
    };
    let registry = compc::passes::Registry::with_builtin_passes();
    let t0 = Instant::now();
    let summary = compc::driver::compile(&opts, &registry).expect("compile");
    let total = t0.elapsed().as_secs_f64();
    let pass: f64 = summary.ledger.passes.iter().map(|p| p.seconds).sum();
    let gb = (LAYERS as u64 * WIDTH * WIDTH * 4) as f64 / 1e9;
    println!(
        "{{\"f32_gb\": {gb:.3}, \"total_s\": {total:.3}, \"pass_s\": {pass:.3}, \"total_gb_s\": {:.2}, \"pass_gb_s\": {:.2}, \"peak_rss_mib\": {:.0}}}",
        gb / total,
        gb / pass,
        peak_rss_mib()
    );
}

fn json_field(line: &str, key: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(line.trim().lines().last()?)
        .ok()?
        .get(key)?
        .as_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--measure"), Some(model), Some(out)) =
        (args.get(1).map(String::as_str), args.get(2), args.get(3))
    {
        measure(Path::new(model), Path::new(out));
        return;
    }
    // The repository root; a bench binary copied to another machine runs from a checkout.
    let root = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .filter(|p| p.join("tests/fixtures/scripts").is_dir())
        .unwrap_or_else(|| std::env::current_dir().expect("current dir"));
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("dir");
    let model = src.join("model.onnx");
    let opts = ExportOptions {
        external_data: ExternalData::Always,
        ..Default::default()
    };
    export_file(
        &big_mlp(LAYERS, WIDTH, |l, n| weights(l as u64, n)),
        &model,
        &opts,
    )
    .expect("write source model");
    println!(
        "## RTN int4 g128 → MatMulNBits, {LAYERS}×{WIDTH}×{WIDTH} f32 MLP ({} MiB, external data), {} threads\n",
        (LAYERS as u64 * WIDTH * WIDTH * 4) >> 20,
        rayon::current_num_threads()
    );
    let o = Command::new(std::env::current_exe().expect("self"))
        .args(["--measure", model.to_str().expect("utf-8")])
        .arg(dir.path().join("out"))
        .output()
        .expect("child runs");
    let compc_line = String::from_utf8_lossy(&o.stdout).to_string();
    println!("compc: {}", compc_line.trim());
    if !o.status.success() {
        println!("  failed: {}", String::from_utf8_lossy(&o.stderr));
        return;
    }
    let ort = Command::new("python3")
        .arg(root.join("tests/fixtures/scripts/ort_quantize.py"))
        .arg(&model)
        .arg(dir.path().join("ort.onnx"))
        .args(["--method", "nbits_rtn", "--bits", "4", "--block", "128"])
        .output();
    let ort_line = match ort {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        _ => {
            println!("onnxruntime: unavailable (install tests/fixtures/requirements.txt)");
            return;
        }
    };
    println!(
        "onnxruntime: {}",
        ort_line.trim().lines().last().unwrap_or("")
    );
    if let (Some(c), Some(q), Some(t)) = (
        json_field(&compc_line, "total_s"),
        json_field(&ort_line, "quantize_seconds"),
        json_field(&ort_line, "total_seconds"),
    ) {
        println!(
            "\n| | compc | onnxruntime | onnxruntime / compc |\n|---|---:|---:|---:|\n| whole job (s) | {c:.2} | {t:.2} | {:.1}× |\n| quantizer call only (s) | {:.2} | {q:.2} | {:.1}× |",
            t / c,
            json_field(&compc_line, "pass_s").unwrap_or(f64::NAN),
            q / json_field(&compc_line, "pass_s").unwrap_or(f64::NAN)
        );
    }
}

//! Benchmark (`cargo bench --bench onnx_io`), not a test:
//! 1. import + export throughput (MB/s of weights) and peak memory on a large generated
//!    model, with weights embedded in the protobuf and as external data (memory-mapped);
//! 2. `compc run` latency beside onnxruntime's on the same fixtures and inputs (ratio),
//!    both with the same thread count, in the same run.
//!
//! Each measurement of (1) runs in a child process so its peak RSS is its own.

mod common;

use common::{big_mlp, peak_rss_mib};
use compc::onnx::export::{export_file, ExportOptions, ExternalData};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const LAYERS: usize = 8;
const WIDTH: u64 = 4096;

/// Child mode: import `model`, export it into `out_dir`, print one JSON line.
fn measure(model: &Path, out_dir: &Path, external: bool) {
    let t0 = Instant::now();
    let g = compc::driver::load_model(model).expect("import");
    let t_import = t0.elapsed().as_secs_f64();
    let bytes: u64 = compc::passes::GraphStats::of(&g).weight_bytes;
    let t1 = Instant::now();
    let opts = ExportOptions {
        external_data: if external {
            ExternalData::Always
        } else {
            ExternalData::Never
        },
        ..Default::default()
    };
    export_file(&g, &out_dir.join("model.onnx"), &opts).expect("export");
    let t_export = t1.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    println!(
        "{{\"weight_mb\": {mb:.1}, \"import_s\": {t_import:.3}, \"export_s\": {t_export:.3}, \"import_mb_s\": {:.0}, \"export_mb_s\": {:.0}, \"roundtrip_mb_s\": {:.0}, \"peak_rss_mib\": {:.0}}}",
        mb / t_import,
        mb / t_export,
        mb / (t_import + t_export),
        peak_rss_mib()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn runtime_latency(root: &Path, model: &str, case: &str, reps: usize) {
    let path = root.join(format!("tests/fixtures/models/{model}.torchscript.onnx"));
    let inputs_path = root.join(format!("tests/fixtures/models/{model}.inputs.{case}.npz"));
    let g = compc::driver::load_model(&path).expect("fixture");
    let inputs = compc::runtime::npz::read_npz(&inputs_path).expect("inputs");
    compc::runtime::run(&g, &inputs).expect("warm-up");
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            compc::runtime::run(&g, &inputs).expect("run");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let compc_ms = median(times);
    let threads = rayon::current_num_threads();
    let ort = Command::new("python3")
        .arg(root.join("benches/ort_latency.py"))
        .args([path.as_os_str(), inputs_path.as_os_str()])
        .args([reps.to_string(), threads.to_string()])
        .output();
    let ort_ms = ort
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["median_ms"].as_f64());
    match ort_ms {
        Some(o) => println!(
            "| {model} {case} | {compc_ms:.3} | {o:.3} | {:.2} |",
            compc_ms / o
        ),
        None => println!("| {model} {case} | {compc_ms:.3} | (onnxruntime unavailable) | |"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--measure"), Some(model), Some(out), Some(ext)) = (
        args.get(1).map(String::as_str),
        args.get(2),
        args.get(3),
        args.get(4),
    ) {
        measure(Path::new(model), Path::new(out), ext == "external");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "## import + export of a {LAYERS}×{WIDTH}×{WIDTH} f32 MLP ({} MiB of weights)\n",
        (LAYERS as u64 * WIDTH * WIDTH * 4) >> 20
    );
    // Deterministic, cheap-to-make values; their content does not matter for I/O speed.
    let g = big_mlp(LAYERS, WIDTH, |l, n| {
        (0..n)
            .map(|i| ((i * 31 + l * 7) % 1000) as f32 * 1e-6)
            .collect()
    });
    for external in [false, true] {
        let kind = if external { "external" } else { "embedded" };
        let src = dir.path().join(kind);
        std::fs::create_dir_all(&src).expect("dir");
        let opts = ExportOptions {
            external_data: if external {
                ExternalData::Always
            } else {
                ExternalData::Never
            },
            ..Default::default()
        };
        export_file(&g, &src.join("model.onnx"), &opts).expect("write source model");
        let out = dir.path().join(format!("{kind}-out"));
        std::fs::create_dir_all(&out).expect("dir");
        let o = Command::new(std::env::current_exe().expect("self"))
            .args([
                "--measure",
                src.join("model.onnx").to_str().expect("utf-8"),
                out.to_str().expect("utf-8"),
                kind,
            ])
            .output()
            .expect("child runs");
        println!("{kind}: {}", String::from_utf8_lossy(&o.stdout).trim());
        if !o.status.success() {
            println!("  failed: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
    drop(g);
    println!(
        "\n## compc run vs onnxruntime (median ms, {} threads each)\n",
        rayon::current_num_threads()
    );
    println!("| model | compc | onnxruntime | ratio |\n|---|---:|---:|---:|");
    for (m, c) in [
        ("cnn", "b3"),
        ("encoder", "b3"),
        ("decoder", "b1"),
        ("decoder", "b3"),
    ] {
        runtime_latency(&root, m, c, 20);
    }
}

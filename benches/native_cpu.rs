//! Compiled (MLIR CPU backend) latency against onnxruntime and compc's reference
//! interpreter, side by side in one run, on the fixture families at batch 1 and 8, plus
//! weight-only int4 (compc's MatMulNBits loop vs onnxruntime's MatMulNBits kernel) and
//! 8-bit QDQ decoders, and the trained LM in f32, int4 and 8-bit QDQ (32-token prompts).
//!
//!     cargo bench --features mlir --bench native_cpu [-- --reps N --threads T]
//!
//! Latency = median over N runs after warm-up, same inputs for every runtime. Reported as
//! ratios (compiled / onnxruntime, compiled / interpreter); absolute times are noise on
//! shared machines. onnxruntime runs with T intra-op threads (default 1); the compiled
//! code runs the samples of a batch-separable model (the CNN) on T threads, and every
//! other model on one.

mod common;

use common::{fixture_inputs, peer_ms, root};
use compc::ir::Graph;
use compc::runtime::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn ort_ms(model: &Path, ins: &[(String, Tensor)], reps: usize, threads: usize) -> Option<f64> {
    let (reps, threads) = (reps.to_string(), threads.to_string());
    peer_ms(
        "ort_time.py",
        model,
        ins,
        &["--reps", &reps, "--threads", &threads],
    )
}

/// `batch` sequences of [`LM_TOKENS`] bytes from the LM's calibration windows.
fn lm_inputs(batch: usize) -> Vec<(String, Tensor)> {
    let p = root().join("tests/fixtures/lm/calib.n128.l128.s0.npz");
    let (name, ids) = compc::runtime::npz::read_npz(&p)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let len = ids.shape()[1];
    let ids: Vec<i64> = ids
        .to_i64_vec()
        .chunks(len)
        .take(batch)
        .flat_map(|row| row[..LM_TOKENS].to_vec())
        .collect();
    vec![(name, Tensor::from_i64(vec![batch, LM_TOKENS], ids))]
}

/// Tokens per LM sequence in the bench: a short prompt.
const LM_TOKENS: usize = 32;

fn export(g: &Graph, dir: &Path) -> PathBuf {
    let p = dir.join("model.onnx");
    compc::onnx::export::export_file(g, &p, &Default::default()).unwrap();
    p
}

fn main() {
    let reps = arg("--reps", 30);
    let threads = arg("--threads", 1);
    let tmp = tempfile::tempdir().unwrap();
    println!("| model | batch | compiled ms | onnxruntime ms ({threads} thr) | interpreter ms | compiled / ORT | compiled / interp |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut cases: Vec<(String, Graph, &str)> = Vec::new();
    for m in ["cnn", "encoder", "decoder"] {
        let g = compc::driver::load_model(
            &root().join(format!("tests/fixtures/models/{m}.torchscript.onnx")),
        )
        .unwrap();
        cases.push((m.to_string(), g, m));
    }
    // Quantized models: int4 weights as MatMulNBits (compc's loop against onnxruntime's
    // kernel), and 8-bit QDQ weights, which onnxruntime runs as DequantizeLinear + MatMul
    // and compc's lowering turns into 8-bit MatMulNBits. The decoder, and the trained LM
    // (256 wide, MLP 688; also in f32): layers wide enough for the weight stream to matter.
    let dec = cases[2].1.clone();
    let lm =
        compc::driver::load_model(&root().join("tests/fixtures/lm/lm.torchscript.onnx")).unwrap();
    cases.push(("lm".into(), lm.clone(), "lm"));
    for (name, base, inp, pipeline) in [
        (
            "decoder int4 (MatMulNBits)",
            &dec,
            "decoder",
            "quant{bits=4,method=rtn,group=32}",
        ),
        (
            "decoder int8 (QDQ)",
            &dec,
            "decoder",
            "quant{bits=8,method=rtn,format=qdq}",
        ),
        (
            "lm int4 (MatMulNBits)",
            &lm,
            "lm",
            "quant{bits=4,method=rtn}",
        ),
        (
            "lm int8 (QDQ)",
            &lm,
            "lm",
            "quant{bits=8,method=rtn,format=qdq}",
        ),
    ] {
        let passes = compc::passes::Registry::with_builtin_passes()
            .parse(pipeline)
            .unwrap();
        let mut g = base.clone();
        compc::passes::PassManager::new(passes).run(&mut g).unwrap();
        cases.push((name.into(), g, inp));
    }
    let only = std::env::args()
        .position(|a| a == "--only")
        .and_then(|i| std::env::args().nth(i + 1));
    for (i, (name, g, inp)) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        // `--aot`: through the shared library `--target cpu` writes (profilers see its
        // symbols); default: the in-process JIT.
        // `COMPC_AOT_DIR=DIR` keeps the library there, so a profile can be read afterwards.
        let aot_base = std::env::var_os("COMPC_AOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| tmp.path().to_path_buf());
        let aot_dir = aot_base.join(format!("aot{i}"));
        let native = if std::env::args().any(|a| a == "--aot") {
            std::fs::create_dir_all(&aot_dir).unwrap();
            compc::native::compile_cpu(g, &aot_dir).unwrap();
            compc::runtime::native::NativeModel::load(&aot_dir).unwrap()
        } else {
            compc::native::jit(g).unwrap()
        };
        // The same thread count as onnxruntime: a batch-separable model runs its samples
        // side by side; the others are single-threaded.
        let native = native.with_threads(threads).unwrap();
        let d = tmp.path().join(format!("m{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let onnx = export(g, &d);
        let interp = compc::runtime::Executor::new(g).unwrap();
        for batch in [1, 8] {
            let ins = if *inp == "lm" {
                lm_inputs(batch)
            } else {
                fixture_inputs(inp, batch)
            };
            let c = median_ms(reps, || {
                native.run(&ins).unwrap();
            });
            let r = median_ms(reps.min(10), || {
                interp.run(&ins).unwrap();
            });
            let o = ort_ms(&onnx, &ins, reps, threads);
            let (os, ratio) = match o {
                Some(o) => (format!("{o:.3}"), format!("{:.2}×", c / o)),
                None => ("—".into(), "—".into()),
            };
            println!(
                "| {name} | {batch} | {c:.3} | {os} | {r:.3} | {ratio} | {:.3}× |",
                c / r
            );
        }
    }
}

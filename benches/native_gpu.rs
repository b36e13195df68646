//! GPU backend benchmark: compc's compiled GPU models against PyTorch eager on the same
//! weights (`tests/fixtures/scripts/torch_eager.py`, op by op; the installed
//! onnxruntime has no CUDA execution provider), and the weight-only int4 matrix–vector
//! kernel's achieved bandwidth as a fraction of the GPU's device-to-device copy bandwidth.
//!
//! Two steps, because compiling needs MLIR and running needs a GPU:
//!
//!     cargo bench --bench native_gpu --features mlir -- --compile DIR   # any machine
//!     cargo bench --bench native_gpu -- --run DIR [--reps 50] [--only PREFIX]  # GPU machine
//!
//! `--compile` writes one `--target gpu` folder per case without `weights.bin` (the
//! int4 chains' weights are hundreds of MB); `--run` rebuilds every case's graph from the
//! same fixed inputs and seeds, writes the weights, checks outputs against compc's
//! reference interpreter, and prints the tables.
//!
//! The int4 cases are chains of 8 layers (4096×4096, or 4096→11008→4096 pairs): more
//! weight bytes than the H100's 50 MB L2, so every layer streams from HBM. Their time is
//! GPU time (CUDA events) of many queued runs after a spin kernel has held the stream, so
//! it is the kernels' time, not the host's launch rate.

mod common;

use common::{fixture_inputs, peer_ms, root};
use compc::ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
use compc::runtime::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One benchmark case: a graph, its inputs at a batch size, and how to report it.
struct Case {
    name: String,
    graph: Graph,
    /// Fixture whose inputs it runs on, or `None` for the synthetic int4 chains.
    fixture: Option<&'static str>,
    /// ONNX file the PyTorch peer runs (the original fixture, or exported on demand).
    peer_onnx: Option<PathBuf>,
}

/// Deterministic uniform(−a, a) values (xorshift), so `--compile` and `--run` on two
/// machines build the same weights.
fn uniform(seed: u64, n: usize, a: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

/// x → MatMul(W₁) → … → MatMul(W_L), widths `dims[0] → dims[1] → …`, then int4 RTN
/// (group 32) to MatMulNBits.
fn int4_chain(dims: &[u64]) -> Graph {
    let mut g = Graph::new("chain");
    let ty = |k: u64| {
        TensorType::new(
            DType::F32,
            Shape::Ranked(vec![Dim::Sym("batch".into()), Dim::Known(k)]),
        )
    };
    let mut x = ValueRef::new(g.add_input("x", ty(dims[0])), 0);
    for (i, w) in dims.windows(2).enumerate() {
        let (k, n) = (w[0], w[1]);
        let v = uniform(i as u64 + 1, (k * n) as usize, 1.0 / (k as f32).sqrt());
        let wt = g.add_const(Weight::from_f32(format!("w{i}"), vec![k, n], &v).unwrap());
        let m = g.add_node(
            Op::MatMul,
            vec![Some(x), Some(ValueRef::new(wt, 0))],
            vec![ty(n)],
            format!("layer{i}"),
        );
        x = ValueRef::new(m, 0);
    }
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: x,
    });
    run_pipeline(g, "quant{bits=4,method=rtn,group=32}")
}

fn run_pipeline(mut g: Graph, p: &str) -> Graph {
    let passes = compc::passes::Registry::with_builtin_passes()
        .parse(p)
        .unwrap();
    compc::passes::PassManager::new(passes).run(&mut g).unwrap();
    g
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for m in ["cnn", "encoder", "decoder"] {
        let p = root().join(format!("tests/fixtures/models/{m}.torchscript.onnx"));
        out.push(Case {
            name: m.into(),
            graph: compc::driver::load_model(&p).unwrap(),
            fixture: Some(m),
            peer_onnx: Some(p),
        });
    }
    let dec = out[2].graph.clone();
    out.push(Case {
        name: "decoder-int4".into(),
        graph: run_pipeline(dec, "quant{bits=4,method=rtn,group=32}"),
        fixture: Some("decoder"),
        peer_onnx: None,
    });
    out.push(Case {
        name: "int4-4096x4096-x8".into(),
        graph: int4_chain(&[4096; 9]),
        fixture: None,
        peer_onnx: None,
    });
    out.push(Case {
        name: "int4-11008x4096-x8".into(),
        graph: int4_chain(&[4096, 11008, 4096, 11008, 4096, 11008, 4096, 11008, 4096]),
        fixture: None,
        peer_onnx: None,
    });
    out
}

/// The batch-1 fixture inputs repeated to `batch` rows, or a random `x` for the chains.
fn inputs(case: &Case, batch: usize) -> Vec<(String, Tensor)> {
    let Some(model) = case.fixture else {
        let k = 4096;
        return vec![(
            "x".into(),
            Tensor::from_f32(vec![batch, k], uniform(99, batch * k, 1.0)),
        )];
    };
    fixture_inputs(model, batch)
}

fn compile_all(dir: &Path) {
    #[cfg(feature = "mlir")]
    for c in cases() {
        let d = dir.join(&c.name);
        std::fs::create_dir_all(&d).unwrap();
        let t = Instant::now();
        let chip = arg("--chip").unwrap_or_else(|| "sm_90".into());
        compc::native::compile_gpu(&c.graph, &d, &chip).unwrap();
        std::fs::remove_file(d.join("weights.bin")).unwrap();
        eprintln!("compiled {} in {:.1} s", c.name, t.elapsed().as_secs_f64());
    }
    #[cfg(not(feature = "mlir"))]
    {
        let _ = dir;
        panic!("--compile needs `--features mlir`");
    }
}

/// Median of `reps` timings after 3 warm-up calls.
fn median_ms(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..reps).map(|_| f()).collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn torch_ms(onnx: &Path, ins: &[(String, Tensor)], reps: usize) -> Option<f64> {
    let reps = reps.to_string();
    peer_ms(
        "torch_eager.py",
        onnx,
        ins,
        &["--device", "cuda", "--reps", &reps],
    )
}

/// Largest |a − b| over the largest |b| (the tests' tolerance measure).
fn rel_err(got: &[(String, Tensor)], want: &[(String, Tensor)]) -> f32 {
    got.iter()
        .zip(want)
        .map(|((_, g), (_, w))| {
            let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
            let scale = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
            g.iter()
                .zip(&w)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale
        })
        .fold(0f32, f32::max)
}

/// Bytes one run of an int4 chain must read: codes, scales and zero points of every
/// layer (activations are a few KB).
fn weight_bytes(manifest: &compc::runtime::native::manifest::Manifest) -> u64 {
    use compc::runtime::native::manifest::Binding;
    manifest
        .params
        .iter()
        .map(|p| match p.binding {
            Binding::Weights { len, .. } => len,
            _ => 0,
        })
        .sum()
}

fn run_all(dir: &Path, reps: usize) {
    use compc::runtime::native::gpu::{copy_bandwidth_gbs, GpuModel};
    let copy = copy_bandwidth_gbs(1 << 30, 10).unwrap();
    println!("device-to-device copy bandwidth (1 GiB, best of 10): {copy:.0} GB/s\n");
    println!("| model | batch | compc GPU ms | PyTorch eager ms | compc / PyTorch | kernels per run | max rel err vs interpreter |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut bandwidth = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    let only = arg("--only");
    let quick = std::env::args().any(|a| a == "--quick");
    for c in cases() {
        if only.as_deref().is_some_and(|o| !c.name.starts_with(o)) {
            continue;
        }
        let d = dir.join(&c.name);
        if !d.join("model.so").is_file() {
            eprintln!("{}: not compiled (run --compile first)", c.name);
            continue;
        }
        let prepared = compc::native::prepare(&c.graph).unwrap();
        let m = compc::mlir::emit::emit_module_with(&prepared, compc::mlir::emit::EmitOptions::GPU)
            .unwrap();
        compc::mlir::write_weights(&prepared, &m, &d.join("weights.bin")).unwrap();
        let model = GpuModel::load(&d).unwrap();
        let peer_onnx = (!quick).then(|| {
            c.peer_onnx.clone().unwrap_or_else(|| {
                let p = tmp.path().join(format!("{}.onnx", c.name));
                compc::onnx::export::export_file(&c.graph, &p, &Default::default()).unwrap();
                p
            })
        });
        for batch in [1usize, 8] {
            let ins = inputs(&c, batch);
            let dev = model.upload(&ins).unwrap();
            let got = model.download(&model.run_resident(&dev).unwrap()).unwrap();
            // `--quick` (kernel timings only, for comparing kernel variants) skips the
            // reference interpreter and the peer.
            let err = if quick {
                f32::NAN
            } else {
                rel_err(&got, &compc::runtime::run(&c.graph, &ins).unwrap())
            };
            let before = model.launches();
            model.run_resident(&dev).unwrap();
            let kernels = model.launches() - before;
            let ms = median_ms(reps, || {
                let t = Instant::now();
                model.run_resident(&dev).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            });
            let peer = peer_onnx.as_ref().and_then(|p| torch_ms(p, &ins, reps));
            let (ps, ratio) = match peer {
                Some(p) => (format!("{p:.3}"), format!("{:.2}×", ms / p)),
                None => ("—".into(), "—".into()),
            };
            println!(
                "| {} | {batch} | {ms:.3} | {ps} | {ratio} | {kernels} | {err:.1e} |",
                c.name
            );
            if c.fixture.is_none() {
                // Kernel time: 20 queued runs behind a 20 ms spin.
                let runs = 20;
                let (gpu_ms, _outs) = model
                    .gpu_ms(20.0, || {
                        (0..runs)
                            .map(|_| model.enqueue(&dev))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap();
                let per_run = gpu_ms / runs as f64;
                let bytes = weight_bytes(model.manifest()) as f64;
                let gbs = bytes / (per_run * 1e-3) / 1e9;
                bandwidth.push((c.name.clone(), batch, per_run, bytes, gbs));
            }
        }
    }
    println!("\n| int4 chain (8 layers) | batch | GPU ms per run | weight MB read | achieved GB/s | of copy bandwidth |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, batch, ms, bytes, gbs) in bandwidth {
        println!(
            "| {name} | {batch} | {ms:.4} | {:.1} | {gbs:.0} | {:.0}% |",
            bytes / 1e6,
            100.0 * gbs / copy
        );
    }
}

fn main() {
    if let Some(d) = arg("--compile") {
        compile_all(Path::new(&d));
        return;
    }
    let dir = arg("--run").unwrap_or_else(|| {
        eprintln!(
            "usage: native_gpu --compile DIR | --run DIR [--reps N] [--only PREFIX] [--quick]"
        );
        std::process::exit(2)
    });
    if !compc::runtime::native::gpu::available() {
        eprintln!("no NVIDIA driver on this machine: nothing to run");
        return;
    }
    let reps = arg("--reps").and_then(|r| r.parse().ok()).unwrap_or(50);
    run_all(Path::new(&dir), reps);
}

//! The MLIR GPU backend (`--target gpu`). Compiling needs no GPU, so what is written is
//! checked everywhere: PTX for the requested architecture with no libdevice calls, a
//! host library with the runtime's binding entry, a `gpu` manifest, and a clear error
//! when `compc run` meets it on a machine without an NVIDIA driver. Where a driver is
//! present, every fixture family (and int4/int8 MatMulNBits through the fused kernel)
//! runs on the GPU and must match compc's reference interpreter to 1e-3 of the largest
//! output magnitude; without one those checks are skipped and say so.

use crate::common::*;
use compc::runtime::native::gpu::{available, GpuModel};
use std::path::Path;
use std::process::Command;

fn compile_gpu(model: &Path, pipeline: Option<&str>, out: &Path, chip: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compc"));
    cmd.arg(model);
    if let Some(p) = pipeline {
        cmd.args(["-p", p]);
    }
    let o = cmd
        .args(["--target", "gpu", "--chip", chip, "-o"])
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "compc --target gpu failed: {stderr}");
    stderr
}

#[test]
fn target_gpu_writes_ptx_a_launcher_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    for (chip, model) in [("sm_90", "decoder"), ("sm_80", "cnn")] {
        let out = dir.path().join(format!("{model}-{chip}"));
        let stderr = compile_gpu(&model_path(model, "torchscript"), None, &out, chip);
        for f in [
            "model.so",
            "kernels.ptx",
            "weights.bin",
            "manifest.json",
            "model.onnx",
        ] {
            assert!(out.join(f).is_file(), "{model}: {f} missing");
        }
        let ptx = std::fs::read_to_string(out.join("kernels.ptx")).unwrap();
        let kernels = ptx.matches(".entry").count();
        assert!(kernels > 10, "{model}: only {kernels} kernels");
        assert!(
            ptx.contains(&format!(".target {chip}")),
            "{model}: not {chip}"
        );
        assert!(!ptx.contains("__nv_"), "{model}: a libdevice call is left");
        // The f32 matmuls (the decoder's projections, the CNN's classifier) go through
        // the shared-memory tiled kernel.
        assert!(
            ptx.contains(".entry compc_matmul_") && ptx.contains(".shared"),
            "{model}: no shared-memory matmul kernel"
        );
        assert!(
            stderr.contains(&format!("({kernels} PTX kernels)")),
            "{stderr}"
        );
        let manifest = compc::runtime::native::read_manifest(&out).unwrap();
        assert_eq!(manifest.target, "gpu");
        assert_eq!(manifest.chip.as_deref(), Some(chip));
        // The manifest lists every kernel of the PTX, with its launch arguments.
        assert_eq!(manifest.kernels.len(), kernels, "{model}: manifest kernels");
        for k in &manifest.kernels {
            assert!(
                ptx.contains(&format!(".entry {}(", k.name)),
                "{model}: {} not in the PTX",
                k.name
            );
            assert!(k.params > 0, "{model}: {} has no parameters", k.name);
        }
        let tiled = manifest
            .kernels
            .iter()
            .find(|k| k.name.starts_with("compc_matmul_"))
            .expect("a tiled matmul kernel");
        assert_eq!(tiled.shared_bytes, 4 * (16 * 65 + 16 * 64), "{model}");
        if !available() {
            assert!(stderr.contains("cannot run here"), "{stderr}");
        }
    }
}

#[test]
fn running_a_gpu_folder_without_a_driver_says_why() {
    if available() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn");
    compile_gpu(&model_path("cnn", "dynamo"), None, &out, "sm_90");
    let o = Command::new(env!("CARGO_BIN_EXE_compc"))
        .arg("run")
        .arg(&out)
        .arg("--inputs")
        .arg(inputs_path("cnn", "b1"))
        .arg("--output")
        .arg(dir.path().join("o.npz"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no NVIDIA driver"), "{e}");
    assert!(!dir.path().join("o.npz").exists());
    // A CPU folder asked to run on the GPU is refused before anything runs.
    let o = Command::new(env!("CARGO_BIN_EXE_compc"))
        .arg("run")
        .arg(&out)
        .args(["--device", "cpu", "--inputs"])
        .arg(inputs_path("cnn", "b1"))
        .arg("--output")
        .arg(dir.path().join("o.npz"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("compiled for `gpu`"),
        "{e}"
    );
}

#[test]
fn gpu_outputs_match_the_reference_runtime() {
    if !available() {
        eprintln!("skipped: no NVIDIA driver on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, compc::ir::Graph, &str)> = Vec::new();
    for model in MODELS {
        for exporter in EXPORTERS {
            let g = compc::driver::load_model(&model_path(model, exporter)).unwrap();
            cases.push((format!("{model}.{exporter}"), g, model));
        }
    }
    let dec = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    for p in [
        "quant{bits=4,method=rtn,group=32}",
        "quant{bits=8,method=rtn,group=32,format=nbits}",
    ] {
        cases.push((p.to_string(), run_pipeline(&dec, p, None), "decoder"));
    }
    for (i, (what, g, inputs_of)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("m{i}"));
        std::fs::create_dir_all(&out).unwrap();
        compc::native::compile_gpu(g, &out, "sm_90").unwrap();
        let model = GpuModel::load(&out).unwrap();
        for case in CASES {
            let inputs = read_npz(&inputs_path(inputs_of, case));
            let want = compc::runtime::run(g, &inputs).unwrap();
            let got = model.run(&inputs).unwrap();
            check_scaled(&format!("{what} {case}"), &got, &want, 1e-3);
        }
    }
}

/// x `[batch, 512]` → MatMul → … → `[batch, 256]` through widths 4352, 384 and 4480, then
/// int4 RTN in blocks of 32: every layer has whole 16-row tiles and 128-value super-steps,
/// so MatMulNBits takes the tensor-core kernels (`gpu_nbits_tc`). K = 384 gives a block
/// with fewer warps (3) than the batched kernel has outputs per thread; K = 4352 and 4480
/// (34 and 35 super-steps for 16 warps) take the one-row kernel's pipelined loop, where a
/// warp loads its next super-step (and its activations) before the arithmetic.
fn int4_tile_chain() -> compc::ir::Graph {
    use compc::ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
    let dims = [512u64, 4352, 384, 4480, 256];
    let ty = |k: u64| {
        TensorType::new(
            DType::F32,
            Shape::Ranked(vec![Dim::Sym("batch".into()), Dim::Known(k)]),
        )
    };
    let mut g = Graph::new("int4_tile_chain");
    let mut x = ValueRef::new(g.add_input("x", ty(dims[0])), 0);
    let mut uniform = uniform(7);
    for (i, w) in dims.windows(2).enumerate() {
        let (k, n) = (w[0], w[1]);
        let a = 1.0 / (k as f64).sqrt();
        let v: Vec<f32> = (0..k * n)
            .map(|_| ((uniform() * 2.0 - 1.0) * a) as f32)
            .collect();
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
    run_pipeline(&g, "quant{bits=4,method=rtn,group=32}", None)
}

#[test]
fn int4_tile_layout_kernels_are_emitted_and_match_the_interpreter() {
    let g = int4_tile_chain();
    let dir = tempfile::tempdir().unwrap();
    compc::native::compile_gpu(&g, dir.path(), "sm_90").unwrap();
    let ptx = std::fs::read_to_string(dir.path().join("kernels.ptx")).unwrap();
    // Each layer: a batched and a one-row kernel, on tensor cores, waiting on the layer
    // before with programmatic dependent launch.
    let tc = ptx.matches(".entry compc_gridwait_nbits4tc_").count();
    assert_eq!(tc, 8, "tensor-core MatMulNBits kernels");
    assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"));
    assert!(ptx.contains("griddepcontrol.wait"));
    let manifest = compc::runtime::native::read_manifest(dir.path()).unwrap();
    let tiles = manifest
        .params
        .iter()
        .filter(|p| p.tensor.name.ends_with(".tile_codes"))
        .count();
    assert_eq!(tiles, 4, "every layer's codes in the tile layout");
    if !available() {
        eprintln!("skipped running: no NVIDIA driver on this machine");
        return;
    }
    let model = GpuModel::load(dir.path()).unwrap();
    let mut uniform = uniform(11);
    // 1 and 3 rows take the one-row kernel, 8 the batched one, 11 both.
    for batch in [1usize, 3, 8, 11] {
        let x: Vec<f32> = (0..batch * 512)
            .map(|_| (uniform() * 2.0 - 1.0) as f32)
            .collect();
        let inputs = vec![(
            "x".to_string(),
            compc::runtime::Tensor::from_f32(vec![batch, 512], x),
        )];
        let want = compc::runtime::run(&g, &inputs).unwrap();
        let got = model.run(&inputs).unwrap();
        // The activations keep about 22 bits (two f16 parts) and the products are exact,
        // so the kernels agree with the interpreter far inside the fixtures' 1e-3.
        check_scaled(
            &format!("int4 tile chain, batch {batch}"),
            &got,
            &want,
            1e-5,
        );
    }
}

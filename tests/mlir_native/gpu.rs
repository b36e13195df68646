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

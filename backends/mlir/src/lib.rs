//! compc's MLIR backend. [`emit`] turns an IR graph into `linalg`/`tensor` MLIR text (pure
//! Rust, always available); with the cargo feature `mlir`, `compile` lowers that text
//! through melior to native code, JIT-compiled in process or written as a shared library
//! plus `manifest.json` and `weights.bin` that `compc run` executes through
//! `compc_runtime::native`.

pub mod block_cache;
#[cfg(feature = "mlir")]
pub mod compile;
pub mod emit;
pub mod gpu;
pub mod pipeline;
pub mod schedule;
pub mod split;
pub mod support;

use compc_ir::Graph;
use compc_runtime::native::manifest::{
    Binding, DimSpec, Manifest, ParamSpec, TensorSpec, FORMAT_VERSION,
};
use emit::{MlirModule, ParamSource};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Emit(#[from] emit::EmitError),
    #[error("MLIR: {0}")]
    Mlir(String),
    #[error("linking the compiled model: {0}")]
    Link(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error(
        "this compc was built without the `mlir` feature, so it cannot compile to native code \
         (build with `cargo build --release --features mlir` after `scripts/install-mlir`, \
         which installs Debian's LLVM/MLIR 22 packages); `--emit-mlir` works without it"
    )]
    FeatureOff,
}

/// Whether this build can compile MLIR to native code.
pub const NATIVE_AVAILABLE: bool = cfg!(feature = "mlir");

fn spec(
    name: &str,
    dtype: compc_ir::DType,
    dims: &[compc_ir::Dim],
) -> Result<TensorSpec, BackendError> {
    let dims = dims
        .iter()
        .map(|d| {
            DimSpec::from_dim(d).ok_or_else(|| {
                BackendError::Mlir(format!(
                    "`{name}` has an unknown dim; the compiled model needs named or static dims"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorSpec {
        name: name.to_string(),
        dtype: dtype.name().to_string(),
        dims,
    })
}

/// The manifest of an emitted module; weights are laid out 64-byte aligned in argument
/// order (the layout [`write_weights`] writes).
pub fn manifest_for(
    m: &MlirModule,
    target: &str,
    library: &str,
    entry: &str,
) -> Result<Manifest, BackendError> {
    let mut params = Vec::new();
    let mut inputs = Vec::new();
    let mut offset = 0u64;
    for p in &m.params {
        let tensor = spec(&p.name, p.dtype, &p.dims)?;
        let binding = match &p.source {
            ParamSource::Input(i) => {
                inputs.push(p.name.clone());
                Binding::Input { index: *i }
            }
            ParamSource::Weight(_) | ParamSource::Prepared(_) => {
                let numel: u64 = p.dims.iter().map(|d| d.known().unwrap_or(0)).product();
                let len = p.dtype.storage_bytes(numel).unwrap_or(0);
                let b = Binding::Weights { offset, len };
                offset = (offset + len).div_ceil(64) * 64;
                b
            }
        };
        params.push(ParamSpec { tensor, binding });
    }
    let outputs = m
        .outputs
        .iter()
        .map(|o| spec(&o.name, o.dtype, &o.dims))
        .collect::<Result<_, _>>()?;
    Ok(Manifest {
        format: FORMAT_VERSION,
        target: target.to_string(),
        library: library.to_string(),
        entry: entry.to_string(),
        weights_file: "weights.bin".to_string(),
        params,
        outputs,
        inputs,
        chip: None,
        kernels: Vec::new(),
        split_batch: None,
    })
}

/// Writes every weight argument into `path`, 64-byte aligned, in argument order.
pub fn write_weights(g: &Graph, m: &MlirModule, path: &Path) -> Result<(), BackendError> {
    let io = |e: std::io::Error| BackendError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut offset = 0u64;
    for p in &m.params {
        let bytes: &[u8] = match &p.source {
            ParamSource::Input(_) => continue,
            ParamSource::Weight(id) => {
                let w = g.weights.get(*id);
                w.bytes()
                    .map_err(|e| BackendError::Weights(format!("{}: {e}", w.name)))?
            }
            ParamSource::Prepared(b) => b,
        };
        f.write_all(bytes).map_err(io)?;
        offset += bytes.len() as u64;
        let pad = offset.div_ceil(64) * 64 - offset;
        f.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        offset += pad;
    }
    f.flush().map_err(io)
}

/// Writes what every compiled folder holds besides the library: `weights.bin`,
/// `manifest.json` and `model.mlir` (the emitted module, for reference).
#[cfg_attr(not(feature = "mlir"), allow(dead_code))]
fn write_model_files(
    g: &Graph,
    m: &MlirModule,
    manifest: &Manifest,
    dir: &Path,
) -> Result<(), BackendError> {
    let io = |p: &Path, e: std::io::Error| BackendError::Io {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    write_weights(g, m, &dir.join("weights.bin"))?;
    let text = serde_json::to_string_pretty(manifest).expect("manifest serializes");
    let mp = dir.join(compc_runtime::native::manifest::MANIFEST_FILE);
    std::fs::write(&mp, text).map_err(|e| io(&mp, e))?;
    let tp = dir.join("model.mlir");
    std::fs::write(&tp, &m.text).map_err(|e| io(&tp, e))
}

/// Compiles `g` for the CPU into `dir`: `model.so`, `weights.bin`, `manifest.json`,
/// `model.mlir` (the emitted module, for reference).
pub fn compile_cpu(g: &Graph, dir: &Path) -> Result<Manifest, BackendError> {
    let m = emit::emit_module(g)?;
    compile_module_cpu(g, &m, dir)
}

pub fn compile_module_cpu(g: &Graph, m: &MlirModule, dir: &Path) -> Result<Manifest, BackendError> {
    #[cfg(feature = "mlir")]
    {
        compile::write_shared_library(m, dir, 3)?;
        let mut manifest = manifest_for(m, "cpu", "model.so", compile::PACKED_ENTRY)?;
        manifest.split_batch = split::split_batch_symbol(g);
        write_model_files(g, m, &manifest, dir)?;
        Ok(manifest)
    }
    #[cfg(not(feature = "mlir"))]
    {
        let _ = (g, m, dir);
        Err(BackendError::FeatureOff)
    }
}

/// Compiles `g` for an NVIDIA GPU of architecture `chip` (`sm_90`, `sm_80`) into `dir`:
/// `model.so` (host code that launches the kernels), `kernels.ptx`, `weights.bin`,
/// `manifest.json` (target `gpu`), `model.mlir`. Needs no GPU; running does.
pub fn compile_gpu(g: &Graph, dir: &Path, chip: &str) -> Result<Manifest, BackendError> {
    let m = emit::emit_module_with(g, emit::EmitOptions::gpu(chip))?;
    #[cfg(feature = "mlir")]
    {
        let ptx = gpu::compile::write_gpu_library(&m, dir, chip)?;
        let mut manifest = manifest_for(&m, "gpu", "model.so", compile::PACKED_ENTRY)?;
        manifest.chip = Some(chip.to_string());
        manifest.kernels = ptx
            .iter()
            .flat_map(|(module, text)| gpu::ptx_summary::kernels(module, text))
            .collect();
        write_model_files(g, &m, &manifest, dir)?;
        Ok(manifest)
    }
    #[cfg(not(feature = "mlir"))]
    {
        let _ = (g, m, dir, chip);
        Err(BackendError::FeatureOff)
    }
}

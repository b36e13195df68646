//! What `compc MODEL -p PIPELINE -o OUT` does, as library functions.

use crate::outdir::StagedDir;
use anyhow::{bail, Context, Result};
use compc_ir::Graph;
use compc_passes::{CalibData, Ledger, PassManager, Registry};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Loads a model: `.cir` text or ONNX (anything else is tried as ONNX).
pub fn load_model(path: &Path) -> Result<Graph> {
    if !path.exists() {
        bail!("model {} does not exist", path.display());
    }
    if path.is_dir() {
        let inner = path.join("model.onnx");
        if inner.is_file() {
            return load_model(&inner);
        }
        bail!("{} is a folder without a model.onnx", path.display());
    }
    if path.extension().is_some_and(|e| e == "cir") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return compc_ir::text::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()));
    }
    compc_frontend_onnx::import_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads a model that passes and backends will transform: one without graph outputs is
/// refused. ONNX and onnxruntime accept such a graph, but nothing in it is used, so
/// dead-code elimination would write an empty model (and the MLIR emitter an empty
/// function) and call it a success.
pub fn load_model_to_transform(path: &Path) -> Result<Graph> {
    let g = load_model(path)?;
    if g.outputs.is_empty() {
        bail!(
            "{}: the model declares no graph outputs, so every node is dead and would be \
             removed; declare the outputs to keep",
            path.display()
        );
    }
    Ok(g)
}

pub struct CompileOptions {
    pub model: PathBuf,
    pub pipeline: Option<String>,
    pub out: PathBuf,
    pub calib: Option<PathBuf>,
    pub print_ir_after_all: bool,
    pub force: bool,
    pub seed: u64,
    pub progress: bool,
    /// Write every weight of 1 KiB or more to `model.data` beside `model.onnx` (otherwise
    /// only models too big for one protobuf file use external data).
    pub external_data: bool,
    /// Also compile to native code in the output folder (`--target cpu|gpu`).
    pub target: Target,
    /// The NVIDIA architecture `--target gpu` generates PTX for (`sm_90`, `sm_80`).
    pub chip: String,
}

/// What `-o OUT` holds besides `model.onnx` and the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Only the ONNX model.
    #[default]
    Onnx,
    /// Also `model.so` + `weights.bin` + `manifest.json` from the MLIR CPU backend.
    Cpu,
    /// Also PTX kernels (`kernels.ptx`) and the host library that launches them
    /// (`model.so`), `weights.bin` and `manifest.json`, from the MLIR GPU backend.
    Gpu,
}

pub struct CompileSummary {
    pub out: PathBuf,
    pub ledger: Ledger,
    /// For `--target cpu|gpu`.
    pub native: Option<NativeSummary>,
}

/// Loads, transforms and writes `out/model.onnx`, `out/report.md`, `out/report.json`.
/// Everything that can fail on the user's input fails before the output folder appears.
pub fn compile(opts: &CompileOptions, registry: &Registry) -> Result<CompileSummary> {
    // Check the pipeline first: a typo should not cost a model load.
    let pipeline_text = opts.pipeline.clone().unwrap_or_default();
    let passes = if pipeline_text.trim().is_empty() {
        Vec::new()
    } else {
        registry.parse(&pipeline_text).map_err(anyhow::Error::msg)?
    };
    let model_abs = std::fs::canonicalize(&opts.model)
        .with_context(|| format!("model {} does not exist", opts.model.display()))?;
    if let Ok(out_abs) = std::fs::canonicalize(&opts.out) {
        if model_abs.starts_with(&out_abs) {
            bail!(
                "output folder {} contains the input model; choose another output folder",
                opts.out.display()
            );
        }
    }
    let staged = StagedDir::new(&opts.out, opts.force)?;
    let mut g = load_model_to_transform(&opts.model)?;
    let calib = match &opts.calib {
        Some(p) => Some(CalibData {
            tensors: compc_runtime::npz::read_npz(p)
                .map_err(|e| anyhow::anyhow!("calibration data {}: {e}", p.display()))?,
        }),
        None => None,
    };
    let mut pm = PassManager::new(passes);
    pm.calib = calib.as_ref();
    pm.seed = opts.seed;
    pm.progress = opts.progress;
    if opts.print_ir_after_all {
        pm.print_ir_after_all = Some(Box::new(std::io::stderr()));
    }
    let mut ledger = pm.run(&mut g)?;
    ledger.model = opts.model.display().to_string();
    ledger.pipeline = pipeline_text;

    let model_path = staged.path().join("model.onnx");
    let export = compc_backend_onnx::ExportOptions {
        external_data: if opts.external_data {
            compc_backend_onnx::ExternalData::Always
        } else {
            compc_backend_onnx::ExternalData::Auto
        },
        ..Default::default()
    };
    compc_backend_onnx::export_file(&g, &model_path, &export)
        .map_err(|e| anyhow::anyhow!("cannot write the ONNX model: {e}"))?;
    let native = match opts.target {
        Target::Onnx => None,
        Target::Cpu => Some(NativeSummary::of(
            "cpu",
            crate::native::compile_cpu(&g, staged.path())
                .context("compiling for the CPU (--target cpu)")?,
            staged.path(),
        )),
        Target::Gpu => Some(NativeSummary::of(
            "gpu",
            crate::native::compile_gpu(&g, staged.path(), &opts.chip)
                .context("compiling for the GPU (--target gpu)")?,
            staged.path(),
        )),
    };
    let mut json = serde_json::to_value(&ledger)?;
    let mut markdown = ledger.to_markdown();
    if let Some(n) = &native {
        json["native"] = serde_json::to_value(n)?;
        markdown.push_str(&n.to_markdown());
    }
    write_file(
        &staged.path().join("report.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    write_file(&staged.path().join("report.md"), markdown.as_bytes())?;
    let out = staged.commit()?;
    Ok(CompileSummary {
        out,
        ledger,
        native,
    })
}

/// What `--target cpu|gpu` wrote and what it rewrote to get there, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NativeSummary {
    pub target: &'static str,
    /// The compiled files and their sizes in bytes.
    pub files: std::collections::BTreeMap<String, u64>,
    pub rewrites: crate::native::Lowered,
}

impl NativeSummary {
    fn of(target: &'static str, rewrites: crate::native::Lowered, dir: &Path) -> NativeSummary {
        let files = ["model.so", "kernels.ptx", "weights.bin", "manifest.json"]
            .iter()
            .filter_map(|f| {
                let len = std::fs::metadata(dir.join(f)).ok()?.len();
                Some((f.to_string(), len))
            })
            .collect();
        NativeSummary {
            target,
            files,
            rewrites,
        }
    }

    /// The report's section: the files, then what lowering rewrote.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("\n## Native code (`--target {}`)\n\n", self.target);
        for (f, len) in &self.files {
            s.push_str(&format!("- `{f}`: {len} bytes\n"));
        }
        for line in self.rewrites.lines() {
            s.push_str(&format!("- {line}\n"));
        }
        s
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

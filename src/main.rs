//! The `compc` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use compc::driver::{compile, load_model, load_model_to_transform, CompileOptions};
use compc::passes::{Exactness, Registry};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// compc compresses a trained model: `compc model.onnx -p quant,prune -o out`.
#[derive(Parser)]
#[command(name = "compc", version, args_conflicts_with_subcommands = true)]
#[command(about = "A compiler and IR for neural-network compression")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    compile: CompileArgs,
}

#[derive(Args)]
struct CompileArgs {
    /// The model to compress (.onnx, or .cir text)
    model: Option<PathBuf>,
    /// Passes to run: `name{key=value,...},name2` (see `compc passes`)
    #[arg(short = 'p', long = "passes", value_name = "PIPELINE")]
    pipeline: Option<String>,
    /// Output folder: gets model.onnx, report.md and report.json
    #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
    out: Option<PathBuf>,
    /// Calibration data (.npz: one array per model input, first axis = samples)
    #[arg(long, value_name = "CALIB.npz")]
    calib: Option<PathBuf>,
    /// Print the IR after every pass to stderr
    #[arg(long)]
    print_ir_after_all: bool,
    /// Replace OUTDIR if it exists and is not empty
    #[arg(long)]
    force: bool,
    /// Seed for every random choice a pass makes
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write weights to model.data beside model.onnx (automatic above 2 GB)
    #[arg(long)]
    external_data: bool,
    /// Also compile the result to native code in OUTDIR (`cpu`: model.so, weights.bin,
    /// manifest.json, model.mlir; `gpu`: the same with PTX kernels in kernels.ptx and a
    /// model.so that launches them; run either with `compc run OUTDIR`).
    #[arg(long, value_enum, default_value = "onnx")]
    target: compc::driver::Target,
    /// NVIDIA architecture for `--target gpu` (sm_90 for H100, sm_80 for A100)
    #[arg(long, default_value = "sm_90", value_parser = parse_chip)]
    chip: String,
    /// Print the MLIR (linalg/tensor) the result lowers to, instead of writing OUTDIR.
    #[arg(long)]
    emit_mlir: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model (.onnx or .cir) in compc's text format
    Print {
        file: PathBuf,
        /// Also list the idioms found (linear layers, norms, attention, MLPs, residuals)
        #[arg(long)]
        idioms: bool,
    },
    /// List the passes with their options
    Passes,
    /// Run a model with compc's reference runtime
    Run {
        /// A model (.onnx/.cir) or an output folder of compc
        model: PathBuf,
        /// Inputs (.npz, one array per model input)
        #[arg(long, value_name = "IN.npz")]
        inputs: PathBuf,
        /// Where to write the outputs (.npz)
        #[arg(long, value_name = "OUT.npz")]
        output: PathBuf,
        /// Where a compiled folder runs: as compiled (auto), or insist on cpu or gpu
        #[arg(long, value_enum, default_value = "auto")]
        device: Device,
        /// CPU threads for a compiled CPU model whose samples are independent (its
        /// manifest has `split_batch`): the samples of a batch run side by side. Other
        /// models run on one thread. Default: every core.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Compare a transformed model with the original: fidelity, perplexity, size, FLOPs
    Eval {
        original: PathBuf,
        transformed: PathBuf,
        /// Model inputs (.npz) or held-out text (.txt, for byte-level LMs)
        #[arg(long, value_name = "EVAL")]
        data: PathBuf,
        /// Window length in bytes for text data
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        /// Windows per batch for text data
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Evaluate at most this many windows of text
        #[arg(long)]
        max_windows: Option<usize>,
        /// Also write the report as JSON here
        #[arg(long, value_name = "FILE.json")]
        json: Option<PathBuf>,
    },
    /// Build calibration data for a byte-level LM from text (seeded random windows)
    MakeCalib {
        text: PathBuf,
        #[arg(short = 'o', long = "out", value_name = "CALIB.npz")]
        out: PathBuf,
        /// Number of sequences
        #[arg(long, default_value_t = 128)]
        samples: usize,
        /// Bytes per sequence
        #[arg(long, default_value_t = 128)]
        seq_len: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Name of the model input the array is for
        #[arg(long, default_value = "input_ids")]
        input: String,
    },
    /// Run the ONNX backend node test cases with compc's runtime and print the summary
    Conformance(compc::conformance::CliArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the whole chain of causes, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let registry = Registry::with_builtin_passes();
    match cli.command {
        Some(Command::Print { file, idioms }) => {
            let g = load_model(&file)?;
            print!("{}", compc::ir::text::print(&g));
            if idioms {
                let found = compc::passes::idioms::Idioms::find(&g)?;
                print!("{}", found.describe(&g));
            }
            Ok(())
        }
        Some(Command::Passes) => {
            print!("{}", list_passes(&registry));
            Ok(())
        }
        Some(Command::Run {
            model,
            inputs,
            output,
            device,
            threads,
        }) => run_model(&model, &inputs, &output, device, threads),
        Some(Command::Eval {
            original,
            transformed,
            data,
            seq_len,
            batch,
            max_windows,
            json,
        }) => {
            let a = load_model(&original)?;
            let b = load_model(&transformed)?;
            let data = compc::eval::EvalData::load(&data, seq_len, batch, max_windows)?;
            let report = compc::eval::evaluate(&a, &b, &data)?;
            print!("{}", report.to_table());
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        Some(Command::MakeCalib {
            text,
            out,
            samples,
            seq_len,
            seed,
            input,
        }) => {
            compc::calib::write_text_calib(&text, &out, &input, samples, seq_len, seed)?;
            eprintln!(
                "wrote {}: {samples} sequences of {seq_len} bytes (seed {seed})",
                out.display()
            );
            Ok(())
        }
        Some(Command::Conformance(args)) => compc::conformance::cli(&args),
        None => {
            let a = cli.compile;
            let model = a.model.context(
                "no model given (usage: compc MODEL [-p PIPELINE] -o OUTDIR; see --help)",
            )?;
            if a.emit_mlir {
                return emit_mlir(&model, a.pipeline.as_deref(), a.calib.as_deref(), &registry);
            }
            let out = a.out.context("no output folder given: add -o OUTDIR")?;
            let summary = compile(
                &CompileOptions {
                    model,
                    pipeline: a.pipeline,
                    out,
                    calib: a.calib,
                    print_ir_after_all: a.print_ir_after_all,
                    force: a.force,
                    seed: a.seed,
                    progress: std::io::stderr().is_terminal(),
                    external_data: a.external_data,
                    target: a.target,
                    chip: a.chip.clone(),
                },
                &registry,
            )?;
            if let Some(n) = &summary.native {
                let files: Vec<String> = n
                    .files
                    .iter()
                    .filter(|(f, _)| f.as_str() != "manifest.json")
                    .map(|(f, len)| format!("{f} {len} bytes"))
                    .collect();
                eprintln!("compiled for {}: {}", n.target, files.join(", "));
                for line in n.rewrites.lines() {
                    eprintln!("  {line}");
                }
            }
            if a.target == compc::driver::Target::Gpu {
                report_gpu_output(&summary.out);
            }
            let (i, o) = (&summary.ledger.input, &summary.ledger.output);
            eprintln!(
                "wrote {}: {} nodes, {} parameters, {} weight bytes (input: {} nodes, {} parameters, {} bytes)",
                summary.out.display(),
                o.nodes,
                o.parameters,
                o.weight_bytes,
                i.nodes,
                i.parameters,
                i.weight_bytes
            );
            Ok(())
        }
    }
}

fn list_passes(registry: &Registry) -> String {
    let mut s = String::new();
    for d in registry.descriptors() {
        let kind = match d.exactness {
            Exactness::Exact => "exact",
            Exactness::Lossy => "lossy",
        };
        s.push_str(&format!("{:<14} {:<6} {}\n", d.name, kind, d.summary));
        for o in d.options {
            s.push_str(&format!(
                "{:<21} {o}\n                      {}\n",
                "", o.help
            ));
        }
    }
    s
}

/// `compc MODEL [-p PIPELINE] --emit-mlir`: the pipeline's result as MLIR on stdout.
fn emit_mlir(
    model: &std::path::Path,
    pipeline: Option<&str>,
    calib: Option<&std::path::Path>,
    registry: &Registry,
) -> Result<()> {
    let mut g = load_model_to_transform(model)?;
    if let Some(p) = pipeline.filter(|p| !p.trim().is_empty()) {
        let passes = registry.parse(p).map_err(anyhow::Error::msg)?;
        let calib = match calib {
            Some(c) => Some(compc::passes::CalibData {
                tensors: compc::runtime::npz::read_npz(c)
                    .map_err(|e| anyhow::anyhow!("calibration data {}: {e}", c.display()))?,
            }),
            None => None,
        };
        let mut pm = compc::passes::PassManager::new(passes);
        pm.calib = calib.as_ref();
        pm.run(&mut g)?;
    }
    let m = compc::native::emit_mlir(&g)?;
    print!("{}", m.text);
    Ok(())
}

/// `compc run`: a compiled folder (manifest.json) runs natively; a model file runs in the
/// reference interpreter.
fn run_model(
    model: &std::path::Path,
    inputs: &std::path::Path,
    output: &std::path::Path,
    device: Device,
    threads: Option<usize>,
) -> Result<()> {
    use compc::runtime::native;
    let ins = compc::runtime::npz::read_npz(inputs)
        .map_err(|e| anyhow::anyhow!("inputs {}: {e}", inputs.display()))?;
    let manifest = model.join(native::manifest::MANIFEST_FILE);
    let outs = if model.is_dir() && manifest.is_file() {
        let target = native::read_manifest(model)?.target;
        match (device, target.as_str()) {
            (Device::Auto | Device::Gpu, "gpu") => native::gpu::GpuModel::load(model)?.run(&ins)?,
            (Device::Auto | Device::Cpu, "cpu") => {
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                native::NativeModel::load(model)?
                    .with_threads(threads)?
                    .run(&ins)?
            }
            (want, have) => anyhow::bail!(
                "{} is compiled for `{have}`, not `{}`: recompile it with `--target {}`",
                model.display(),
                want.name(),
                want.name()
            ),
        }
    } else {
        if device == Device::Gpu {
            anyhow::bail!(
                "`--device gpu` runs folders compiled with `--target gpu`; {} is a model file",
                model.display()
            );
        }
        let g = load_model(model)?;
        compc::runtime::run(&g, &ins).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    compc::runtime::npz::write_npz(output, &outs)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    Ok(())
}

/// Where `compc run` executes a compiled folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Device {
    Auto,
    Cpu,
    Gpu,
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

fn parse_chip(s: &str) -> std::result::Result<String, String> {
    let ok = s
        .strip_prefix("sm_")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (50..=120).contains(&n));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not an NVIDIA architecture like sm_90 or sm_80"
        ))
    }
}

/// After `--target gpu`: what was written, and whether this machine can run it.
fn report_gpu_output(out: &std::path::Path) {
    let ptx = out.join("kernels.ptx");
    let kernels = std::fs::read_to_string(&ptx)
        .map(|t| t.matches(".entry").count())
        .unwrap_or(0);
    eprintln!("wrote {} ({kernels} PTX kernels)", ptx.display());
    if !compc::runtime::native::gpu::available() {
        eprintln!(
            "note: this machine has no NVIDIA driver, so the GPU model cannot run here; \
             run it with `compc run {} --inputs IN.npz --output OUT.npz` on a machine with one",
            out.display()
        );
    }
}

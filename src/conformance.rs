//! The ONNX backend node test suite as a conformance check: every case folder
//! (`model.onnx` plus `test_data_set_*/input_*.pb` and `output_*.pb`) is imported, run with
//! compc's reference runtime and compared with the expected outputs.
//!
//! The comparison rule is the one `tests/conformance/ort_count.py` applies to onnxruntime,
//! so the two pass counts are comparable: element types and shapes must match exactly;
//! floats must agree in where they are NaN or infinite (with the infinity's sign) and
//! elsewhere within `|e - g| <= 1e-5 + 1e-3 |e|`; integers, bools and strings exactly.

use compc_frontend_onnx as onnx_import;
use compc_frontend_onnx::testdata::DataValue;
use compc_frontend_onnx::ValueKind;
use compc_ir::DType;
use compc_runtime::{Sequence, StrTensor, Tensor, TensorData, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where Debian's `libonnx-testdata` puts the node cases.
pub const DEFAULT_DIR: &str = "/usr/share/libonnx-testdata/data/node";

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

/// How one case went.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    /// compc cannot express the model or its data (an unknown op, a type it lacks): a
    /// clear refusal, never a wrong answer.
    Unsupported(String),
    /// Import or run failed for another reason.
    Error(String),
    /// It ran but an output differs from the expected one.
    Mismatch(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    fn from_error(msg: String) -> Outcome {
        if is_unsupported(&msg) {
            Outcome::Unsupported(msg)
        } else {
            Outcome::Error(msg)
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Unsupported(_) => "unsupported",
            Outcome::Error(_) => "error",
            Outcome::Mismatch(_) => "mismatch",
        }
    }

    fn message(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Unsupported(m) | Outcome::Error(m) | Outcome::Mismatch(m) => m,
        }
    }
}

/// Errors that mean "compc has no way to express this" rather than a bug.
fn is_unsupported(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("unsupported") || m.contains("not supported") || m.contains("cannot be computed")
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case folder's name (`test_abs`).
    pub name: String,
    /// The ONNX op the case tests, for grouping.
    pub op: String,
    pub outcome: Outcome,
}

/// The results of a whole suite, in case-name order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<CaseResult>,
}

impl Report {
    pub fn total(&self) -> usize {
        self.results.len()
    }

    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome.passed()).count()
    }

    /// Names of the failing cases, sorted.
    pub fn failing(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| !r.outcome.passed())
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The failing cases as `known_failures.txt` lists them: `name  # Op: first error line`,
    /// or the reason `previous` (an earlier list) gives for that case.
    pub fn failure_list(&self, previous: &str) -> String {
        let mut reasons: BTreeMap<&str, &str> = BTreeMap::new();
        for line in previous.lines() {
            if let Some((name, why)) = line.split_once('#') {
                let name = name.trim();
                if !name.is_empty() {
                    reasons.insert(name, why.trim());
                }
            }
        }
        let mut s = String::from(
            "# ONNX backend node test cases that compc does not pass, one a line:\n\
             # `case  # op: why`. tests/conformance.rs fails when a case not listed here fails,\n\
             # and when a listed case passes (take it off the list then). Regenerate with\n\
             # `compc conformance --write-failures tests/conformance/known_failures.txt`.\n",
        );
        for r in self.results.iter().filter(|r| !r.outcome.passed()) {
            if let Some(why) = reasons.get(r.name.as_str()) {
                let _ = writeln!(s, "{}  # {why}", r.name);
                continue;
            }
            let msg = r.outcome.message().lines().next().unwrap_or("");
            let msg: String = msg.chars().take(100).collect();
            let _ = writeln!(s, "{}  # {}: {} {msg}", r.name, r.op, r.outcome.label());
        }
        s
    }

    /// `passed/total`, then the failing cases grouped by op with their first error line.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "compc: {}/{} passed", self.passed(), self.total());
        let mut by_op: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
        for r in self.results.iter().filter(|r| !r.outcome.passed()) {
            by_op.entry(r.op.as_str()).or_default().push(r);
        }
        if !by_op.is_empty() {
            let _ = writeln!(s, "failing cases by op:");
        }
        for (op, cases) in by_op {
            let _ = writeln!(s, "  {op} ({})", cases.len());
            for r in cases {
                let msg = r.outcome.message().lines().next().unwrap_or("");
                let msg: String = msg.chars().take(160).collect();
                let _ = writeln!(s, "    {} [{}] {msg}", r.name, r.outcome.label());
            }
        }
        s
    }
}

/// The case folders under `dir` (those holding a `model.onnx`), sorted by name.
pub fn find_cases(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    Ok(cases)
}

/// Runs every case under `dir` on `threads` worker threads.
pub fn run_dir(dir: &Path, threads: usize) -> std::io::Result<Report> {
    let cases = find_cases(dir)?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; cases.len()]);
    // A kernel that panics is a bug the report should name, not a crash of the whole
    // run: panics are caught per case, and their default message is silenced meanwhile.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let r = run_case(case);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    std::panic::set_hook(hook);
    let results = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    Ok(Report { results })
}

/// Runs one case folder.
pub fn run_case(dir: &Path) -> CaseResult {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case_outcome(dir)))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome::Error(format!("panic: {msg}"))
        });
    let op = tested_op(&name, dir);
    CaseResult { name, op, outcome }
}

fn case_outcome(dir: &Path) -> Outcome {
    let model = dir.join("model.onnx");
    let g = match onnx_import::import_file(&model) {
        Ok(g) => g,
        Err(e) => return Outcome::from_error(format!("import: {e}")),
    };
    let kinds = std::fs::read(&model)
        .map_err(|e| e.to_string())
        .and_then(|b| onnx_import::testdata::io_kinds(&b).map_err(|e| e.to_string()));
    let (in_kinds, out_kinds) = match kinds {
        Ok(k) => k,
        Err(e) => return Outcome::Error(format!("import: {e}")),
    };
    let input_types: Vec<(String, Option<DType>)> = g
        .inputs()
        .iter()
        .map(|&id| {
            let n = g.node(id);
            (n.name.clone(), n.outputs.first().map(|t| t.dtype))
        })
        .collect();
    let mut sets: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
            })
            .collect(),
        Err(e) => return Outcome::Error(format!("cannot list {}: {e}", dir.display())),
    };
    sets.sort();
    for set in &sets {
        let mut inputs = Vec::new();
        for (i, (name, kind)) in in_kinds.iter().enumerate() {
            let p = set.join(format!("input_{i}.pb"));
            if !p.exists() {
                continue;
            }
            let dtype = input_types
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, d)| *d);
            match read_value(&p, kind) {
                Ok(Value::Tensor(t)) if dtype == Some(DType::BF16) => {
                    inputs.push((name.clone(), Value::Tensor(bits_to_bf16(t))))
                }
                Ok(v) => inputs.push((name.clone(), v)),
                Err(e) => return Outcome::from_error(e),
            }
        }
        let got = match compc_runtime::run_values(&g, &inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::from_error(format!("run: {e}")),
        };
        for (i, (oname, v)) in got.iter().enumerate() {
            let p = set.join(format!("output_{i}.pb"));
            if !p.exists() {
                continue;
            }
            let kind = out_kinds
                .get(i)
                .map_or(ValueKind::Tensor, |(_, k)| k.clone());
            let want = match read_value(&p, &kind) {
                Ok(t) => t,
                Err(e) => return Outcome::from_error(e),
            };
            if let Err(why) = compare_values(&want, v) {
                return Outcome::Mismatch(format!("output `{oname}`: {why}"));
            }
        }
    }
    Outcome::Pass
}

fn read_value(p: &Path, kind: &ValueKind) -> Result<Value, String> {
    // Named from the case folder on: the messages go into known_failures.txt.
    let short: Vec<_> = p.iter().rev().take(2).collect();
    let short = short
        .iter()
        .rev()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let what = |e: String| format!("{short}: {e}");
    let bytes = std::fs::read(p).map_err(|e| what(e.to_string()))?;
    let d = onnx_import::testdata::read_value(&bytes, kind).map_err(|e| what(e.to_string()))?;
    to_value(d).map_err(what)
}

fn to_value(d: DataValue) -> Result<Value, String> {
    Ok(match d {
        DataValue::Tensor(w) => Value::Tensor(Tensor::from_weight(&w).map_err(|e| e.to_string())?),
        DataValue::Strings { dims, values } => Value::Strings(StrTensor {
            shape: dims.into_iter().map(|d| d as usize).collect(),
            values,
        }),
        DataValue::Sequence(items) => {
            let mut ts = Vec::with_capacity(items.len());
            for i in items {
                match to_value(i)? {
                    Value::Tensor(t) => ts.push(t),
                    other => return Err(format!("a sequence holding {}", other.kind())),
                }
            }
            let dtype = ts.first().map_or(DType::F32, |t| t.dtype());
            Value::Sequence(Sequence { dtype, items: ts })
        }
        DataValue::Optional(o) => Value::Optional(match o {
            Some(v) => Some(Box::new(to_value(*v)?)),
            None => None,
        }),
    })
}

/// Values compare by kind, then element by element with [`compare`].
fn compare_values(want: &Value, got: &Value) -> Result<(), String> {
    match (want, got) {
        (Value::Tensor(w), Value::Tensor(g)) => {
            let g = match (w.dtype(), g.dtype()) {
                (DType::U16, DType::BF16) => bf16_to_bits(g),
                _ => g.clone(),
            };
            compare(w, &g)
        }
        (Value::Sequence(w), Value::Sequence(g)) => {
            if w.items.len() != g.items.len() {
                return Err(format!(
                    "a sequence of {} expected, got {}",
                    w.items.len(),
                    g.items.len()
                ));
            }
            for (i, (a, b)) in w.items.iter().zip(&g.items).enumerate() {
                compare(a, b).map_err(|e| format!("item {i}: {e}"))?;
            }
            Ok(())
        }
        (Value::Strings(w), Value::Strings(g)) => {
            if w.shape != g.shape {
                return Err(format!("shape {:?} expected, got {:?}", w.shape, g.shape));
            }
            match w.values.iter().zip(&g.values).position(|(a, b)| a != b) {
                Some(i) => Err(format!(
                    "element {i}: {:?} expected, got {:?}",
                    w.values[i], g.values[i]
                )),
                None => Ok(()),
            }
        }
        (Value::Optional(None), Value::Optional(None)) => Ok(()),
        (Value::Optional(Some(w)), Value::Optional(Some(g))) => compare_values(w, g),
        _ => Err(format!("{} expected, got {}", want.kind(), got.kind())),
    }
}

/// The suite stores bfloat16 data as uint16 bit patterns (numpy has no bfloat16): such a
/// tensor, fed to a bfloat16 input, is read as the bfloat16 values it spells.
fn bits_to_bf16(t: Tensor) -> Tensor {
    if t.dtype() != DType::U16 {
        return t;
    }
    let dims = t.shape().iter().map(|&d| d as u64).collect();
    compc_ir::Weight::from_bytes("bf16", DType::BF16, dims, t.to_bytes())
        .ok()
        .and_then(|w| Tensor::from_weight(&w).ok())
        .unwrap_or(t)
}

/// A bfloat16 result as the uint16 bit patterns the suite expects.
fn bf16_to_bits(t: &Tensor) -> Tensor {
    let dims = t.shape().iter().map(|&d| d as u64).collect();
    compc_ir::Weight::from_bytes("bits", DType::U16, dims, t.to_bytes())
        .ok()
        .and_then(|w| Tensor::from_weight(&w).ok())
        .unwrap_or_else(|| t.clone())
}

/// The comparison rule (see the module doc). `Err` says where they differ.
pub fn compare(want: &Tensor, got: &Tensor) -> Result<(), String> {
    if want.dtype() != got.dtype() {
        return Err(format!(
            "element type {} expected, got {}",
            want.dtype(),
            got.dtype()
        ));
    }
    if want.shape() != got.shape() {
        return Err(format!(
            "shape {:?} expected, got {:?}",
            want.shape(),
            got.shape()
        ));
    }
    if want.dtype().is_float() {
        let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
        for (i, (&e, &x)) in w.iter().zip(&g).enumerate() {
            let ok = if e.is_nan() || x.is_nan() {
                e.is_nan() && x.is_nan()
            } else if e.is_infinite() || x.is_infinite() {
                e == x
            } else {
                (e - x).abs() <= ATOL + RTOL * e.abs()
            };
            if !ok {
                return Err(format!("element {i}: {e} expected, got {x}"));
            }
        }
        return Ok(());
    }
    let same = match (want.data(), got.data()) {
        (TensorData::U64(a), TensorData::U64(b)) => a == b,
        (TensorData::Bool(a), TensorData::Bool(b)) => a == b,
        _ => want.to_i64_vec() == got.to_i64_vec(),
    };
    if same {
        Ok(())
    } else {
        let (w, g) = (want.to_i64_vec(), got.to_i64_vec());
        let i = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(0);
        Err(format!(
            "element {i}: {:?} expected, got {:?}",
            w.get(i),
            g.get(i)
        ))
    }
}

/// Every op of the default and training domains, for naming the op a case tests.
const ONNX_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Adagrad",
    "Adam",
    "Add",
    "AffineGrid",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Attention",
    "AveragePool",
    "BatchNormalization",
    "Bernoulli",
    "BitCast",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "BlackmanWindow",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "CenterCropPad",
    "Clip",
    "Col2Im",
    "Compress",
    "Concat",
    "ConcatFromSequence",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumProd",
    "CumSum",
    "DFT",
    "DeformConv",
    "DepthToSpace",
    "DequantizeLinear",
    "Det",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Gradient",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "HammingWindow",
    "HannWindow",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "If",
    "ImageDecoder",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LRN",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "Loop",
    "LpNormalization",
    "LpPool",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "MaxRoiPool",
    "MaxUnpool",
    "Mean",
    "MeanVarianceNormalization",
    "MelWeightMatrix",
    "Min",
    "Mish",
    "Mod",
    "Momentum",
    "Mul",
    "Multinomial",
    "Neg",
    "NegativeLogLikelihoodLoss",
    "NonMaxSuppression",
    "NonZero",
    "Not",
    "OneHot",
    "Optional",
    "OptionalGetElement",
    "OptionalHasElement",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "RMSNormalization",
    "RNN",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "RegexFullMatch",
    "Relu",
    "Reshape",
    "Resize",
    "ReverseSequence",
    "RoiAlign",
    "RotaryEmbedding",
    "Round",
    "STFT",
    "Scan",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "SequenceAt",
    "SequenceConstruct",
    "SequenceEmpty",
    "SequenceErase",
    "SequenceInsert",
    "SequenceLength",
    "SequenceMap",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "SoftmaxCrossEntropyLoss",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "SplitToSequence",
    "Sqrt",
    "Squeeze",
    "StringConcat",
    "StringNormalizer",
    "StringSplit",
    "Sub",
    "Sum",
    "Swish",
    "Tan",
    "Tanh",
    "TfIdfVectorizer",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unique",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Case-name prefixes that do not spell their op's name.
const ALIASES: &[(&str, &str)] = &[
    ("basicconvinteger", "ConvInteger"),
    ("basicconv", "Conv"),
    ("batchnorm", "BatchNormalization"),
    ("instancenorm", "InstanceNormalization"),
    ("layernormalization", "LayerNormalization"),
    ("constantpad", "Pad"),
    ("edgepad", "Pad"),
    ("reflectpad", "Pad"),
    ("wrappad", "Pad"),
    ("sce", "SoftmaxCrossEntropyLoss"),
    ("nllloss", "NegativeLogLikelihoodLoss"),
    ("strnorm", "StringNormalizer"),
    ("tfidf", "TfIdfVectorizer"),
    ("simplernn", "RNN"),
    ("rnnseq", "RNN"),
    ("trainingdropout", "Dropout"),
    ("nesterovmomentum", "Momentum"),
    ("mvn", "MeanVarianceNormalization"),
    ("sequence", "Sequence"),
];

/// The op a case tests: the longest op name (or alias) its name starts with, else the
/// model's only op, else "other".
fn tested_op(case: &str, _dir: &Path) -> String {
    let key: String = case
        .strip_prefix("test_")
        .unwrap_or(case)
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let mut best: Option<&str> = None;
    for &op in ONNX_OPS {
        if key.starts_with(&op.to_ascii_lowercase()) && best.is_none_or(|b| op.len() > b.len()) {
            best = Some(op);
        }
    }
    for &(prefix, op) in ALIASES {
        if key.starts_with(prefix) && best.is_none_or(|b| prefix.len() > b.len()) {
            best = Some(op);
        }
    }
    best.unwrap_or("other").to_string()
}

/// `compc conformance [DIR] [--write-failures FILE] [--ort]`.
#[derive(clap::Args, Debug)]
pub struct CliArgs {
    /// Folder of case folders (default: Debian's libonnx-testdata data/node)
    pub dir: Option<PathBuf>,
    /// Write the names of the failing cases here, one a line (keeping the reasons an
    /// existing list gives)
    #[arg(long, value_name = "FILE")]
    pub write_failures: Option<PathBuf>,
    /// Also run the cases in onnxruntime (python3 tests/conformance/ort_count.py)
    #[arg(long)]
    pub ort: bool,
    /// Worker threads
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// The command: prints the summary; fails only when the suite cannot be read.
pub fn cli(args: &CliArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let report = run_dir(&dir, args.threads)
        .with_context(|| format!("cannot read the cases in {}", dir.display()))?;
    if report.total() == 0 {
        anyhow::bail!("no case folders (with a model.onnx) in {}", dir.display());
    }
    print!("{}", report.summary());
    if let Some(path) = &args.write_failures {
        // Reasons written by hand into an existing list are kept.
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, report.failure_list(&previous))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.ort {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/ort_count.py");
        let status = std::process::Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .status()
            .with_context(|| format!("cannot run python3 {}", script.display()))?;
        if !status.success() {
            anyhow::bail!("{} failed ({status})", script.display());
        }
    }
    Ok(())
}

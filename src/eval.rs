//! `compc eval ORIGINAL TRANSFORMED --data EVAL`: what a transformation cost. Both models
//! run in the reference runtime on the same data; the report gives output fidelity (max
//! and mean absolute error, cosine similarity, top-1 agreement), perplexity for language
//! models on held-out text, size (parameters, bytes by dtype) and estimated FLOPs and
//! bytes moved per token (or per sample).

use anyhow::{bail, Context, Result};
use compc_ir::cost::{node_cost, Concrete};
use compc_ir::{DType, Graph, Op, ValueRef};
use compc_passes::GraphStats;
use compc_runtime::{Executor, Tensor};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// Evaluation data: model inputs from an .npz, or text scored as bytes by a byte-level LM.
pub enum EvalData {
    Npz(Vec<(String, Tensor)>),
    /// Held-out text cut into non-overlapping windows of `seq_len` bytes; every position
    /// but the last of a window predicts the next byte.
    Text {
        bytes: Vec<u8>,
        seq_len: usize,
        batch: usize,
        max_windows: Option<usize>,
    },
}

impl EvalData {
    pub fn load(
        path: &Path,
        seq_len: usize,
        batch: usize,
        max_windows: Option<usize>,
    ) -> Result<EvalData> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => Ok(EvalData::Npz(
                compc_runtime::npz::read_npz(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )),
            Some("txt") => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if seq_len < 2 {
                    bail!("--seq-len must be at least 2");
                }
                if bytes.len() < seq_len {
                    bail!(
                        "{}: {} bytes of text is shorter than one window of {seq_len}",
                        path.display(),
                        bytes.len()
                    );
                }
                Ok(EvalData::Text {
                    bytes,
                    seq_len,
                    batch: batch.max(1),
                    max_windows,
                })
            }
            _ => bail!(
                "{}: evaluation data must be .npz (model inputs) or .txt (held-out text)",
                path.display()
            ),
        }
    }

    /// The batches to run, as named model inputs.
    fn batches(&self, g: &Graph) -> Result<Vec<Vec<(String, Tensor)>>> {
        match self {
            EvalData::Npz(t) => Ok(vec![t.clone()]),
            EvalData::Text {
                bytes,
                seq_len,
                batch,
                max_windows,
            } => {
                let [input] = g.inputs() else {
                    bail!(
                        "text evaluation needs a model with one input (token ids), this one has {}",
                        g.inputs().len()
                    )
                };
                let node = g.node(*input);
                let ty = &node.outputs[0];
                if ty.dtype != DType::I64 || ty.shape.rank() != Some(2) {
                    bail!(
                        "text evaluation needs an i64 [batch, seq] input; `{}` is {ty}",
                        node.name
                    );
                }
                let mut windows: Vec<&[u8]> = bytes.chunks_exact(*seq_len).collect();
                if let Some(m) = max_windows {
                    windows.truncate(*m);
                }
                Ok(windows
                    .chunks(*batch)
                    .map(|ws| {
                        let ids: Vec<i64> = ws
                            .iter()
                            .flat_map(|w| w.iter().map(|&b| b as i64))
                            .collect();
                        vec![(
                            node.name.clone(),
                            Tensor::from_i64(vec![ws.len(), *seq_len], ids),
                        )]
                    })
                    .collect())
            }
        }
    }
}

/// Fidelity of one output of the transformed model against the original's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Fidelity {
    pub output: String,
    pub max_abs_error: f64,
    pub mean_abs_error: f64,
    pub cosine_similarity: f64,
    /// Fraction of positions whose argmax over the last axis agrees (rank ≥ 2 outputs).
    pub top1_agreement: Option<f64>,
    #[serde(skip)]
    acc: FidelityAcc,
}

#[derive(Clone, Debug, Default)]
struct FidelityAcc {
    abs_sum: f64,
    count: u64,
    dot: f64,
    na: f64,
    nb: f64,
    top1_same: u64,
    top1_total: u64,
}

impl Fidelity {
    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<()> {
        if a.shape() != b.shape() {
            bail!(
                "output `{}`: shapes differ ({:?} vs {:?})",
                self.output,
                a.shape(),
                b.shape()
            );
        }
        let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
        let acc = &mut self.acc;
        for (p, q) in x.iter().zip(&y) {
            let d = (p - q).abs();
            self.max_abs_error = self.max_abs_error.max(d);
            acc.abs_sum += d;
            acc.dot += p * q;
            acc.na += p * p;
            acc.nb += q * q;
        }
        acc.count += x.len() as u64;
        if let (true, Some(&last)) = (a.rank() >= 2, a.shape().last()) {
            if last > 1 {
                let argmax = |row: &[f64]| {
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f64::NEG_INFINITY),
                            |m, (i, &v)| if v > m.1 { (i, v) } else { m },
                        )
                        .0
                };
                for (r, s) in x.chunks_exact(last).zip(y.chunks_exact(last)) {
                    acc.top1_same += (argmax(r) == argmax(s)) as u64;
                    acc.top1_total += 1;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        let acc = &self.acc;
        self.mean_abs_error = acc.abs_sum / acc.count.max(1) as f64;
        self.cosine_similarity = if acc.na == 0.0 && acc.nb == 0.0 {
            1.0
        } else {
            acc.dot / (acc.na.sqrt() * acc.nb.sqrt())
        };
        self.top1_agreement =
            (acc.top1_total > 0).then(|| acc.top1_same as f64 / acc.top1_total as f64);
    }
}

/// Size and cost of one model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelFigures {
    pub stats: GraphStats,
    pub flops_per_token: f64,
    pub bytes_moved_per_token: f64,
    pub weight_bytes_per_token: f64,
    /// Per-byte perplexity on held-out text (text data only).
    pub perplexity: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub original: ModelFigures,
    pub transformed: ModelFigures,
    pub fidelity: Vec<Fidelity>,
    /// "token" for text, "sample" for .npz data.
    pub unit: &'static str,
    pub batches: usize,
}

/// Sum of node costs on one batch, from the shapes every value actually had.
fn measure_cost(g: &Graph, exec: &Executor, inputs: &[(String, Tensor)]) -> Result<(f64, f64)> {
    let taps: Vec<ValueRef> = g
        .node_ids()
        .flat_map(|id| (0..g.node(id).outputs.len() as u32).map(move |s| ValueRef::new(id, s)))
        .collect();
    let mut shapes: HashMap<ValueRef, (DType, Vec<u64>)> = HashMap::new();
    exec.run_with_taps(inputs, &taps, &mut |v, t| {
        shapes.insert(
            v,
            (t.dtype(), t.shape().iter().map(|&d| d as u64).collect()),
        );
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut flops, mut bytes) = (0f64, 0f64);
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op.is_source() || matches!(node.op, Op::Custom(_)) {
            continue;
        }
        let Some(outs) = (0..node.outputs.len() as u32)
            .map(|s| shapes.get(&ValueRef::new(id, s)))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let ins: Vec<Option<Concrete>> = node
            .inputs()
            .iter()
            .map(|v| {
                v.and_then(|v| shapes.get(&v))
                    .map(|(d, s)| (*d, s.as_slice()))
            })
            .collect();
        let outs: Vec<Concrete> = outs.iter().map(|(d, s)| (*d, s.as_slice())).collect();
        let c = node_cost(&node.op, &ins, &outs);
        flops += c.flops as f64;
        bytes += c.bytes as f64;
    }
    Ok((flops, bytes))
}

/// Units (tokens or samples) in one batch.
fn units(data: &EvalData, batch: &[(String, Tensor)]) -> f64 {
    match data {
        EvalData::Text { .. } => batch.first().map(|(_, t)| t.numel() as f64).unwrap_or(1.0),
        EvalData::Npz(_) => batch
            .first()
            .and_then(|(_, t)| t.shape().first().copied())
            .unwrap_or(1) as f64,
    }
}

/// Negative log-likelihood (nats) summed over next-byte predictions, and their count.
fn nll(logits: &Tensor, ids: &Tensor) -> Result<(f64, u64)> {
    let s = logits.shape();
    let (b, t) = (ids.shape()[0], ids.shape()[1]);
    if s.len() != 3 || s[0] != b || s[1] != t {
        bail!("LM output 0 must be logits [batch, seq, vocab]; got {s:?} for input [{b}, {t}]");
    }
    let v = s[2];
    let (x, ids) = (logits.to_f64_vec(), ids.to_i64_vec());
    let (mut total, mut n) = (0f64, 0u64);
    for bi in 0..b {
        for ti in 0..t - 1 {
            let row = &x[(bi * t + ti) * v..(bi * t + ti + 1) * v];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|&z| (z - m).exp()).sum::<f64>().ln();
            let target = ids[bi * t + ti + 1];
            let target = usize::try_from(target)
                .ok()
                .filter(|&k| k < v)
                .with_context(|| format!("token {target} is outside the vocabulary of {v}"))?;
            total += lse - row[target];
            n += 1;
        }
    }
    Ok((total, n))
}

/// Per-byte perplexity of a byte-level LM on text data (the protocol of
/// `tests/fixtures/lm/eval_ppl.py`).
pub fn perplexity(g: &Graph, data: &EvalData) -> Result<f64> {
    if !matches!(data, EvalData::Text { .. }) {
        bail!("perplexity needs text data");
    }
    let exec = Executor::new(g).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut total, mut count) = (0f64, 0u64);
    for batch in data.batches(g)? {
        let out = exec.run(&batch).map_err(|e| anyhow::anyhow!("{e}"))?;
        let first = out.first().context("the model has no outputs")?;
        let (s, n) = nll(&first.1, &batch[0].1)?;
        total += s;
        count += n;
    }
    Ok((total / count.max(1) as f64).exp())
}

pub fn evaluate(original: &Graph, transformed: &Graph, data: &EvalData) -> Result<EvalReport> {
    let batches = data.batches(original)?;
    if batches.is_empty() {
        bail!("no evaluation data");
    }
    let (eo, et) = (
        Executor::new(original).map_err(|e| anyhow::anyhow!("original: {e}"))?,
        Executor::new(transformed).map_err(|e| anyhow::anyhow!("transformed: {e}"))?,
    );
    let per = units(data, &batches[0]);
    let (fo, bo) = measure_cost(original, &eo, &batches[0]).context("original")?;
    let (ft, bt) = measure_cost(transformed, &et, &batches[0]).context("transformed")?;
    let text = matches!(data, EvalData::Text { .. });
    let mut fidelity: Vec<Fidelity> = Vec::new();
    let (mut nll_o, mut nll_t, mut count) = (0f64, 0f64, 0u64);
    for batch in &batches {
        let a = eo
            .run(batch)
            .map_err(|e| anyhow::anyhow!("original: {e}"))?;
        let b = et
            .run(batch)
            .map_err(|e| anyhow::anyhow!("transformed: {e}"))?;
        if fidelity.is_empty() {
            fidelity = a
                .iter()
                .map(|(n, _)| Fidelity {
                    output: n.clone(),
                    ..Default::default()
                })
                .collect();
        }
        for (f, (name, x)) in fidelity.iter_mut().zip(&a) {
            let y = b
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .with_context(|| format!("the transformed model has no output `{name}`"))?;
            f.add(x, y)?;
        }
        if text {
            let ids = &batch[0].1;
            let (so, n) = nll(&a[0].1, ids)?;
            let (st, _) = nll(&b[0].1, ids)?;
            nll_o += so;
            nll_t += st;
            count += n;
        }
    }
    fidelity.iter_mut().for_each(Fidelity::finish);
    let figures = |g: &Graph, flops: f64, bytes: f64, nll: f64| {
        let stats = GraphStats::of(g);
        ModelFigures {
            flops_per_token: flops / per,
            bytes_moved_per_token: bytes / per,
            weight_bytes_per_token: stats.weight_bytes as f64 / per,
            stats,
            perplexity: text.then(|| (nll / count.max(1) as f64).exp()),
        }
    };
    Ok(EvalReport {
        original: figures(original, fo, bo, nll_o),
        transformed: figures(transformed, ft, bt, nll_t),
        fidelity,
        unit: if text { "token" } else { "sample" },
        batches: batches.len(),
    })
}

fn mib(b: u64) -> String {
    format!("{:.3} MiB", b as f64 / (1 << 20) as f64)
}

impl EvalReport {
    /// The human table.
    pub fn to_table(&self) -> String {
        let (o, t) = (&self.original, &self.transformed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| | original | transformed | ratio |\n|---|---:|---:|---:|"
        );
        let r = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.3}×", a / b)
            } else {
                "-".into()
            }
        };
        if let (Some(po), Some(pt)) = (o.perplexity, t.perplexity) {
            let _ = writeln!(
                s,
                "| perplexity (per byte) | {po:.4} | {pt:.4} | {:+.3}% |",
                100.0 * (pt / po - 1.0)
            );
        }
        let _ = writeln!(
            s,
            "| parameters | {} | {} | {} |",
            o.stats.parameters,
            t.stats.parameters,
            r(o.stats.parameters as f64, t.stats.parameters as f64)
        );
        let _ = writeln!(
            s,
            "| weight bytes | {} | {} | {} |",
            mib(o.stats.weight_bytes),
            mib(t.stats.weight_bytes),
            r(o.stats.weight_bytes as f64, t.stats.weight_bytes as f64)
        );
        let mut dtypes: Vec<&String> = o
            .stats
            .bytes_by_dtype
            .keys()
            .chain(t.stats.bytes_by_dtype.keys())
            .collect();
        dtypes.sort();
        dtypes.dedup();
        for d in dtypes {
            let g =
                |m: &std::collections::BTreeMap<String, u64>| mib(m.get(d).copied().unwrap_or(0));
            let _ = writeln!(
                s,
                "| {d} weight bytes | {} | {} | |",
                g(&o.stats.bytes_by_dtype),
                g(&t.stats.bytes_by_dtype)
            );
        }
        let u = self.unit;
        let _ = writeln!(
            s,
            "| MFLOPs per {u} | {:.3} | {:.3} | {} |",
            o.flops_per_token / 1e6,
            t.flops_per_token / 1e6,
            r(o.flops_per_token, t.flops_per_token)
        );
        let _ = writeln!(
            s,
            "| KB moved per {u} | {:.1} | {:.1} | {} |",
            o.bytes_moved_per_token / 1e3,
            t.bytes_moved_per_token / 1e3,
            r(o.bytes_moved_per_token, t.bytes_moved_per_token)
        );
        let _ = writeln!(s, "\n| output | max abs error | mean abs error | cosine | top-1 agreement |\n|---|---:|---:|---:|---:|");
        for f in &self.fidelity {
            let top1 = f
                .top1_agreement
                .map(|v| format!("{:.4}", v))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {} | {:.3e} | {:.3e} | {:.6} | {top1} |",
                f.output, f.max_abs_error, f.mean_abs_error, f.cosine_similarity
            );
        }
        s
    }
}

//! Running a graph over calibration data, batch by batch, with some values replaced by
//! tensors computed earlier.
//!
//! Block-sequential compression (techniques.md §0) needs the inputs of block ℓ computed
//! by the already-compressed blocks before it. The runner keeps a *cut*: the residual
//! stream after the last finished block, one tensor per batch. Each run replaces that
//! value by a graph input fed with the cached tensors, so only the nodes after it (plus
//! cheap side computations from the model inputs, such as RoPE tables and masks) are
//! evaluated; a run can advance the cut to a later value in the same pass. The executor
//! frees every intermediate after its last use, so a run holds no more than one batch's
//! live activations besides the values asked for.

use crate::context::CalibData;
use crate::pass::PassError;
use compc_ir::{DType, Graph, GraphOutput, Shape, TensorType, ValueRef};
use compc_runtime::{Executor, Tensor, TensorData};

/// Samples per batch when the caller does not say.
pub const DEFAULT_BATCH: usize = 16;

pub struct CalibRunner {
    /// The calibration inputs, split along the samples axis.
    batches: Vec<Vec<(String, Tensor)>>,
    /// The value cached for every batch, and the tensors.
    cut: Option<(ValueRef, Vec<Tensor>)>,
    samples: usize,
}

fn invalid(msg: String) -> PassError {
    PassError::Invalid(msg)
}

/// Rows `start..end` of the first axis.
pub fn slice_rows(t: &Tensor, start: usize, end: usize) -> Result<Tensor, PassError> {
    let n0 = *t.shape().first().unwrap_or(&1);
    let per = t.numel().checked_div(n0).unwrap_or(0);
    let (a, b) = (start * per, end * per);
    macro_rules! cut {
        ($($v:ident),*) => {
            match t.data() {
                $(TensorData::$v(x) => TensorData::$v(x[a..b].to_vec()),)*
            }
        };
    }
    let data = cut!(F32, F64, I64, I32, I16, I8, U8, U16, U32, U64, Bool);
    let mut shape = t.shape().to_vec();
    if let Some(d) = shape.first_mut() {
        *d = end - start;
    }
    Ok(Tensor::new(t.dtype(), shape, data)?)
}

/// Checks calibration data against the model's inputs; returns the number of samples.
/// Every message names the input it is about.
pub fn validate(g: &Graph, calib: &CalibData) -> Result<usize, PassError> {
    let names: Vec<&str> = g
        .inputs()
        .iter()
        .map(|&i| g.node(i).name.as_str())
        .collect();
    if calib.tensors.is_empty() {
        return Err(invalid("the calibration data has no tensors".into()));
    }
    for (name, _) in &calib.tensors {
        if !names.contains(&name.as_str()) {
            return Err(invalid(format!(
                "calibration input `{name}`: the model has no input of that name (its inputs: {})",
                names.join(", ")
            )));
        }
    }
    let mut samples: Option<(usize, &str)> = None;
    for &id in g.inputs() {
        let node = g.node(id);
        let name = node.name.as_str();
        let Some((_, t)) = calib.tensors.iter().find(|(n, _)| n == name) else {
            return Err(invalid(format!(
                "calibration data has no tensor for model input `{name}`"
            )));
        };
        let Some(ty) = node.outputs.first() else {
            continue;
        };
        if t.dtype() != ty.dtype {
            return Err(invalid(format!(
                "calibration input `{name}` is {}, the model expects {}",
                t.dtype(),
                ty.dtype
            )));
        }
        if let Shape::Ranked(dims) = &ty.shape {
            if t.rank() != dims.len() || t.rank() == 0 {
                return Err(invalid(format!(
                    "calibration input `{name}` has shape {:?}; the model expects {ty} \
                     (first axis = samples)",
                    t.shape()
                )));
            }
            for (i, (d, &n)) in dims.iter().zip(t.shape()).enumerate().skip(1) {
                if let compc_ir::Dim::Known(k) = d {
                    if *k != n as u64 {
                        return Err(invalid(format!(
                            "calibration input `{name}` has shape {:?}; the model expects {ty} \
                             (dim {i} is {n}, not {k})",
                            t.shape()
                        )));
                    }
                }
            }
        }
        let n = *t.shape().first().unwrap_or(&0);
        if n == 0 {
            return Err(invalid(format!(
                "calibration input `{name}` has no samples"
            )));
        }
        match samples {
            Some((m, other)) if m != n => {
                return Err(invalid(format!(
                    "calibration input `{name}` has {n} samples but `{other}` has {m}"
                )))
            }
            _ => samples = Some((n, name)),
        }
        if t.dtype().is_float() {
            if let Some(i) = t.to_f32_vec().iter().position(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "calibration input `{name}` has a NaN or infinite value (element {i})"
                )));
            }
        }
    }
    Ok(samples.map_or(0, |s| s.0))
}

impl CalibRunner {
    /// Validates `calib` against `g` and splits it into batches of `batch` samples.
    pub fn new(g: &Graph, calib: &CalibData, batch: usize) -> Result<CalibRunner, PassError> {
        let samples = validate(g, calib)?;
        let batch = batch.max(1);
        let mut batches = Vec::new();
        let mut start = 0;
        while start < samples {
            let end = (start + batch).min(samples);
            let mut b = Vec::new();
            for &id in g.inputs() {
                let name = &g.node(id).name;
                if let Some((_, t)) = calib.tensors.iter().find(|(n, _)| n == name) {
                    b.push((name.clone(), slice_rows(t, start, end)?));
                }
            }
            batches.push(b);
            start = end;
        }
        Ok(CalibRunner {
            batches,
            cut: None,
            samples,
        })
    }

    pub fn num_batches(&self) -> usize {
        self.batches.len()
    }

    /// The inputs of batch `i`.
    pub fn batch(&self, i: usize) -> Option<&[(String, Tensor)]> {
        self.batches.get(i).map(|b| b.as_slice())
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The value the cached tensors stand for, if any.
    pub fn cut(&self) -> Option<ValueRef> {
        self.cut.as_ref().map(|c| c.0)
    }

    /// Forgets the cut (after a rewrite that changes what it was computed from).
    pub fn clear_cut(&mut self) {
        self.cut = None;
    }

    /// Computes `outputs` for every batch (with the cut's cached tensors standing in for
    /// its value) and hands them to `f(batch, tensors)`. With `advance`, that value is
    /// computed too and becomes the new cut.
    pub fn run(
        &mut self,
        g: &Graph,
        outputs: &[ValueRef],
        advance: Option<ValueRef>,
        f: &mut dyn FnMut(usize, Vec<Tensor>) -> Result<(), PassError>,
    ) -> Result<(), PassError> {
        let mut wanted = outputs.to_vec();
        if let Some(a) = advance {
            wanted.push(a);
        }
        let cut = self.cut.take();
        let replace: Vec<(ValueRef, &[Tensor])> = cut
            .as_ref()
            .map(|(v, t)| vec![(*v, t.as_slice())])
            .unwrap_or_default();
        let ids: Vec<usize> = (0..self.batches.len()).collect();
        let mut new_cut = Vec::new();
        let res = run_replacing(
            g,
            &self.batches,
            &replace,
            &wanted,
            &ids,
            &mut |b, mut outs| {
                if advance.is_some() {
                    if let Some(t) = outs.pop() {
                        new_cut.push(t);
                    }
                }
                f(b, outs)
            },
        );
        self.cut = match (res.is_ok(), advance) {
            (true, Some(a)) => Some((a, new_cut)),
            _ => cut,
        };
        res
    }

    /// Like [`run`](Self::run) over the given batches, with extra values replaced by
    /// per-batch tensors (indexed like `batches`), and the cut kept as it is. AWQ runs a
    /// block's attention or MLP on cached inputs this way.
    pub fn run_with(
        &self,
        g: &Graph,
        replace: &[(ValueRef, &[Tensor])],
        outputs: &[ValueRef],
        batches: &[usize],
        f: &mut dyn FnMut(usize, Vec<Tensor>) -> Result<(), PassError>,
    ) -> Result<(), PassError> {
        let mut all: Vec<(ValueRef, &[Tensor])> = replace.to_vec();
        if let Some((v, t)) = &self.cut {
            if !all.iter().any(|(r, _)| r == v) {
                all.push((*v, t.as_slice()));
            }
        }
        run_replacing(g, &self.batches, &all, outputs, batches, f)
    }
}

/// The graph with each replaced value turned into a new input, and `outputs` as its
/// outputs. Returns the graph and the new inputs' names.
fn prepare(
    g: &Graph,
    replace: &[(ValueRef, DType)],
    outputs: &[ValueRef],
) -> Result<(Graph, Vec<String>), PassError> {
    let mut g2 = g.clone();
    let mut names = Vec::new();
    let mut map = Vec::new();
    for (i, (v, dtype)) in replace.iter().enumerate() {
        if !g.contains(v.node) {
            return Err(invalid(format!("calibration cut {} is gone", v.node)));
        }
        let name = format!("__compc_calib_cut{i}");
        // Unranked: the runtime checks nothing about its shape, the cached tensors are
        // what this graph computed before.
        let id = g2.add_input(
            &name,
            TensorType {
                dtype: *dtype,
                shape: Shape::Unranked,
            },
        );
        g2.replace_all_uses(*v, ValueRef::new(id, 0));
        map.push((*v, ValueRef::new(id, 0)));
        names.push(name);
    }
    g2.outputs = outputs
        .iter()
        .enumerate()
        .map(|(j, o)| GraphOutput {
            name: format!("__compc_calib_out{j}"),
            value: map.iter().find(|(v, _)| v == o).map_or(*o, |(_, n)| *n),
        })
        .collect();
    Ok((g2, names))
}

fn run_replacing(
    g: &Graph,
    batches: &[Vec<(String, Tensor)>],
    replace: &[(ValueRef, &[Tensor])],
    outputs: &[ValueRef],
    ids: &[usize],
    f: &mut dyn FnMut(usize, Vec<Tensor>) -> Result<(), PassError>,
) -> Result<(), PassError> {
    let mut typed = Vec::new();
    for (v, ts) in replace {
        let dtype = ts
            .first()
            .map(|t| t.dtype())
            .or_else(|| g.value_type(*v).map(|t| t.dtype))
            .unwrap_or(DType::F32);
        typed.push((*v, dtype));
    }
    let (g2, names) = prepare(g, &typed, outputs)?;
    // Inputs the executor would not compute from stay unread but must be bound.
    let exec = Executor::new(&g2)?;
    for &b in ids {
        let Some(batch) = batches.get(b) else {
            return Err(invalid(format!("no calibration batch {b}")));
        };
        let mut inputs: Vec<(String, Tensor)> = batch.clone();
        for ((_, ts), name) in replace.iter().zip(&names) {
            let Some(t) = ts.get(b) else {
                return Err(invalid(format!("no cached tensor for batch {b}")));
            };
            inputs.push((name.clone(), t.clone()));
        }
        let outs = exec.run(&inputs)?;
        f(b, outs.into_iter().map(|(_, t)| t).collect())?;
    }
    Ok(())
}

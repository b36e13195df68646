//! Ops on values that are not plain tensors: control flow (If, Loop, Scan, SequenceMap,
//! which run their bodies with a nested [`Executor`]), the sequence ops and the optional
//! ops. Bodies take their captured outer values as their last inputs (see
//! `compc_ir::op::control`).

use crate::error::{bail, Result, RuntimeError};
use crate::executor::{Arg, Executor};
use crate::ops::shape_ops::{concat, narrow, squeeze, unsqueeze};
use crate::strings;
use crate::tensor::Tensor;
use crate::value::{Sequence, Value};
use compc_ir::op::{LoopOp, ScanOp, Subgraph};
use compc_ir::{DType, Graph, Op};

fn arg<'a>(args: &[Option<Arg<'a>>], i: usize, what: &str) -> Result<Arg<'a>> {
    match args.get(i).copied().flatten() {
        Some(a) => Ok(a),
        None => bail!("{what} (input {i}) is missing"),
    }
}

fn tensor<'a>(a: Arg<'a>, what: &str) -> Result<&'a Tensor> {
    match a {
        Arg::Tensor(t) => Ok(t),
        Arg::Other(v) => bail!("{what} must be a tensor, got {}", v.kind()),
    }
}

fn sequence<'a>(a: Arg<'a>, what: &str) -> Result<&'a Sequence> {
    match a {
        Arg::Other(Value::Sequence(s)) => Ok(s),
        Arg::Other(v) => bail!("{what} must be a sequence, got {}", v.kind()),
        Arg::Tensor(_) => bail!("{what} must be a sequence, got a tensor"),
    }
}

/// A scalar integer position into `n` items; negative ones count from the end.
/// `inclusive` allows `n` itself (insertion at the end).
fn position(t: &Tensor, n: usize, inclusive: bool) -> Result<usize> {
    if !t.dtype().is_int() || t.numel() != 1 {
        bail!(
            "position must be an integer scalar, got {} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    let p = t.to_i64_vec()[0];
    let n = n as i64;
    let q = if p < 0 { p + n } else { p };
    let hi = if inclusive { n } else { n - 1 };
    if q < 0 || q > hi {
        bail!("position {p} is out of range for a sequence of {n}");
    }
    Ok(q as usize)
}

fn scalar_bool(t: &Tensor, what: &str) -> Result<bool> {
    if t.numel() != 1 {
        bail!("{what} must hold one value, got shape {:?}", t.shape());
    }
    Ok(t.get_f64(0).unwrap_or(0.0) != 0.0)
}

/// The element type a body declares for output `i`.
fn declared_dtype(g: &Graph, i: usize) -> DType {
    g.outputs
        .get(i)
        .and_then(|o| g.value_type(o.value))
        .map_or(DType::F32, |t| t.dtype)
}

/// Runs a body on values given in the order of its inputs.
fn run_body(ex: &Executor, body: &Graph, values: Vec<Value>) -> Result<Vec<Value>> {
    if values.len() != body.inputs().len() {
        bail!(
            "the body takes {} inputs, {} were given",
            body.inputs().len(),
            values.len()
        );
    }
    let named: Vec<(String, Value)> = body
        .inputs()
        .iter()
        .map(|&id| body.node(id).name.clone())
        .zip(values)
        .collect();
    let out = ex.run_values(&named).map_err(|e| match e {
        RuntimeError::Op(m) => RuntimeError::Op(format!("in the body: {m}")),
        other => RuntimeError::Op(format!("in the body: {other}")),
    })?;
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

fn values(args: &[Option<Arg>], what: &str) -> Result<Vec<Value>> {
    args.iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(a) => Ok(a.to_value()),
            None => bail!("{what}: input {i} is missing"),
        })
        .collect()
}

/// Stacks tensors along a new axis `axis` (tensors of one shape).
fn stack(items: &[Tensor], axis: i64, dtype: DType) -> Result<Tensor> {
    if items.is_empty() {
        return Tensor::from_f64_as(dtype, vec![0], vec![]);
    }
    let parts: Vec<Tensor> = items
        .iter()
        .map(|t| unsqueeze(t, &[axis]))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = parts.iter().collect();
    concat(&refs, axis)
}

pub fn eval(op: &Op, args: &[Option<Arg>], num_outputs: usize) -> Result<Vec<Value>> {
    let one = |v: Value| Ok(vec![v]);
    match op {
        Op::SequenceEmpty(s) => one(Value::Sequence(Sequence {
            dtype: s.dtype.unwrap_or(DType::F32),
            items: vec![],
        })),
        Op::SequenceConstruct => {
            let mut items = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                items.push(tensor(arg(args, i, "element")?, "element")?.clone());
            }
            let dtype = items.first().map_or(DType::F32, |t| t.dtype());
            if items.iter().any(|t| t.dtype() != dtype) {
                bail!("sequence_construct needs tensors of one element type");
            }
            one(Value::Sequence(Sequence { dtype, items }))
        }
        Op::SequenceAt => {
            let s = sequence(arg(args, 0, "sequence")?, "input 0")?;
            let p = position(
                tensor(arg(args, 1, "position")?, "position")?,
                s.items.len(),
                false,
            )?;
            one(Value::Tensor(s.items[p].clone()))
        }
        Op::SequenceInsert => {
            let s = sequence(arg(args, 0, "sequence")?, "input 0")?;
            let t = tensor(arg(args, 1, "tensor")?, "input 1")?;
            if t.dtype() != s.dtype {
                bail!(
                    "inserting a {} tensor into a sequence of {}",
                    t.dtype(),
                    s.dtype
                );
            }
            let p = match args.get(2).copied().flatten() {
                Some(p) => position(tensor(p, "position")?, s.items.len(), true)?,
                None => s.items.len(),
            };
            let mut items = s.items.clone();
            items.insert(p, t.clone());
            one(Value::Sequence(Sequence {
                dtype: s.dtype,
                items,
            }))
        }
        Op::SequenceErase => {
            let s = sequence(arg(args, 0, "sequence")?, "input 0")?;
            if s.items.is_empty() {
                bail!("sequence_erase on an empty sequence");
            }
            let p = match args.get(1).copied().flatten() {
                Some(p) => position(tensor(p, "position")?, s.items.len(), false)?,
                None => s.items.len() - 1,
            };
            let mut items = s.items.clone();
            items.remove(p);
            one(Value::Sequence(Sequence {
                dtype: s.dtype,
                items,
            }))
        }
        Op::SequenceLength => {
            let s = sequence(arg(args, 0, "sequence")?, "input 0")?;
            one(Value::Tensor(Tensor::scalar_i64(s.items.len() as i64)))
        }
        Op::ConcatFromSequence(c) => {
            let s = sequence(arg(args, 0, "sequence")?, "input 0")?;
            if s.items.is_empty() {
                bail!("concat_from_sequence of an empty sequence");
            }
            let t = if c.new_axis {
                stack(&s.items, c.axis, s.dtype)?
            } else {
                let refs: Vec<&Tensor> = s.items.iter().collect();
                concat(&refs, c.axis)?
            };
            one(Value::Tensor(t))
        }
        Op::SplitToSequence(sp) => {
            let x = tensor(arg(args, 0, "input")?, "input 0")?;
            let ax = crate::broadcast::norm_axis(sp.axis, x.rank())?;
            let n = x.shape()[ax];
            let split = args.get(1).copied().flatten();
            let sizes: Vec<usize> = match split {
                None => vec![1; n],
                Some(a) => {
                    let t = tensor(a, "split")?;
                    let v = t.to_i64_vec();
                    if v.iter().any(|&s| s < 0) {
                        bail!("split sizes {v:?} are negative");
                    }
                    if t.rank() == 0 {
                        let k = v[0] as usize;
                        if k == 0 {
                            bail!("split size 0");
                        }
                        (0..n.div_ceil(k)).map(|i| k.min(n - i * k)).collect()
                    } else {
                        if v.iter().sum::<i64>() != n as i64 {
                            bail!("split sizes {v:?} do not add up to {n}");
                        }
                        v.iter().map(|&s| s as usize).collect()
                    }
                }
            };
            let mut items = Vec::with_capacity(sizes.len());
            let mut at = 0;
            for s in sizes {
                let mut t = narrow(x, ax, at, s)?;
                if split.is_none() && !sp.keepdims {
                    t = squeeze(&t, Some(vec![ax as i64]))?;
                }
                items.push(t);
                at += s;
            }
            one(Value::Sequence(Sequence {
                dtype: x.dtype(),
                items,
            }))
        }
        Op::Optional(_) => one(Value::Optional(
            args.first()
                .copied()
                .flatten()
                .map(|a| Box::new(a.to_value())),
        )),
        Op::OptionalHasElement => {
            let has = match args.first().copied().flatten() {
                None | Some(Arg::Other(Value::Optional(None))) => false,
                Some(_) => true,
            };
            one(Value::Tensor(Tensor::from_bool(vec![], vec![has])))
        }
        Op::Unary(compc_ir::op::UnaryOp::Identity) => one(arg(args, 0, "input")?.to_value()),
        Op::Cast(c) => one(cast(arg(args, 0, "input")?, c.to)?),
        Op::CastLike => {
            let to = match arg(args, 1, "target")? {
                Arg::Tensor(t) => t.dtype(),
                Arg::Other(v) => v
                    .dtype()
                    .ok_or_else(|| RuntimeError::op("cast_like target has no element type"))?,
            };
            one(cast(arg(args, 0, "input")?, to)?)
        }
        Op::StringNormalizer(a) => match arg(args, 0, "input")? {
            Arg::Other(Value::Strings(s)) => one(Value::Strings(strings::string_normalizer(s, a)?)),
            other => bail!(
                "string_normalizer needs strings, got {}",
                other.to_value().kind()
            ),
        },
        Op::OptionalGetElement => match arg(args, 0, "optional")? {
            Arg::Other(Value::Optional(Some(v))) => one((**v).clone()),
            Arg::Other(Value::Optional(None)) => bail!("optional_get_element of an empty optional"),
            other => one(other.to_value()),
        },
        Op::If(i) => {
            let c = scalar_bool(
                tensor(arg(args, 0, "condition")?, "condition")?,
                "condition",
            )?;
            let branch = if c { &i.then_branch } else { &i.else_branch };
            let g = branch.graph();
            let ex = Executor::new(g)?;
            let out = run_body(&ex, g, values(&args[1..], "if")?)?;
            check_count(out, num_outputs)
        }
        Op::Loop(l) => run_loop(l, args, num_outputs),
        Op::Scan(s) => run_scan(s, args, num_outputs),
        Op::SequenceMap(m) => run_sequence_map(&m.body, m.captures, args, num_outputs),
        other => bail!(
            "{} does not take sequences, optionals or strings",
            other.name()
        ),
    }
}

/// Casts between numbers and strings (numbers to numbers as `Tensor::cast`).
fn cast(x: Arg, to: DType) -> Result<Value> {
    Ok(match (x, to) {
        (Arg::Tensor(t), DType::Str) => Value::Strings(strings::to_strings(t)?),
        (Arg::Tensor(t), to) => Value::Tensor(t.cast(to)?),
        (Arg::Other(Value::Strings(s)), DType::Str) => Value::Strings(s.clone()),
        (Arg::Other(Value::Strings(s)), to) => Value::Tensor(strings::from_strings(s, to)?),
        (Arg::Other(v), _) => bail!("cast of {}", v.kind()),
    })
}

fn check_count(out: Vec<Value>, n: usize) -> Result<Vec<Value>> {
    if out.len() < n {
        bail!("the body gives {} outputs, the node has {n}", out.len());
    }
    Ok(out)
}

/// Largest iteration count a Loop may run, so a runaway loop is an error, not a hang.
const MAX_ITERATIONS: i64 = 1 << 24;

fn run_loop(l: &LoopOp, args: &[Option<Arg>], num_outputs: usize) -> Result<Vec<Value>> {
    let caps = usize::try_from(l.captures).unwrap_or(0);
    let n = args
        .len()
        .checked_sub(2 + caps)
        .ok_or_else(|| RuntimeError::op("loop has too few inputs"))?;
    let trip = match args.first().copied().flatten() {
        Some(a) => {
            let t = tensor(a, "trip count")?;
            if !t.dtype().is_int() || t.numel() != 1 {
                bail!("loop trip count must be an integer scalar");
            }
            Some(t.to_i64_vec()[0])
        }
        None => None,
    };
    let mut cond = match args.get(1).copied().flatten() {
        Some(a) => Some(scalar_bool(tensor(a, "condition")?, "condition")?),
        None => None,
    };
    let mut carried = values(&args[2..2 + n], "loop")?;
    let captured = values(&args[2 + n..], "loop")?;
    let body = l.body.graph();
    let ex = Executor::new(body)?;
    let k = body.outputs.len().saturating_sub(1 + n);
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); k];
    let mut i: i64 = 0;
    loop {
        if trip.is_some_and(|m| i >= m) || cond == Some(false) {
            break;
        }
        if i >= MAX_ITERATIONS {
            bail!("loop ran {MAX_ITERATIONS} iterations without stopping");
        }
        let mut ins = vec![
            Value::Tensor(Tensor::scalar_i64(i)),
            Value::Tensor(Tensor::from_bool(vec![], vec![cond.unwrap_or(true)])),
        ];
        ins.extend(carried.iter().cloned());
        ins.extend(captured.iter().cloned());
        let out = run_body(&ex, body, ins)?;
        if out.len() != 1 + n + k {
            bail!(
                "the loop body gives {} outputs, expected {}",
                out.len(),
                1 + n + k
            );
        }
        let mut it = out.into_iter();
        let c = it
            .next()
            .ok_or_else(|| RuntimeError::op("loop body gave nothing"))?;
        cond = Some(match &c {
            Value::Tensor(t) => scalar_bool(t, "the body's condition")?,
            other => bail!("the loop body's condition is {}", other.kind()),
        });
        carried = it.by_ref().take(n).collect();
        for (j, v) in it.enumerate() {
            match v {
                Value::Tensor(t) => scans[j].push(t),
                other => bail!("loop scan output {j} is {}, not a tensor", other.kind()),
            }
        }
        i += 1;
    }
    let mut out = carried;
    for (j, items) in scans.iter().enumerate() {
        let dtype = declared_dtype(body, 1 + n + j);
        if items.windows(2).any(|w| w[0].shape() != w[1].shape()) {
            bail!("loop scan output {j} changes shape between iterations");
        }
        out.push(Value::Tensor(stack(items, 0, dtype)?));
    }
    check_count(out, num_outputs)
}

fn run_scan(s: &ScanOp, args: &[Option<Arg>], num_outputs: usize) -> Result<Vec<Value>> {
    let caps = usize::try_from(s.captures).unwrap_or(0);
    let m = usize::try_from(s.num_scan_inputs).unwrap_or(0);
    let n = args
        .len()
        .checked_sub(m + caps)
        .ok_or_else(|| RuntimeError::op("scan has too few inputs"))?;
    let mut states = values(&args[..n], "scan")?;
    let mut scanned = Vec::with_capacity(m);
    for i in 0..m {
        scanned.push(tensor(arg(args, n + i, "scan input")?, "scan input")?);
    }
    let captured = values(&args[n + m..], "scan")?;
    let pick =
        |v: &Option<Vec<i64>>, i: usize| v.as_ref().and_then(|v| v.get(i)).copied().unwrap_or(0);
    let mut axes = Vec::with_capacity(m);
    let mut len = None;
    for (i, x) in scanned.iter().enumerate() {
        let ax = crate::broadcast::norm_axis(pick(&s.scan_input_axes, i), x.rank())?;
        let l = x.shape()[ax];
        if len.is_some_and(|p| p != l) {
            bail!("scan inputs have different lengths");
        }
        len = Some(l);
        axes.push(ax);
    }
    let len = len.unwrap_or(0);
    let body = s.body.graph();
    let ex = Executor::new(body)?;
    let k = body.outputs.len().saturating_sub(n);
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); k];
    for t in 0..len {
        let mut ins = states.clone();
        for (i, x) in scanned.iter().enumerate() {
            let at = if pick(&s.scan_input_directions, i) == 1 {
                len - 1 - t
            } else {
                t
            };
            let slice = narrow(x, axes[i], at, 1)?;
            ins.push(Value::Tensor(squeeze(&slice, Some(vec![axes[i] as i64]))?));
        }
        ins.extend(captured.iter().cloned());
        let out = run_body(&ex, body, ins)?;
        if out.len() != n + k {
            bail!(
                "the scan body gives {} outputs, expected {}",
                out.len(),
                n + k
            );
        }
        let mut it = out.into_iter();
        states = it.by_ref().take(n).collect();
        for (j, v) in it.enumerate() {
            match v {
                Value::Tensor(x) => outs[j].push(x),
                other => bail!("scan output {j} is {}, not a tensor", other.kind()),
            }
        }
    }
    let mut res = states;
    for (j, mut items) in outs.into_iter().enumerate() {
        if pick(&s.scan_output_directions, j) == 1 {
            items.reverse();
        }
        let dtype = declared_dtype(body, n + j);
        res.push(Value::Tensor(stack(
            &items,
            pick(&s.scan_output_axes, j),
            dtype,
        )?));
    }
    check_count(res, num_outputs)
}

fn run_sequence_map(
    body: &Subgraph,
    captures: i64,
    args: &[Option<Arg>],
    num_outputs: usize,
) -> Result<Vec<Value>> {
    let caps = usize::try_from(captures).unwrap_or(0);
    let n_in = args
        .len()
        .checked_sub(caps)
        .filter(|&n| n >= 1)
        .ok_or_else(|| RuntimeError::op("sequence_map needs a sequence"))?;
    let ins: Vec<Arg> = (0..n_in)
        .map(|i| arg(args, i, "input"))
        .collect::<Result<_>>()?;
    let len = sequence(ins[0], "input 0")?.items.len();
    for a in &ins[1..] {
        if let Arg::Other(Value::Sequence(s)) = a {
            if s.items.len() != len {
                bail!("sequence_map inputs have different lengths");
            }
        }
    }
    let captured = values(&args[n_in..], "sequence_map")?;
    let g = body.graph();
    let ex = Executor::new(g)?;
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); g.outputs.len()];
    for i in 0..len {
        let mut vals = Vec::with_capacity(n_in + caps);
        for a in &ins {
            vals.push(match a {
                Arg::Other(Value::Sequence(s)) => Value::Tensor(s.items[i].clone()),
                other => other.to_value(),
            });
        }
        vals.extend(captured.iter().cloned());
        let out = run_body(&ex, g, vals)?;
        for (j, v) in out.into_iter().enumerate() {
            match v {
                Value::Tensor(t) if j < outs.len() => outs[j].push(t),
                other => bail!("sequence_map body output {j} is {}", other.kind()),
            }
        }
    }
    let res = outs
        .into_iter()
        .enumerate()
        .map(|(j, items)| {
            Value::Sequence(Sequence {
                dtype: items.first().map_or(declared_dtype(g, j), |t| t.dtype()),
                items,
            })
        })
        .collect();
    check_count(res, num_outputs)
}

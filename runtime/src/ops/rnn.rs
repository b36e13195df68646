//! The recurrent layers RNN, GRU and LSTM with ONNX's equations: gate order `i o f c`
//! (LSTM) and `z r h` (GRU), activations per direction with their alpha/beta taken in
//! order from the attribute lists, `clip` on the gates' pre-activations, per-batch
//! `sequence_lens` (steps beyond a sequence's length give zeros in Y and leave its state
//! alone), both layouts and both directions. Arithmetic in f64.

use crate::error::{bail, Result};
use crate::tensor::Tensor;
use compc_ir::op::{Gru, Lstm, Rnn};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rnn,
    Gru,
    Lstm,
}

impl Kind {
    fn gates(self) -> usize {
        match self {
            Kind::Rnn => 1,
            Kind::Gru => 3,
            Kind::Lstm => 4,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Rnn => "rnn",
            Kind::Gru => "gru",
            Kind::Lstm => "lstm",
        }
    }
    /// Activations per direction and their defaults.
    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Kind::Rnn => &["Tanh"],
            Kind::Gru => &["Sigmoid", "Tanh"],
            Kind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// An activation function with its parameters.
#[derive(Clone, Copy)]
struct Act {
    kind: ActKind,
    alpha: f64,
    beta: f64,
}

#[derive(Clone, Copy)]
enum ActKind {
    Relu,
    Tanh,
    Sigmoid,
    Affine,
    LeakyRelu,
    ThresholdedRelu,
    ScaledTanh,
    HardSigmoid,
    Elu,
    Softsign,
    Softplus,
}

impl Act {
    fn apply(self, x: f64) -> f64 {
        let (a, b) = (self.alpha, self.beta);
        match self.kind {
            ActKind::Relu => x.max(0.0),
            ActKind::Tanh => x.tanh(),
            ActKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            ActKind::Affine => a * x + b,
            ActKind::LeakyRelu => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            ActKind::ThresholdedRelu => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            ActKind::ScaledTanh => a * (b * x).tanh(),
            ActKind::HardSigmoid => (a * x + b).clamp(0.0, 1.0),
            ActKind::Elu => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            ActKind::Softsign => x / (1.0 + x.abs()),
            ActKind::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// Resolves the activation names and their alpha/beta lists (consumed in order by the
/// activations that take them, defaults otherwise).
fn activations(names: &[String], alphas: &[f32], betas: &[f32], what: &str) -> Result<Vec<Act>> {
    let (mut ai, mut bi) = (0, 0);
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let (kind, da, db, ua, ub) = match n.to_ascii_lowercase().as_str() {
            "relu" => (ActKind::Relu, 0.0, 0.0, false, false),
            "tanh" => (ActKind::Tanh, 0.0, 0.0, false, false),
            "sigmoid" => (ActKind::Sigmoid, 0.0, 0.0, false, false),
            "affine" => (ActKind::Affine, 1.0, 0.0, true, true),
            "leakyrelu" => (ActKind::LeakyRelu, 0.01, 0.0, true, false),
            "thresholdedrelu" => (ActKind::ThresholdedRelu, 1.0, 0.0, true, false),
            "scaledtanh" => (ActKind::ScaledTanh, 1.0, 1.0, true, true),
            "hardsigmoid" => (ActKind::HardSigmoid, 0.2, 0.5, true, true),
            "elu" => (ActKind::Elu, 1.0, 0.0, true, false),
            "softsign" => (ActKind::Softsign, 0.0, 0.0, false, false),
            "softplus" => (ActKind::Softplus, 0.0, 0.0, false, false),
            other => bail!("{what} activation `{other}` is not supported"),
        };
        let mut alpha = da;
        if ua {
            if let Some(&a) = alphas.get(ai) {
                alpha = a as f64;
            }
            ai += 1;
        }
        let mut beta = db;
        if ub {
            if let Some(&b) = betas.get(bi) {
                beta = b as f64;
            }
            bi += 1;
        }
        out.push(Act { kind, alpha, beta });
    }
    Ok(out)
}

/// The attributes all three layers share.
struct Common<'a> {
    acts: &'a Option<Vec<String>>,
    alpha: &'a Option<Vec<f32>>,
    beta: &'a Option<Vec<f32>>,
    clip: Option<f32>,
    direction: &'a str,
    hidden_size: Option<i64>,
    layout: i64,
}

/// Runs one layer. `inputs`: X, W, R, B, sequence_lens, initial_h (then initial_c and P
/// for LSTM).
fn run(
    kind: Kind,
    inputs: &[Option<&Tensor>],
    c: &Common,
    linear_before_reset: bool,
    input_forget: bool,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    let what = kind.name();
    let get = |i: usize| inputs.get(i).copied().flatten();
    let (Some(x), Some(w), Some(r)) = (get(0), get(1), get(2)) else {
        bail!("{what} needs X, W and R");
    };
    if !x.dtype().is_float() || x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
        bail!(
            "{what} needs float X, W, R of rank 3, got {} {:?}, {:?}, {:?}",
            x.dtype(),
            x.shape(),
            w.shape(),
            r.shape()
        );
    }
    let dirs = match c.direction {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => bail!("{what} direction `{other}` is not forward, reverse or bidirectional"),
    };
    let layout1 = match c.layout {
        0 => false,
        1 => true,
        other => bail!("{what} layout {other} is not 0 or 1"),
    };
    let (seq, batch, input) = if layout1 {
        (x.shape()[1], x.shape()[0], x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2])
    };
    let g = kind.gates();
    let hidden = match c.hidden_size {
        Some(h) if h > 0 => h as usize,
        Some(h) => bail!("{what} hidden_size {h} must be positive"),
        None => r.shape()[2],
    };
    if w.shape() != [dirs, g * hidden, input] || r.shape() != [dirs, g * hidden, hidden] {
        bail!(
            "{what}: W {:?} and R {:?} do not fit {dirs} direction(s), hidden size {hidden}, input size {input}",
            w.shape(),
            r.shape()
        );
    }
    let acts_per_dir = kind.default_acts().len();
    let names: Vec<String> = match c.acts {
        Some(a) => a.clone(),
        None => (0..dirs)
            .flat_map(|_| kind.default_acts().iter().map(|s| s.to_string()))
            .collect(),
    };
    if names.len() != acts_per_dir * dirs {
        bail!(
            "{what} needs {} activations for {dirs} direction(s), got {}",
            acts_per_dir * dirs,
            names.len()
        );
    }
    let acts = activations(
        &names,
        c.alpha.as_deref().unwrap_or(&[]),
        c.beta.as_deref().unwrap_or(&[]),
        what,
    )?;
    let clip = c.clip.map(|v| v as f64);
    let cl = |v: f64| clip.map_or(v, |c| v.clamp(-c, c));

    let xv = x.to_f64_vec();
    let (wv, rv) = (w.to_f64_vec(), r.to_f64_vec());
    let bias = match get(3) {
        Some(b) if b.shape() != [dirs, 2 * g * hidden] => {
            bail!(
                "{what}: B {:?} should be [{dirs}, {}]",
                b.shape(),
                2 * g * hidden
            )
        }
        Some(b) => b.to_f64_vec(),
        None => vec![0.0; dirs * 2 * g * hidden],
    };
    let lens: Vec<usize> = match get(4) {
        Some(l) => {
            let v = l.to_i64_vec();
            if v.len() != batch || v.iter().any(|&s| s < 0 || s as usize > seq) {
                bail!("{what}: sequence_lens {v:?} do not fit batch {batch} and {seq} steps");
            }
            v.into_iter().map(|s| s as usize).collect()
        }
        None => vec![seq; batch],
    };
    // State tensors are [dirs, batch, hidden] (layout 0) or [batch, dirs, hidden].
    let state_shape = if layout1 {
        [batch, dirs, hidden]
    } else {
        [dirs, batch, hidden]
    };
    let state_at = |d: usize, b: usize| {
        if layout1 {
            (b * dirs + d) * hidden
        } else {
            (d * batch + b) * hidden
        }
    };
    let init = |i: usize, name: &str| -> Result<Vec<f64>> {
        match get(i) {
            Some(t) if t.shape() != state_shape => {
                bail!("{what}: {name} {:?} should be {state_shape:?}", t.shape())
            }
            Some(t) => Ok(t.to_f64_vec()),
            None => Ok(vec![0.0; dirs * batch * hidden]),
        }
    };
    let h0 = init(5, "initial_h")?;
    let c0 = if kind == Kind::Lstm {
        init(6, "initial_c")?
    } else {
        Vec::new()
    };
    let peep = match get(7) {
        Some(p) if kind == Kind::Lstm => {
            if p.shape() != [dirs, 3 * hidden] {
                bail!(
                    "{what}: P {:?} should be [{dirs}, {}]",
                    p.shape(),
                    3 * hidden
                );
            }
            p.to_f64_vec()
        }
        _ => vec![0.0; dirs * 3 * hidden],
    };

    let mut y = vec![0f64; seq * dirs * batch * hidden];
    let y_at = |t: usize, d: usize, b: usize| {
        if layout1 {
            ((b * seq + t) * dirs + d) * hidden
        } else {
            ((t * dirs + d) * batch + b) * hidden
        }
    };
    let x_at = |t: usize, b: usize| {
        if layout1 {
            (b * seq + t) * input
        } else {
            (t * batch + b) * input
        }
    };
    let mut yh = vec![0f64; dirs * batch * hidden];
    let mut yc = vec![0f64; dirs * batch * hidden];
    for d in 0..dirs {
        let reverse = c.direction == "reverse" || d == 1;
        let a = &acts[d * acts_per_dir..][..acts_per_dir];
        let wd = &wv[d * g * hidden * input..][..g * hidden * input];
        let rd = &rv[d * g * hidden * hidden..][..g * hidden * hidden];
        let (wb, rb) = (
            &bias[d * 2 * g * hidden..][..g * hidden],
            &bias[(d * 2 + 1) * g * hidden..][..g * hidden],
        );
        let p = &peep[d * 3 * hidden..][..3 * hidden];
        for b in 0..batch {
            let s = state_at(d, b);
            let mut h = h0[s..s + hidden].to_vec();
            let mut cs = if kind == Kind::Lstm {
                c0[s..s + hidden].to_vec()
            } else {
                Vec::new()
            };
            let n = lens[b];
            for step in 0..n {
                let t = if reverse { n - 1 - step } else { step };
                let xt = &xv[x_at(t, b)..][..input];
                // Gate pre-activations from the input and from the previous state.
                let mut xw = vec![0f64; g * hidden];
                let mut hr = vec![0f64; g * hidden];
                for j in 0..g * hidden {
                    xw[j] = (0..input).map(|k| xt[k] * wd[j * input + k]).sum::<f64>() + wb[j];
                    hr[j] = (0..hidden).map(|k| h[k] * rd[j * hidden + k]).sum::<f64>() + rb[j];
                }
                let mut hn = vec![0f64; hidden];
                match kind {
                    Kind::Rnn => {
                        for j in 0..hidden {
                            hn[j] = a[0].apply(cl(xw[j] + hr[j]));
                        }
                    }
                    Kind::Gru => {
                        for j in 0..hidden {
                            let z = a[0].apply(cl(xw[j] + hr[j]));
                            let rr = a[0].apply(cl(xw[hidden + j] + hr[hidden + j]));
                            let hh = if linear_before_reset {
                                a[1].apply(cl(xw[2 * hidden + j] + rr * hr[2 * hidden + j]))
                            } else {
                                // (r ⊙ H) · Rhᵀ needs r for every k, computed below.
                                f64::NAN
                            };
                            hn[j] = hh;
                            xw[j] = z;
                            hr[hidden + j] = rr;
                        }
                        if !linear_before_reset {
                            let rh = &rd[2 * hidden * hidden..];
                            for j in 0..hidden {
                                let s: f64 = (0..hidden)
                                    .map(|k| hr[hidden + k] * h[k] * rh[j * hidden + k])
                                    .sum();
                                hn[j] = a[1].apply(cl(xw[2 * hidden + j] + s + rb[2 * hidden + j]));
                            }
                        }
                        for j in 0..hidden {
                            let z = xw[j];
                            hn[j] = (1.0 - z) * hn[j] + z * h[j];
                        }
                    }
                    Kind::Lstm => {
                        for j in 0..hidden {
                            let pre = |q: usize| xw[q * hidden + j] + hr[q * hidden + j];
                            let i = a[0].apply(cl(pre(0) + p[j] * cs[j]));
                            let f = if input_forget {
                                1.0 - i
                            } else {
                                a[0].apply(cl(pre(2) + p[2 * hidden + j] * cs[j]))
                            };
                            let cc = a[1].apply(cl(pre(3)));
                            let cn = f * cs[j] + i * cc;
                            let o = a[0].apply(cl(pre(1) + p[hidden + j] * cn));
                            hn[j] = o * a[2].apply(cn);
                            cs[j] = cn;
                        }
                    }
                }
                h = hn;
                y[y_at(t, d, b)..][..hidden].copy_from_slice(&h);
            }
            yh[s..s + hidden].copy_from_slice(&h);
            if kind == Kind::Lstm {
                yc[s..s + hidden].copy_from_slice(&cs);
            }
        }
    }
    let dt = x.dtype();
    let y_shape = if layout1 {
        vec![batch, seq, dirs, hidden]
    } else {
        vec![seq, dirs, batch, hidden]
    };
    let mut out = vec![
        Tensor::from_f64_as(dt, y_shape, y)?,
        Tensor::from_f64_as(dt, state_shape.to_vec(), yh)?,
    ];
    if kind == Kind::Lstm {
        out.push(Tensor::from_f64_as(dt, state_shape.to_vec(), yc)?);
    }
    out.truncate(num_outputs.max(1));
    Ok(out)
}

pub fn rnn(inputs: &[Option<&Tensor>], a: &Rnn, num_outputs: usize) -> Result<Vec<Tensor>> {
    let c = Common {
        acts: &a.activations,
        alpha: &a.activation_alpha,
        beta: &a.activation_beta,
        clip: a.clip,
        direction: &a.direction,
        hidden_size: a.hidden_size,
        layout: a.layout,
    };
    run(Kind::Rnn, inputs, &c, false, false, num_outputs)
}

pub fn gru(inputs: &[Option<&Tensor>], a: &Gru, num_outputs: usize) -> Result<Vec<Tensor>> {
    let c = Common {
        acts: &a.activations,
        alpha: &a.activation_alpha,
        beta: &a.activation_beta,
        clip: a.clip,
        direction: &a.direction,
        hidden_size: a.hidden_size,
        layout: a.layout,
    };
    run(
        Kind::Gru,
        inputs,
        &c,
        a.linear_before_reset,
        false,
        num_outputs,
    )
}

pub fn lstm(inputs: &[Option<&Tensor>], a: &Lstm, num_outputs: usize) -> Result<Vec<Tensor>> {
    let c = Common {
        acts: &a.activations,
        alpha: &a.activation_alpha,
        beta: &a.activation_beta,
        clip: a.clip,
        direction: &a.direction,
        hidden_size: a.hidden_size,
        layout: a.layout,
    };
    run(Kind::Lstm, inputs, &c, false, a.input_forget, num_outputs)
}

//! The `ai.onnx.preview.training` optimizers: one update step of Adagrad, Adam and
//! Momentum for any number of tensors, with the formulas of ONNX's operator spec. Inputs
//! are the learning rate R, the step count T, then the tensors grouped by role (all X,
//! then all G, then each state); outputs are the new tensors, then the new states.

use crate::error::{bail, Result};
use crate::tensor::Tensor;
use compc_ir::op::{Adagrad, Adam, Momentum};

fn scalar(t: &Tensor, what: &str) -> Result<f64> {
    match t.get_f64(0) {
        Some(v) if t.numel() == 1 => Ok(v),
        _ => bail!("{what} must be a scalar, got shape {:?}", t.shape()),
    }
}

/// R, T and the `groups` role groups of `n` tensors each, checked for matching shapes.
fn split<'a>(
    inputs: &[&'a Tensor],
    groups: usize,
    what: &str,
) -> Result<(f64, f64, Vec<Vec<&'a Tensor>>)> {
    let Some((r, rest)) = inputs.split_first() else {
        bail!("{what} needs R, T and the tensors to update");
    };
    let Some((t, rest)) = rest.split_first() else {
        bail!("{what} needs R, T and the tensors to update");
    };
    if rest.is_empty() || rest.len() % groups != 0 {
        bail!(
            "{what} needs {groups} inputs per updated tensor after R and T, got {}",
            rest.len()
        );
    }
    let n = rest.len() / groups;
    let g: Vec<Vec<&Tensor>> = rest.chunks(n).map(|c| c.to_vec()).collect();
    for i in 0..n {
        for grp in &g {
            if grp[i].shape() != g[0][i].shape() || !grp[i].dtype().is_float() {
                bail!(
                    "{what}: tensor {i} has mismatched or non-float inputs: {:?} vs {:?}",
                    grp[i].shape(),
                    g[0][i].shape()
                );
            }
        }
    }
    Ok((scalar(r, "R")?, scalar(t, "T")?, g))
}

fn like(t: &Tensor, v: Vec<f64>) -> Result<Tensor> {
    Tensor::from_f64_as(t.dtype(), t.shape().to_vec(), v)
}

pub fn adagrad(inputs: &[&Tensor], a: &Adagrad) -> Result<Vec<Tensor>> {
    let (r, t, g) = split(inputs, 3, "adagrad")?;
    let lr = r / (1.0 + t * a.decay_factor as f64);
    let (norm, eps) = (a.norm_coefficient as f64, a.epsilon as f64);
    let (mut xs, mut hs) = (Vec::new(), Vec::new());
    for i in 0..g[0].len() {
        let (x, gr, h) = (
            g[0][i].to_f64_vec(),
            g[1][i].to_f64_vec(),
            g[2][i].to_f64_vec(),
        );
        let mut xn = Vec::with_capacity(x.len());
        let mut hn = Vec::with_capacity(x.len());
        for k in 0..x.len() {
            let greg = norm * x[k] + gr[k];
            let h_new = h[k] + greg * greg;
            xn.push(x[k] - lr * greg / (h_new.sqrt() + eps));
            hn.push(h_new);
        }
        xs.push(like(g[0][i], xn)?);
        hs.push(like(g[2][i], hn)?);
    }
    xs.extend(hs);
    Ok(xs)
}

pub fn momentum(inputs: &[&Tensor], a: &Momentum) -> Result<Vec<Tensor>> {
    let (r, t, g) = split(inputs, 3, "momentum")?;
    let nesterov = match a.mode.as_str() {
        "standard" => false,
        "nesterov" => true,
        other => bail!("momentum mode `{other}` is not standard or nesterov"),
    };
    let (alpha, norm) = (a.alpha as f64, a.norm_coefficient as f64);
    let beta = if t > 0.0 { a.beta as f64 } else { 1.0 };
    let (mut xs, mut vs) = (Vec::new(), Vec::new());
    for i in 0..g[0].len() {
        let (x, gr, v) = (
            g[0][i].to_f64_vec(),
            g[1][i].to_f64_vec(),
            g[2][i].to_f64_vec(),
        );
        let mut xn = Vec::with_capacity(x.len());
        let mut vn = Vec::with_capacity(x.len());
        for k in 0..x.len() {
            let greg = norm * x[k] + gr[k];
            let v_new = alpha * v[k] + beta * greg;
            let step = if nesterov {
                greg + alpha * v_new
            } else {
                v_new
            };
            xn.push(x[k] - r * step);
            vn.push(v_new);
        }
        xs.push(like(g[0][i], xn)?);
        vs.push(like(g[2][i], vn)?);
    }
    xs.extend(vs);
    Ok(xs)
}

pub fn adam(inputs: &[&Tensor], a: &Adam) -> Result<Vec<Tensor>> {
    let (r, t, g) = split(inputs, 4, "adam")?;
    let (alpha, beta) = (a.alpha as f64, a.beta as f64);
    let (norm, post, eps) = (
        a.norm_coefficient as f64,
        a.norm_coefficient_post as f64,
        a.epsilon as f64,
    );
    let lr = if t > 0.0 {
        r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
    } else {
        r
    };
    let (mut xs, mut vs, mut hs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..g[0].len() {
        let x = g[0][i].to_f64_vec();
        let (gr, v, h) = (
            g[1][i].to_f64_vec(),
            g[2][i].to_f64_vec(),
            g[3][i].to_f64_vec(),
        );
        let (mut xn, mut vn, mut hn) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..x.len() {
            let greg = norm * x[k] + gr[k];
            let v_new = alpha * v[k] + (1.0 - alpha) * greg;
            let h_new = beta * h[k] + (1.0 - beta) * greg * greg;
            let x_new = x[k] - lr * v_new / (h_new.sqrt() + eps);
            xn.push((1.0 - post) * x_new);
            vn.push(v_new);
            hn.push(h_new);
        }
        xs.push(like(g[0][i], xn)?);
        vs.push(like(g[2][i], vn)?);
        hs.push(like(g[3][i], hn)?);
    }
    xs.extend(vs);
    xs.extend(hs);
    Ok(xs)
}

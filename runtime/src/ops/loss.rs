//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, as ONNX's reference defines
//! them: the loss of element `(n, d…)` is `-x[n, t, d…] · w[t]` for target `t`; targets equal
//! to `ignore_index` contribute nothing (and no weight); "mean" divides by the summed
//! weights of the counted targets (their number when there are no weights and targets
//! may be ignored, else the element count).

use crate::error::{bail, Result};
use crate::ops::reduce::{softmax, SoftmaxKind};
use crate::tensor::Tensor;
use compc_ir::op::Loss;

/// The loss from log-probabilities `x` `[N, C, d…]` and integer targets `[N, d…]`.
pub fn nll_loss(x: &Tensor, target: &Tensor, weight: Option<&Tensor>, l: &Loss) -> Result<Tensor> {
    if !x.dtype().is_float() {
        bail!("the loss needs float scores, got {}", x.dtype());
    }
    if !target.dtype().is_int() {
        bail!("the loss needs integer targets, got {}", target.dtype());
    }
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("scores must be [N, C, ...], got shape {xs:?}");
    }
    let (n, c) = (xs[0], xs[1]);
    let mut want = vec![n];
    want.extend(&xs[2..]);
    if target.shape() != want.as_slice() {
        bail!(
            "targets of shape {:?} do not fit scores of shape {xs:?} (expected {want:?})",
            target.shape()
        );
    }
    let d: usize = xs[2..].iter().product();
    let w = match weight {
        Some(w) if w.shape() != [c] => {
            bail!("weights must be [C] = [{c}], got shape {:?}", w.shape())
        }
        Some(w) => Some(w.to_f64_vec()),
        None => None,
    };
    let xv = x.to_f64_vec();
    let tv = target.to_i64_vec();
    let mut loss = vec![0f64; n * d];
    let mut wsum = 0f64;
    for i in 0..n {
        for j in 0..d {
            let t = tv[i * d + j];
            if Some(t) == l.ignore_index {
                continue;
            }
            if t < 0 || t as usize >= c {
                bail!("target {t} is out of range for {c} classes");
            }
            let t = t as usize;
            let wt = w.as_ref().map_or(1.0, |w| w[t]);
            loss[i * d + j] = -xv[(i * c + t) * d + j] * wt;
            wsum += wt;
        }
    }
    let out = match l.reduction.as_str() {
        "none" => return Tensor::from_f64_as(x.dtype(), target.shape().to_vec(), loss),
        "sum" => loss.iter().sum(),
        "mean" => {
            let s: f64 = loss.iter().sum();
            if w.is_some() || l.ignore_index.is_some() {
                s / wsum
            } else {
                s / loss.len() as f64
            }
        }
        other => bail!("reduction `{other}` is not none, sum or mean"),
    };
    Tensor::from_f64_as(x.dtype(), vec![], vec![out])
}

/// The loss of `log_softmax(scores, axis 1)`, and the log-probabilities when asked for.
pub fn softmax_cross_entropy(
    scores: &Tensor,
    labels: &Tensor,
    weight: Option<&Tensor>,
    l: &Loss,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    if scores.rank() < 2 {
        bail!("scores must be [N, C, ...], got shape {:?}", scores.shape());
    }
    let log_prob = softmax(scores, 1, SoftmaxKind::LogSoftmax)?;
    let loss = nll_loss(&log_prob, labels, weight, l)?;
    let mut out = vec![loss];
    if num_outputs > 1 {
        out.push(log_prob);
    }
    Ok(out)
}

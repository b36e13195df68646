//! Reading constants as float64 matrices and writing transformed ones back, always as new
//! constants (a constant shared with a reader the pass does not transform keeps its value).

use crate::pass::PassError;
use compc_ir::{DType, Graph, NodeId, ValueRef};

/// A float constant read as f64, with its dims and element type.
pub struct Mat64 {
    pub data: Vec<f64>,
    pub dims: Vec<u64>,
    pub dtype: DType,
    pub name: String,
}

pub fn read(g: &Graph, v: ValueRef, what: &str) -> Result<Mat64, PassError> {
    let w = g
        .const_weight(v)
        .ok_or_else(|| PassError::Invalid(format!("{what} is not a constant")))?;
    if !matches!(w.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
        return Err(PassError::Invalid(format!(
            "{what} (`{}`) is {}, not a float weight; run rotate before quant",
            w.name, w.dtype
        )));
    }
    let v = w
        .to_f32_vec()
        .map_err(|e| PassError::Invalid(format!("{what}: {e}")))?;
    Ok(Mat64 {
        data: v.into_iter().map(|x| x as f64).collect(),
        dims: w.dims.clone(),
        dtype: w.dtype,
        name: w.name.clone(),
    })
}

/// Reads input `idx` of `node` (a constant).
pub fn read_input(g: &Graph, node: NodeId, idx: usize, what: &str) -> Result<Mat64, PassError> {
    let v = g
        .node(node)
        .input(idx)
        .ok_or_else(|| PassError::Invalid(format!("{what}: the input is missing")))?;
    read(g, v, what)
}

/// A new constant holding `m` (cast back to its element type).
pub fn add_const(g: &mut Graph, m: &Mat64, suffix: &str) -> Result<ValueRef, PassError> {
    let t = compc_runtime::Tensor::from_f32_as(
        m.dtype,
        m.dims.iter().map(|&d| d as usize).collect(),
        m.data.iter().map(|&x| x as f32).collect(),
    )?;
    let c = g.add_const(t.to_weight(&format!("{}{suffix}", m.name))?);
    Ok(ValueRef::new(c, 0))
}

/// Makes input `idx` of `node` read a new constant holding `m`.
pub fn write_input(
    g: &mut Graph,
    node: NodeId,
    idx: usize,
    m: &Mat64,
    suffix: &str,
) -> Result<(), PassError> {
    let v = add_const(g, m, suffix)?;
    g.set_input(node, idx, Some(v));
    Ok(())
}

/// Index of the input of `node` that reads `v`.
pub fn input_index(g: &Graph, node: NodeId, v: ValueRef) -> Option<usize> {
    g.node(node).inputs().iter().position(|i| *i == Some(v))
}

/// `max|x| / rms(x)`: how far the largest entry stands out (√n for a single spike, about
/// 3–4 for Gaussian entries). Rotations aim to bring it down.
pub fn peak_to_rms(x: &[f64]) -> f64 {
    let n = x.len().max(1) as f64;
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
    let max = x.iter().fold(0f64, |m, v| m.max(v.abs()));
    if rms > 0.0 {
        max / rms
    } else {
        0.0
    }
}

//! String tensors: Cast to and from numbers and StringNormalizer. Numbers are written the
//! way numpy's `astype(str)` writes them (the reference ONNX's test data is made with):
//! the shortest text that reads back to the same value, positional between 1e-4 and 1e16,
//! scientific with a two-digit exponent outside.

use crate::error::{bail, Result};
use crate::tensor::{Tensor, TensorData};
use crate::value::StrTensor;
use compc_ir::op::StringNormalizer;
use compc_ir::DType;

fn float_text<T: std::fmt::Display + std::fmt::LowerExp + Copy + Into<f64>>(v: T) -> String {
    let x: f64 = v.into();
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust writes `1.5e-5`; numpy `1.5e-05`.
        let s = format!("{v:e}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

pub fn to_strings(t: &Tensor) -> Result<StrTensor> {
    let values: Vec<String> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| float_text(x)).collect(),
        TensorData::F64(v) => v.iter().map(|&x| float_text(x)).collect(),
        TensorData::Bool(_) => bail!("cast of bool to string is not supported"),
        TensorData::U64(v) => v.iter().map(|x| x.to_string()).collect(),
        _ => t.to_i64_vec().iter().map(|x| x.to_string()).collect(),
    };
    Ok(StrTensor {
        shape: t.shape().to_vec(),
        values,
    })
}

pub fn from_strings(s: &StrTensor, to: DType) -> Result<Tensor> {
    if to.is_float() {
        let v = s
            .values
            .iter()
            .map(|x| match x.trim().parse::<f64>() {
                Ok(v) => Ok(v),
                Err(_) => bail!("cannot read `{x}` as a number"),
            })
            .collect::<Result<Vec<f64>>>()?;
        return Tensor::from_f64_as(to, s.shape.clone(), v);
    }
    if to.is_int() {
        let v = s
            .values
            .iter()
            .map(|x| match x.trim().parse::<i64>() {
                Ok(v) => Ok(v),
                Err(_) => bail!("cannot read `{x}` as an integer"),
            })
            .collect::<Result<Vec<i64>>>()?;
        return Tensor::from_i64_as(to, s.shape.clone(), v);
    }
    bail!("cast of strings to {to} is not supported")
}

pub fn string_normalizer(x: &StrTensor, a: &StringNormalizer) -> Result<StrTensor> {
    let two_d = match x.shape.as_slice() {
        [_] => false,
        [1, _] => true,
        s => bail!("string_normalizer needs a [C] or [1, C] input, got {s:?}"),
    };
    let stops = a.stopwords.clone().unwrap_or_default();
    let is_stop = |w: &str| {
        if a.is_case_sensitive {
            stops.iter().any(|s| s == w)
        } else {
            let w = w.to_lowercase();
            stops.iter().any(|s| s.to_lowercase() == w)
        }
    };
    let change = |w: &str| -> Result<String> {
        Ok(match a.case_change_action.as_str() {
            "NONE" => w.to_string(),
            "LOWER" => w.to_lowercase(),
            "UPPER" => w.to_uppercase(),
            other => {
                bail!("string_normalizer case_change_action `{other}` is not NONE, LOWER or UPPER")
            }
        })
    };
    let mut out: Vec<String> = Vec::with_capacity(x.values.len());
    for w in x.values.iter().filter(|w| !is_stop(w)) {
        out.push(change(w)?);
    }
    // Everything removed leaves one empty string (ONNX's rule).
    if out.is_empty() {
        out.push(String::new());
    }
    let shape = if two_d {
        vec![1, out.len()]
    } else {
        vec![out.len()]
    };
    Ok(StrTensor { shape, values: out })
}

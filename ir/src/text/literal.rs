//! `dense<...>` bodies: stored little-endian bytes shown as numbers, and numbers turned back
//! into the same bytes. Bytes that numbers cannot reproduce exactly (string tensors, NaN
//! payloads, a wrong byte count, bool bytes other than 0/1) are shown as raw hex,
//! `dense<"0x0A1B">`, so every literal and inline weight round-trips bit for bit.

use super::ParseError;
use crate::dtype::DType;

/// Shortest text that parses back to the same f32 (`{:?}` always has a `.` or an exponent),
/// `nan` for NaN.
pub(crate) fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v:?}")
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v:?}")
    }
}

/// The text between `dense<` and `>` for `numel` elements of `dtype` stored in `bytes`.
pub(crate) fn dense_body(dtype: DType, bytes: &[u8], numel: Option<u64>) -> String {
    numel
        .and_then(|n| format_elements(dtype, bytes, n))
        .unwrap_or_else(|| format_hex(bytes))
}

fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2 + 4);
    s.push_str("\"0x");
    for b in bytes {
        s.push_str(&format!("{b:02X}"));
    }
    s.push('"');
    s
}

/// `[1, 2, 3]`, or `None` when the numbers would not give back exactly these bytes.
fn format_elements(dtype: DType, b: &[u8], numel: u64) -> Option<String> {
    if dtype.storage_bytes(numel)? != b.len() as u64 {
        return None;
    }
    let items: Vec<String> = match dtype {
        DType::Str => return None,
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                exact_nan32(v).then(|| fmt_f32(v))
            })
            .collect::<Option<_>>()?,
        DType::F64 => b
            .chunks_exact(8)
            .map(|c| {
                let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                (!v.is_nan() || v.to_bits() == f64::NAN.to_bits()).then(|| fmt_f64(v))
            })
            .collect::<Option<_>>()?,
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| {
                let v = half::f16::from_le_bytes([c[0], c[1]]);
                let back = half::f16::from_f32(v.to_f32());
                (back.to_bits() == v.to_bits()).then(|| fmt_f32(v.to_f32()))
            })
            .collect::<Option<_>>()?,
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| {
                let v = half::bf16::from_le_bytes([c[0], c[1]]);
                let back = half::bf16::from_f32(v.to_f32());
                (back.to_bits() == v.to_bits()).then(|| fmt_f32(v.to_f32()))
            })
            .collect::<Option<_>>()?,
        DType::Bool => b
            .iter()
            .map(|&x| match x {
                0 => Some("false".to_string()),
                1 => Some("true".to_string()),
                _ => None,
            })
            .collect::<Option<_>>()?,
        DType::I4 | DType::U4 => {
            if numel % 2 == 1 && b.last().is_some_and(|x| x >> 4 != 0) {
                return None;
            }
            (0..numel as usize)
                .map(|i| {
                    let nib = (b[i / 2] >> ((i % 2) * 4)) & 0xF;
                    if dtype == DType::I4 {
                        (((nib << 4) as i8) >> 4).to_string()
                    } else {
                        nib.to_string()
                    }
                })
                .collect()
        }
        DType::I64 => ints(b, |c| i64::from_le_bytes(arr8(c)) as i128, 8),
        DType::U64 => ints(b, |c| u64::from_le_bytes(arr8(c)) as i128, 8),
        DType::I32 => ints(
            b,
            |c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            4,
        ),
        DType::U32 => ints(
            b,
            |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            4,
        ),
        DType::I16 => ints(b, |c| i16::from_le_bytes([c[0], c[1]]) as i128, 2),
        DType::U16 => ints(b, |c| u16::from_le_bytes([c[0], c[1]]) as i128, 2),
        DType::I8 => ints(b, |c| c[0] as i8 as i128, 1),
        DType::U8 => ints(b, |c| c[0] as i128, 1),
    };
    Some(format!("[{}]", items.join(", ")))
}

fn exact_nan32(v: f32) -> bool {
    !v.is_nan() || v.to_bits() == f32::NAN.to_bits()
}

fn arr8(c: &[u8]) -> [u8; 8] {
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

fn ints(b: &[u8], f: impl Fn(&[u8]) -> i128, width: usize) -> Vec<String> {
    b.chunks_exact(width).map(|c| f(c).to_string()).collect()
}

/// One parsed element of a `dense<[...]>` list, with its position for error messages.
#[derive(Clone, Debug)]
pub(crate) struct Elem {
    pub value: ElemValue,
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug)]
pub(crate) enum ElemValue {
    /// Number text as written (`3`, `-1.5`, `inf`).
    Num(String),
    Bool(bool),
}

/// A parsed `dense<...>` body, not yet tied to a type.
#[derive(Clone, Debug)]
pub(crate) enum Dense {
    Hex(Vec<u8>),
    List(Vec<Elem>),
}

/// Parses the `0x...` hex form (the string's contents); `None` if it is not one.
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The little-endian bytes of `dense` as a tensor of `dtype` with `numel` elements
/// (`None`: unknown, which only hex data accepts). `at` locates the `dense` keyword.
pub(crate) fn encode(
    dtype: DType,
    numel: Option<u64>,
    dense: &Dense,
    at: (usize, usize),
) -> Result<Vec<u8>, ParseError> {
    let elems = match dense {
        Dense::Hex(b) => return Ok(b.clone()),
        Dense::List(e) => e,
    };
    if numel != Some(elems.len() as u64) {
        let want = numel.map_or("an unknown number of".to_string(), |n| n.to_string());
        return Err(ParseError::new(
            at.0,
            at.1,
            format!(
                "dense literal has {} elements, its type needs {want}",
                elems.len()
            ),
        ));
    }
    if dtype == DType::Str {
        return Err(ParseError::new(
            at.0,
            at.1,
            "string tensors are written as raw bytes: dense<\"0x...\">",
        ));
    }
    if dtype.is_packed() {
        let mut out = vec![0u8; elems.len().div_ceil(2)];
        for (i, e) in elems.iter().enumerate() {
            let v = int_elem(dtype, e)? as u8 & 0xF;
            out[i / 2] |= v << ((i % 2) * 4);
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(elems.len() * dtype.bits() / 8);
    for e in elems {
        match dtype {
            DType::F32 => out.extend(float_elem::<f32>(dtype, e)?.to_le_bytes()),
            DType::F64 => out.extend(float_elem::<f64>(dtype, e)?.to_le_bytes()),
            DType::F16 => {
                out.extend(half::f16::from_f32(float_elem::<f32>(dtype, e)?).to_le_bytes())
            }
            DType::BF16 => {
                out.extend(half::bf16::from_f32(float_elem::<f32>(dtype, e)?).to_le_bytes())
            }
            _ => {
                let v = int_elem(dtype, e)?;
                let width = dtype.bits() / 8;
                out.extend(&v.to_le_bytes()[..width]);
            }
        }
    }
    Ok(out)
}

fn elem_text(e: &Elem) -> String {
    match &e.value {
        ElemValue::Num(s) => s.clone(),
        ElemValue::Bool(b) => b.to_string(),
    }
}

fn float_elem<T: std::str::FromStr>(dtype: DType, e: &Elem) -> Result<T, ParseError> {
    let bad = || {
        ParseError::new(
            e.line,
            e.col,
            format!(
                "expected a number in a {dtype} tensor, found `{}`",
                elem_text(e)
            ),
        )
    };
    match &e.value {
        ElemValue::Num(s) => s.parse::<T>().map_err(|_| bad()),
        ElemValue::Bool(_) => Err(bad()),
    }
}

fn int_range(dtype: DType) -> (i128, i128) {
    match dtype {
        DType::I64 => (i64::MIN as i128, i64::MAX as i128),
        DType::U64 => (0, u64::MAX as i128),
        DType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DType::U32 => (0, u32::MAX as i128),
        DType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DType::U16 => (0, u16::MAX as i128),
        DType::I8 => (i8::MIN as i128, i8::MAX as i128),
        DType::I4 => (-8, 7),
        DType::U4 => (0, 15),
        _ => (0, u8::MAX as i128),
    }
}

/// An integer element, range-checked; bool tensors take `true`/`false` or `0`/`1`.
fn int_elem(dtype: DType, e: &Elem) -> Result<i128, ParseError> {
    let err = |m: String| ParseError::new(e.line, e.col, m);
    let text = match &e.value {
        ElemValue::Bool(b) if dtype == DType::Bool => return Ok(*b as i128),
        ElemValue::Bool(b) => {
            return Err(err(format!(
                "expected an integer in a {dtype} tensor, found `{b}`"
            )))
        }
        ElemValue::Num(s) => s,
    };
    if super::lexer::is_float_text(text) {
        return Err(err(format!(
            "expected an integer in a {dtype} tensor, found `{text}`"
        )));
    }
    let (lo, hi) = if dtype == DType::Bool {
        (0, 1)
    } else {
        int_range(dtype)
    };
    match text.parse::<i128>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(err(format!(
            "{text} is out of range for {dtype} (from {lo} to {hi})"
        ))),
    }
}

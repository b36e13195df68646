//! Attribute values, shared by the typed op structs (which convert to and from them), the
//! text format and the ONNX frontend/backend. Names are ONNX's attribute names verbatim so
//! the text reads like the ONNX operator spec.

use crate::dtype::DType;
use std::collections::BTreeMap;

/// A small literal tensor held inline (ONNX tensor attributes such as
/// `ConstantOfShape.value`). Bytes are little-endian, packed like ONNX `raw_data`.
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    pub dtype: DType,
    pub dims: Vec<u64>,
    pub bytes: Vec<u8>,
}

impl Literal {
    pub fn scalar_f32(v: f32) -> Literal {
        Literal {
            dtype: DType::F32,
            dims: vec![],
            bytes: v.to_le_bytes().to_vec(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strs(Vec<String>),
    Type(DType),
    Tensor(Literal),
}

impl Attr {
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "an integer",
            Attr::Float(_) => "a float",
            Attr::Str(_) => "a string",
            Attr::Ints(_) => "a list of integers",
            Attr::Floats(_) => "a list of floats",
            Attr::Strs(_) => "a list of strings",
            Attr::Type(_) => "an element type",
            Attr::Tensor(_) => "a tensor",
        }
    }
}

/// Attributes sorted by name: the text format prints them in this order.
pub type Attrs = BTreeMap<String, Attr>;

/// Reads typed attributes out of an [`Attrs`] map for one op, with defaults, and rejects
/// attributes the op does not know (a typo must not be silently ignored).
pub struct AttrReader<'a> {
    op: &'a str,
    attrs: Attrs,
}

impl<'a> AttrReader<'a> {
    pub fn new(op: &'a str, attrs: Attrs) -> Self {
        AttrReader { op, attrs }
    }

    fn wrong(&self, name: &str, want: &str, got: &Attr) -> String {
        format!(
            "attribute `{name}` of `{}` must be {want}, found {}",
            self.op,
            got.kind()
        )
    }

    pub fn opt_int(&mut self, name: &str) -> Result<Option<i64>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong(name, "an integer", &other)),
        }
    }

    pub fn int(&mut self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }

    pub fn req_int(&mut self, name: &str) -> Result<i64, String> {
        self.opt_int(name)?
            .ok_or_else(|| format!("`{}` needs attribute `{name}`", self.op))
    }

    pub fn bool(&mut self, name: &str, default: bool) -> Result<bool, String> {
        Ok(self.int(name, default as i64)? != 0)
    }

    pub fn opt_float(&mut self, name: &str) -> Result<Option<f32>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(v)),
            // A hand-written `1` where a float is meant is accepted.
            Some(Attr::Int(v)) => Ok(Some(v as f32)),
            Some(other) => Err(self.wrong(name, "a float", &other)),
        }
    }

    pub fn float(&mut self, name: &str, default: f32) -> Result<f32, String> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }

    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong(name, "a string", &other)),
        }
    }

    pub fn str(&mut self, name: &str, default: &str) -> Result<String, String> {
        Ok(self.opt_str(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn opt_ints(&mut self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(Attr::Floats(v)) if v.is_empty() => Ok(Some(vec![])),
            Some(other) => Err(self.wrong(name, "a list of integers", &other)),
        }
    }

    pub fn ints(&mut self, name: &str) -> Result<Vec<i64>, String> {
        Ok(self.opt_ints(name)?.unwrap_or_default())
    }

    pub fn opt_floats(&mut self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(Attr::Ints(v)) => Ok(Some(v.into_iter().map(|x| x as f32).collect())),
            Some(other) => Err(self.wrong(name, "a list of floats", &other)),
        }
    }

    pub fn opt_strs(&mut self, name: &str) -> Result<Option<Vec<String>>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Strs(v)) => Ok(Some(v)),
            // An empty list reads as integers in the text format.
            Some(Attr::Ints(v)) if v.is_empty() => Ok(Some(vec![])),
            Some(other) => Err(self.wrong(name, "a list of strings", &other)),
        }
    }

    pub fn opt_type(&mut self, name: &str) -> Result<Option<DType>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Type(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong(name, "an element type", &other)),
        }
    }

    pub fn req_type(&mut self, name: &str) -> Result<DType, String> {
        self.opt_type(name)?
            .ok_or_else(|| format!("`{}` needs attribute `{name}`", self.op))
    }

    pub fn opt_tensor(&mut self, name: &str) -> Result<Option<Literal>, String> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong(name, "a tensor", &other)),
        }
    }

    /// Fails if any attribute was not consumed, listing the ones this op accepts.
    pub fn finish(self, accepted: &[&str]) -> Result<(), String> {
        match self.attrs.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "`{}` has no attribute `{k}` (it accepts: {})",
                self.op,
                if accepted.is_empty() {
                    "none".to_string()
                } else {
                    accepted.join(", ")
                }
            )),
        }
    }
}

/// Builds an [`Attrs`] map; attributes equal to their default are left out so printed IR
/// stays short and canonical.
#[derive(Default)]
pub struct AttrWriter {
    pub attrs: Attrs,
}

impl AttrWriter {
    pub fn int(&mut self, name: &str, v: i64, default: Option<i64>) -> &mut Self {
        if default != Some(v) {
            self.attrs.insert(name.into(), Attr::Int(v));
        }
        self
    }
    pub fn bool(&mut self, name: &str, v: bool, default: bool) -> &mut Self {
        self.int(name, v as i64, Some(default as i64))
    }
    pub fn float(&mut self, name: &str, v: f32, default: Option<f32>) -> &mut Self {
        if default.map(f32::to_bits) != Some(v.to_bits()) {
            self.attrs.insert(name.into(), Attr::Float(v));
        }
        self
    }
    pub fn str(&mut self, name: &str, v: &str, default: Option<&str>) -> &mut Self {
        if default != Some(v) {
            self.attrs.insert(name.into(), Attr::Str(v.into()));
        }
        self
    }
    pub fn opt_ints(&mut self, name: &str, v: &Option<Vec<i64>>) -> &mut Self {
        if let Some(v) = v {
            self.attrs.insert(name.into(), Attr::Ints(v.clone()));
        }
        self
    }
    pub fn ints_nonempty(&mut self, name: &str, v: &[i64]) -> &mut Self {
        if !v.is_empty() {
            self.attrs.insert(name.into(), Attr::Ints(v.to_vec()));
        }
        self
    }
    pub fn opt_int(&mut self, name: &str, v: Option<i64>) -> &mut Self {
        if let Some(v) = v {
            self.attrs.insert(name.into(), Attr::Int(v));
        }
        self
    }
    pub fn dtype(&mut self, name: &str, v: DType) -> &mut Self {
        self.attrs.insert(name.into(), Attr::Type(v));
        self
    }
    pub fn opt_dtype(&mut self, name: &str, v: Option<DType>) -> &mut Self {
        if let Some(v) = v {
            self.attrs.insert(name.into(), Attr::Type(v));
        }
        self
    }
    pub fn tensor(&mut self, name: &str, v: &Option<Literal>) -> &mut Self {
        if let Some(v) = v {
            self.attrs.insert(name.into(), Attr::Tensor(v.clone()));
        }
        self
    }
    pub fn finish(&mut self) -> Attrs {
        std::mem::take(&mut self.attrs)
    }
}

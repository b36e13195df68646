//! Tensor types: an element type and a shape whose dimensions are known numbers, named
//! symbols (`batch`, `seq`: real LLM graphs are dynamic) or unknown.

use crate::dtype::DType;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(u64),
    /// A named dimension shared by every value that has it (from ONNX `dim_param`).
    Sym(String),
    /// A dimension nothing is known about (ONNX leaves `dim_value` and `dim_param` unset).
    Unknown,
}

impl Dim {
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Self {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{{{s}}}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape is ranked (a list of dims) or unranked (nothing known, e.g. the output of a
/// custom op the importer has no shape for).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Ranked(Vec<Dim>),
    Unranked,
}

impl Shape {
    pub fn known(dims: &[u64]) -> Shape {
        Shape::Ranked(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape::Ranked(Vec::new())
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        match self {
            Shape::Ranked(d) => Some(d),
            Shape::Unranked => None,
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims().map(|d| d.len())
    }

    /// All dims as numbers, if every one is known.
    pub fn as_known(&self) -> Option<Vec<u64>> {
        self.dims()?.iter().map(Dim::known).collect()
    }

    /// Element count if every dim is known; `None` on overflow too.
    pub fn numel(&self) -> Option<u64> {
        self.as_known()?
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }

    pub fn known(dtype: DType, dims: &[u64]) -> Self {
        TensorType::new(dtype, Shape::known(dims))
    }

    pub fn unranked(dtype: DType) -> Self {
        TensorType::new(dtype, Shape::Unranked)
    }
}

/// Prints the text-format spelling: `tensor<{batch}x?x64xf32>`, `tensor<f32>` for a scalar,
/// `tensor<*xf32>` when the rank is unknown.
impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor<")?;
        match &self.shape {
            Shape::Unranked => f.write_str("*x")?,
            Shape::Ranked(dims) => {
                for d in dims {
                    write!(f, "{d}x")?;
                }
            }
        }
        write!(f, "{}>", self.dtype)
    }
}

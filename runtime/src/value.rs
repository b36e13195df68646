//! Values that are not plain tensors: sequences of tensors and optionals, which ONNX's
//! sequence ops, `Optional*` and control-flow bodies pass around, and string tensors. Tensor kernels never
//! see them; [`Value`] is what [`Executor::run_values`](crate::Executor::run_values)
//! takes and returns.

use crate::tensor::Tensor;
use compc_ir::DType;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    Sequence(Sequence),
    /// An optional tensor or sequence; `None` is the empty optional.
    Optional(Option<Box<Value>>),
    /// A tensor of strings (numeric tensors do not hold text).
    Strings(StrTensor),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StrTensor {
    pub shape: Vec<usize>,
    pub values: Vec<String>,
}

/// A sequence of tensors of one element type (shapes may differ).
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub dtype: DType,
    pub items: Vec<Tensor>,
}

impl Value {
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// "a tensor", "a sequence", "an optional": for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(_) => "a tensor",
            Value::Sequence(_) => "a sequence",
            Value::Optional(_) => "an optional",
            Value::Strings(_) => "a string tensor",
        }
    }

    /// The element type of the tensors it holds (`None` for an empty optional).
    pub fn dtype(&self) -> Option<DType> {
        match self {
            Value::Tensor(t) => Some(t.dtype()),
            Value::Sequence(s) => Some(s.dtype),
            Value::Optional(o) => o.as_ref().and_then(|v| v.dtype()),
            Value::Strings(_) => Some(DType::Str),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}

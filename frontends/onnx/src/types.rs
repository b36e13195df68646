//! ONNX element types and value types to compc's `DType` and `TensorType`.

use compc_ir::{DType, Dim, Shape, TensorType};
use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::ValueInfoProto;

/// `TensorProto.DataType` code to `DType`; `None` for types compc has no counterpart for
/// (complex, the float8 and float4 families, and unknown codes).
pub fn dtype_from_code(code: i64) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        4 => DType::U16,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        8 => DType::Str,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        12 => DType::U32,
        13 => DType::U64,
        16 => DType::BF16,
        21 => DType::U4,
        22 => DType::I4,
        _ => return None,
    })
}

/// A readable name for a code compc cannot represent, for error messages.
pub fn code_name(code: i64) -> String {
    let name = match code {
        0 => "UNDEFINED",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        17 => "FLOAT8E4M3FN",
        18 => "FLOAT8E4M3FNUZ",
        19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ",
        23 => "FLOAT4E2M1",
        24 => "FLOAT8E8M0",
        _ => return format!("element type code {code}"),
    };
    format!("element type {name}")
}

pub fn dtype_or_err(code: i64) -> Result<DType, String> {
    dtype_from_code(code).ok_or_else(|| format!("{} is not supported", code_name(code)))
}

/// The tensor type of a graph input, output or `value_info` entry. `Ok(None)` when the
/// entry carries no type at all (ONNX allows that for intermediate values). A sequence or
/// optional value has its elements' element type and no shape (the IR's convention, see
/// `compc_ir::op::control`).
pub fn tensor_type(vi: &ValueInfoProto) -> Result<Option<TensorType>, String> {
    match vi.type_.as_ref() {
        None => Ok(None),
        Some(tp) => type_of(tp),
    }
}

/// What kind of value a graph input or output holds, for readers of ONNX test data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Tensor,
    Sequence(Box<ValueKind>),
    Optional(Box<ValueKind>),
}

pub fn kind_of(tp: &onnx_protobuf::TypeProto) -> Result<ValueKind, String> {
    let elem = |e: &protobuf::MessageField<onnx_protobuf::TypeProto>| match e.as_ref() {
        Some(t) => kind_of(t),
        None => Err("a sequence or optional type without an element type".to_string()),
    };
    match &tp.value {
        None | Some(TypeValue::TensorType(_)) => Ok(ValueKind::Tensor),
        Some(TypeValue::SequenceType(s)) => Ok(ValueKind::Sequence(Box::new(elem(&s.elem_type)?))),
        Some(TypeValue::OptionalType(o)) => Ok(ValueKind::Optional(Box::new(elem(&o.elem_type)?))),
        Some(_) => Err("this value type is not supported".into()),
    }
}

fn type_of(tp: &onnx_protobuf::TypeProto) -> Result<Option<TensorType>, String> {
    let t = match &tp.value {
        None => return Ok(None),
        Some(TypeValue::TensorType(t)) => t,
        Some(TypeValue::SequenceType(s)) => {
            return match s.elem_type.as_ref().map(|e| &e.value) {
                Some(Some(TypeValue::TensorType(t))) => Ok(Some(TensorType::unranked(
                    dtype_or_err(i64::from(t.elem_type))?,
                ))),
                _ => Err("sequences of anything but tensors are not supported".into()),
            }
        }
        Some(TypeValue::OptionalType(o)) => {
            return match o.elem_type.as_ref() {
                Some(e) => match type_of(e)? {
                    Some(t) => Ok(Some(TensorType::unranked(t.dtype))),
                    None => Ok(None),
                },
                None => Err("an optional type without an element type".into()),
            }
        }
        Some(TypeValue::MapType(_)) => return Err("map types are not supported".into()),
        Some(TypeValue::SparseTensorType(_)) => {
            return Err("sparse tensor types are not supported".into())
        }
        Some(_) => return Err("this value type is not supported".into()),
    };
    let dtype = dtype_or_err(i64::from(t.elem_type))?;
    let Some(shape) = t.shape.as_ref() else {
        return Ok(Some(TensorType::unranked(dtype)));
    };
    let mut dims = Vec::with_capacity(shape.dim.len());
    for d in &shape.dim {
        dims.push(match &d.value {
            Some(DimValue::DimValue(v)) if *v >= 0 => Dim::Known(*v as u64),
            // Some exporters (Paddle among them) write -1 for a dynamic dim; onnxruntime
            // reads it as unknown, and so does compc.
            Some(DimValue::DimValue(_)) => Dim::Unknown,
            // "?" is how several exporters spell "unknown", not a name two dims share.
            Some(DimValue::DimParam(p)) if !p.is_empty() && p != "?" => Dim::Sym(p.clone()),
            _ => Dim::Unknown,
        });
    }
    Ok(Some(TensorType::new(dtype, Shape::Ranked(dims))))
}

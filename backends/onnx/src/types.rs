//! compc's `DType`/`TensorType` to ONNX element-type codes and `ValueInfoProto`.

use compc_ir::{DType, Dim, Shape, TensorType};
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{Tensor, Value};
use onnx_protobuf::{TensorShapeProto, TypeProto, ValueInfoProto};
use protobuf::MessageField;

/// The `TensorProto.DataType` code of a `DType`.
pub fn dtype_code(t: DType) -> i32 {
    match t {
        DType::F32 => 1,
        DType::U8 => 2,
        DType::I8 => 3,
        DType::U16 => 4,
        DType::I16 => 5,
        DType::I32 => 6,
        DType::I64 => 7,
        DType::Str => 8,
        DType::Bool => 9,
        DType::F16 => 10,
        DType::F64 => 11,
        DType::U32 => 12,
        DType::U64 => 13,
        DType::BF16 => 16,
        DType::U4 => 21,
        DType::I4 => 22,
    }
}

/// Symbolic dims become `dim_param`, unknown ones an empty dimension, an unranked shape
/// no shape at all.
pub fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let shape = match &ty.shape {
        Shape::Unranked => MessageField::none(),
        Shape::Ranked(dims) => MessageField::some(TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: match d {
                        Dim::Known(n) => Some(dimension::Value::DimValue(*n as i64)),
                        Dim::Sym(s) => Some(dimension::Value::DimParam(s.clone())),
                        Dim::Unknown => None,
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: MessageField::some(TypeProto {
            value: Some(Value::TensorType(Tensor {
                elem_type: dtype_code(ty.dtype),
                shape,
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether a type uses the packed 4-bit element types, which need opset 21 / IR 10.
pub fn is_int4(t: DType) -> bool {
    matches!(t, DType::I4 | DType::U4)
}

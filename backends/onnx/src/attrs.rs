//! compc's `Attr` to `AttributeProto`: element types go back to INT type codes, literal
//! tensors to `TensorProto` with `raw_data`.

use crate::types::dtype_code;
use compc_ir::{Attr, Attrs, Literal};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, TensorProto};
use protobuf::{EnumOrUnknown, MessageField};

pub fn to_protos(attrs: &Attrs) -> Vec<AttributeProto> {
    attrs.iter().map(|(k, v)| to_proto(k, v)).collect()
}

fn to_proto(name: &str, v: &Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    let kind = match v {
        Attr::Int(i) => {
            a.i = *i;
            AttributeType::INT
        }
        Attr::Type(t) => {
            a.i = i64::from(dtype_code(*t));
            AttributeType::INT
        }
        Attr::Float(f) => {
            a.f = *f;
            AttributeType::FLOAT
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec();
            AttributeType::STRING
        }
        Attr::Ints(v) => {
            a.ints = v.clone();
            AttributeType::INTS
        }
        Attr::Floats(v) => {
            a.floats = v.clone();
            AttributeType::FLOATS
        }
        Attr::Strs(v) => {
            a.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
            AttributeType::STRINGS
        }
        Attr::Tensor(l) => {
            a.t = MessageField::some(literal(l));
            AttributeType::TENSOR
        }
    };
    a.type_ = EnumOrUnknown::new(kind);
    a
}

fn literal(l: &Literal) -> TensorProto {
    TensorProto {
        dims: l.dims.iter().map(|&d| d as i64).collect(),
        data_type: dtype_code(l.dtype),
        raw_data: l.bytes.clone(),
        ..Default::default()
    }
}

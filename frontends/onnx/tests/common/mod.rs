//! Builds small ONNX models in Rust, so tests need no Python. Shared by the frontend and
//! backend tests.
#![allow(dead_code)]

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{Tensor, Value};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf_onnx::{EnumOrUnknown, MessageField};

pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;

/// A dim: a number, or a `dim_param` name.
pub enum D {
    N(i64),
    P(&'static str),
}

pub fn vi(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::N(n) => dimension::Value::DimValue(*n),
                D::P(p) => dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(Value::TensorType(Tensor {
                elem_type: elem,
                shape: MessageField::some(TensorShapeProto {
                    dim,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn with_attrs(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
    n.attribute = attrs;
    n
}

pub fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::INT),
        i: v,
        ..Default::default()
    }
}

pub fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::FLOAT),
        f: v,
        ..Default::default()
    }
}

pub fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::STRING),
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::TENSOR),
        t: MessageField::some(t),
        ..Default::default()
    }
}

pub fn a_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(AttributeType::GRAPH),
        g: MessageField::some(g),
        ..Default::default()
    }
}

pub fn t_f32(name: &str, dims: &[i64], vals: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        raw_data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Like `t_f32` but in the typed `float_data` field instead of `raw_data`.
pub fn t_f32_typed(name: &str, dims: &[i64], vals: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: vals.to_vec(),
        ..Default::default()
    }
}

pub fn t_i64(name: &str, dims: &[i64], vals: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        int64_data: vals.to_vec(),
        ..Default::default()
    }
}

pub fn t_external(name: &str, elem: i32, dims: &[i64], kv: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem,
        data_location: EnumOrUnknown::new(DataLocation::EXTERNAL),
        external_data: kv
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn graph(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> GraphProto {
    GraphProto {
        name: "test".into(),
        node: nodes,
        input: inputs,
        output: outputs,
        initializer: inits,
        ..Default::default()
    }
}

pub fn model(opset: i64, g: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "tests".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
            ..Default::default()
        }],
        graph: MessageField::some(g),
        ..Default::default()
    }
}

pub fn add_opset(m: &mut ModelProto, domain: &str, version: i64) {
    m.opset_import.push(OperatorSetIdProto {
        domain: domain.into(),
        version,
        ..Default::default()
    });
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().expect("serializing a test model")
}

/// MatMul + Add + Relu over a dynamic batch: `y = relu(x · w + b)`, x: [batch, 4].
pub fn mlp() -> ModelProto {
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
    model(
        17,
        graph(
            vec![
                node("MatMul", "fc", &["x", "w"], &["h"]),
                node("Add", "bias", &["h", "b"], &["hb"]),
                node("Relu", "act", &["hb"], &["y"]),
            ],
            vec![vi("x", FLOAT, &[D::P("batch"), D::N(4)])],
            vec![vi("y", FLOAT, &[D::P("batch"), D::N(3)])],
            vec![
                t_f32("w", &[4, 3], &w),
                t_f32_typed("b", &[3], &[0.1, -0.2, 0.3]),
            ],
        ),
    )
}

//! `AttributeProto` to compc's `Attr`. Integer attributes that ONNX uses as element-type
//! codes (`Cast.to`, ...) become `Attr::Type`, so the IR never carries raw type codes.

use crate::external::ExternalFiles;
use crate::tensor;
use crate::types::{code_name, dtype_from_code};
use compc_ir::{Attr, Attrs};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto};

/// (op type, attribute) pairs of the default domain whose INT value is a `DataType` code.
const DTYPE_ATTRS: &[(&str, &str)] = &[
    ("Cast", "to"),
    ("QuantizeLinear", "output_dtype"),
    ("DequantizeLinear", "output_dtype"),
    ("EyeLike", "dtype"),
    ("RandomNormal", "dtype"),
    ("RandomUniform", "dtype"),
    ("RandomNormalLike", "dtype"),
    ("RandomUniformLike", "dtype"),
    ("Multinomial", "dtype"),
    ("Bernoulli", "dtype"),
    ("SequenceEmpty", "dtype"),
    ("HannWindow", "output_datatype"),
    ("HammingWindow", "output_datatype"),
    ("BlackmanWindow", "output_datatype"),
    ("MelWeightMatrix", "output_datatype"),
];

fn is_dtype_attr(domain: &str, op_type: &str, name: &str) -> bool {
    domain.is_empty() && DTYPE_ATTRS.contains(&(op_type, name))
}

/// True if any attribute of the node holds a graph (control flow: If, Loop, Scan, ...).
pub fn has_subgraph(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|a| a.g.is_some() || !a.graphs.is_empty())
}

/// Converts every attribute of a node whose domain is already normalized ("" for ONNX).
/// `known_op` says whether compc has a typed op for it: an element-type code compc cannot
/// represent is then an error, while a custom op keeps the raw integer.
pub fn convert_all(
    node: &mut NodeProto,
    domain: &str,
    known_op: bool,
    ext: &mut ExternalFiles,
) -> Result<Attrs, String> {
    let op_type = node.op_type.clone();
    let mut out = Attrs::new();
    for a in &mut node.attribute {
        if !a.ref_attr_name.is_empty() {
            return Err(format!(
                "attribute `{}` refers to a function attribute; functions are not supported",
                a.name
            ));
        }
        let v = convert(a, domain, &op_type, known_op, ext)?;
        if out.insert(a.name.clone(), v).is_some() {
            return Err(format!("attribute `{}` is given twice", a.name));
        }
    }
    Ok(out)
}

fn convert(
    a: &mut AttributeProto,
    domain: &str,
    op_type: &str,
    known_op: bool,
    ext: &mut ExternalFiles,
) -> Result<Attr, String> {
    let name = a.name.clone();
    let kind = match a.type_.enum_value() {
        Ok(k) => k,
        Err(code) => return Err(format!("attribute `{name}` has unknown type {code}")),
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("attribute `{name}` holds a string that is not UTF-8"))
    };
    Ok(match kind {
        AttributeType::INT if is_dtype_attr(domain, op_type, &name) => match dtype_from_code(a.i) {
            Some(t) => Attr::Type(t),
            None if !known_op => Attr::Int(a.i),
            None => {
                return Err(format!(
                    "attribute `{name}`: {} is not supported",
                    code_name(a.i)
                ))
            }
        },
        AttributeType::INT => Attr::Int(a.i),
        AttributeType::FLOAT => Attr::Float(a.f),
        AttributeType::STRING => Attr::Str(utf8(&a.s)?),
        AttributeType::INTS => Attr::Ints(std::mem::take(&mut a.ints)),
        AttributeType::FLOATS => Attr::Floats(std::mem::take(&mut a.floats)),
        AttributeType::STRINGS => Attr::Strs(
            a.strings
                .iter()
                .map(|s| utf8(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        AttributeType::TENSOR => {
            let Some(t) = a.t.as_mut() else {
                return Err(format!("attribute `{name}` is a tensor but holds none"));
            };
            Attr::Tensor(tensor::literal(t, &name, ext).map_err(|e| e.to_string())?)
        }
        AttributeType::GRAPH | AttributeType::GRAPHS => {
            return Err(format!(
                "attribute `{name}` is a subgraph; control flow is not supported yet"
            ))
        }
        AttributeType::SPARSE_TENSOR | AttributeType::SPARSE_TENSORS => {
            return Err(format!(
                "attribute `{name}` is a sparse tensor; sparse tensors are not supported"
            ))
        }
        AttributeType::TENSORS => {
            return Err(format!(
                "attribute `{name}` is a list of tensors; that is not supported"
            ))
        }
        AttributeType::TYPE_PROTO | AttributeType::TYPE_PROTOS => {
            return Err(format!(
                "attribute `{name}` is a type; type attributes are not supported"
            ))
        }
        AttributeType::UNDEFINED => return Err(format!("attribute `{name}` has no type")),
    })
}

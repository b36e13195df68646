//! Reading ONNX test data: the `.pb` files beside a model (`input_0.pb`, `output_0.pb`)
//! hold a `TensorProto`, `SequenceProto` or `OptionalProto`, depending on the graph
//! input's or output's type. The latter two live in `onnx-data.proto`, which the
//! `onnx-protobuf` crate does not include, so their few fields are read here directly
//! from the protobuf wire format.

use crate::error::ImportError;
use crate::external::ExternalFiles;
use crate::types::{dtype_or_err, kind_of, ValueKind};
use compc_ir::{DType, Weight};
use onnx_protobuf::TensorProto;
use protobuf::Message;

/// A value of test data.
#[derive(Clone, Debug)]
pub enum DataValue {
    Tensor(Weight),
    /// A string tensor (compc's weights hold numbers only).
    Strings {
        dims: Vec<u64>,
        values: Vec<String>,
    },
    Sequence(Vec<DataValue>),
    Optional(Option<Box<DataValue>>),
}

fn bad(what: impl Into<String>) -> ImportError {
    ImportError::NotOnnx(what.into())
}

/// The kinds of a model's graph inputs (those without an initializer) and outputs.
#[allow(clippy::type_complexity)]
pub fn io_kinds(
    model: &[u8],
) -> Result<(Vec<(String, ValueKind)>, Vec<(String, ValueKind)>), ImportError> {
    let m = crate::model::parse(model)?;
    let g = m.graph.as_ref().ok_or_else(|| bad("it has no graph"))?;
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let kind = |vi: &onnx_protobuf::ValueInfoProto| -> Result<(String, ValueKind), ImportError> {
        let k = match vi.type_.as_ref() {
            Some(t) => kind_of(t).map_err(|e| ImportError::Model(format!("`{}`: {e}", vi.name)))?,
            None => ValueKind::Tensor,
        };
        Ok((vi.name.clone(), k))
    };
    let ins = g
        .input
        .iter()
        .filter(|vi| !inits.contains(vi.name.as_str()))
        .map(kind)
        .collect::<Result<_, _>>()?;
    let outs = g.output.iter().map(kind).collect::<Result<_, _>>()?;
    Ok((ins, outs))
}

/// Reads one `.pb` file as a value of `kind`.
pub fn read_value(bytes: &[u8], kind: &ValueKind) -> Result<DataValue, ImportError> {
    match kind {
        ValueKind::Tensor => read_tensor_value(bytes),
        ValueKind::Sequence(elem) => read_sequence(bytes, elem),
        ValueKind::Optional(elem) => read_optional(bytes, elem),
    }
}

fn read_tensor_value(bytes: &[u8]) -> Result<DataValue, ImportError> {
    let mut t =
        TensorProto::parse_from_bytes(bytes).map_err(|e| bad(format!("not a TensorProto: {e}")))?;
    let name = t.name.clone();
    if dtype_or_err(i64::from(t.data_type)) == Ok(DType::Str) {
        let dims = t
            .dims
            .iter()
            .map(|&d| {
                u64::try_from(d).map_err(|_| ImportError::tensor(&name, "negative dimension"))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if n != Some(t.string_data.len() as u64) {
            return Err(ImportError::tensor(
                &name,
                format!("{} strings for shape {dims:?}", t.string_data.len()),
            ));
        }
        let values = t
            .string_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        return Ok(DataValue::Strings { dims, values });
    }
    let w = crate::tensor::weight(&mut t, &name, &mut ExternalFiles::new(None))?;
    Ok(DataValue::Tensor(w))
}

/// The length-delimited and varint fields of a message, in order.
fn fields(bytes: &[u8]) -> Result<Vec<(u32, Field<'_>)>, ImportError> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let varint = |p: &mut usize| -> Result<u64, ImportError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*p).ok_or_else(|| bad("truncated protobuf"))?;
            *p += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("overlong protobuf varint"))
    };
    while p < bytes.len() {
        let tag = varint(&mut p)?;
        let (field, wire) = ((tag >> 3) as u32, tag & 7);
        let f = match wire {
            0 => Field::Varint(varint(&mut p)?),
            1 | 5 => {
                p += if wire == 1 { 8 } else { 4 };
                Field::Other
            }
            2 => {
                let len = usize::try_from(varint(&mut p)?).map_err(|_| bad("huge field"))?;
                let end = p
                    .checked_add(len)
                    .filter(|&e| e <= bytes.len())
                    .ok_or_else(|| bad("truncated protobuf field"))?;
                let b = &bytes[p..end];
                p = end;
                Field::Bytes(b)
            }
            w => return Err(bad(format!("protobuf wire type {w} is not supported"))),
        };
        out.push((field, f));
    }
    Ok(out)
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// SequenceProto: 3 tensor_values, 5 sequence_values, 7 optional_values.
fn read_sequence(bytes: &[u8], elem: &ValueKind) -> Result<DataValue, ImportError> {
    let mut items = Vec::new();
    for (f, v) in fields(bytes)? {
        let Field::Bytes(b) = v else { continue };
        match (f, elem) {
            (3, ValueKind::Tensor) => items.push(read_tensor_value(b)?),
            (5, ValueKind::Sequence(e)) => items.push(read_sequence(b, e)?),
            (7, ValueKind::Optional(e)) => items.push(read_optional(b, e)?),
            (4 | 6, _) => {
                return Err(bad(
                    "sparse tensors and maps in sequences are not supported",
                ))
            }
            _ => {}
        }
    }
    Ok(DataValue::Sequence(items))
}

/// OptionalProto: 2 elem_type (0 = empty), 3 tensor_value, 5 sequence_value,
/// 7 optional_value.
fn read_optional(bytes: &[u8], elem: &ValueKind) -> Result<DataValue, ImportError> {
    let mut value = None;
    for (f, v) in fields(bytes)? {
        match (f, v, elem) {
            (3, Field::Bytes(b), ValueKind::Tensor) => value = Some(read_tensor_value(b)?),
            (5, Field::Bytes(b), ValueKind::Sequence(e)) => value = Some(read_sequence(b, e)?),
            (7, Field::Bytes(b), ValueKind::Optional(e)) => value = Some(read_optional(b, e)?),
            (2, Field::Varint(0), _) => value = None,
            _ => {}
        }
    }
    Ok(DataValue::Optional(value.map(Box::new)))
}

//! `TensorProto` to `Weight` (initializers, `Constant` nodes) and to `Literal` (tensor
//! attributes). Sizes are checked with checked arithmetic against the data actually
//! present before anything is allocated, so a tensor claiming 2^40 elements costs nothing.

use crate::error::ImportError;
use crate::external::{ExternalFiles, ExternalRef};
use crate::types::dtype_or_err;
use compc_ir::{DType, Literal, Weight, WeightData};
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::TensorProto;

/// Inline tensors (attributes) above this size are refused: they are cloned with the graph.
pub const MAX_LITERAL_BYTES: usize = 1 << 20;

/// Converts a tensor, moving its `raw_data` out of `t` rather than copying it.
pub fn weight(
    t: &mut TensorProto,
    name: &str,
    ext: &mut ExternalFiles,
) -> Result<Weight, ImportError> {
    let terr = |what: String| ImportError::tensor(name, what);
    let dtype = dtype_or_err(i64::from(t.data_type)).map_err(terr)?;
    if dtype == DType::Str {
        return Err(terr("string tensors are not supported".into()));
    }
    if t.segment.is_some() {
        return Err(terr("segmented tensors are not supported".into()));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(terr(format!("dimension {d} is negative")));
        }
        dims.push(d as u64);
    }
    let numel = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            terr(format!(
                "shape {dims:?} has more elements than fit in 64 bits"
            ))
        })?;
    let bytes = dtype
        .storage_bytes(numel)
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or_else(|| terr(format!("shape {dims:?} is too large to address")))?;

    let data = if t.data_location.value() == DataLocation::EXTERNAL as i32 {
        let r = external_ref(t).map_err(terr)?;
        ext.data(name, &r, bytes)?
    } else if !t.raw_data.is_empty() {
        if t.raw_data.len() as u64 != bytes {
            return Err(terr(format!(
                "{dtype} tensor of shape {dims:?} needs {bytes} bytes, raw_data has {}",
                t.raw_data.len()
            )));
        }
        WeightData::Owned(std::mem::take(&mut t.raw_data).into())
    } else {
        WeightData::Owned(typed_bytes(t, dtype, numel, bytes).map_err(terr)?.into())
    };
    Weight::new(name, dtype, dims, data).map_err(|e| terr(e.to_string()))
}

/// A small tensor held inline in an attribute.
pub fn literal(
    t: &mut TensorProto,
    name: &str,
    ext: &mut ExternalFiles,
) -> Result<Literal, ImportError> {
    let w = weight(t, name, ext)?;
    if w.byte_len() > MAX_LITERAL_BYTES as u64 {
        return Err(ImportError::tensor(
            name,
            format!(
                "{} bytes is too large for an inline tensor attribute (at most {MAX_LITERAL_BYTES})",
                w.byte_len()
            ),
        ));
    }
    let bytes = w
        .bytes()
        .map_err(|e| ImportError::tensor(name, e.to_string()))?;
    Ok(Literal {
        dtype: w.dtype,
        dims: w.dims.clone(),
        bytes: bytes.to_vec(),
    })
}

fn external_ref(t: &TensorProto) -> Result<ExternalRef<'_>, String> {
    let (mut location, mut offset, mut length) = (None, None, None);
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.as_str()),
            "offset" => offset = Some(kv.value.as_str()),
            "length" => length = Some(kv.value.as_str()),
            _ => {}
        }
    }
    let location = location.ok_or("external data has no `location`")?;
    Ok(ExternalRef {
        location,
        offset,
        length,
    })
}

/// Little-endian storage from the typed repeated fields, laid out per onnx.proto: 8–16-bit
/// integers, bool and the 16-bit floats' bit patterns in `int32_data` one per element,
/// 4-bit types packed two per `int32_data` entry, unsigned 32/64-bit in `uint64_data`.
fn typed_bytes(t: &TensorProto, dtype: DType, numel: u64, bytes: u64) -> Result<Vec<u8>, String> {
    let check = |field: &str, have: usize, want: u64| {
        if have as u64 == want {
            Ok(())
        } else if have == 0 {
            Err(format!("{dtype} tensor with {want} elements has no data"))
        } else {
            Err(format!(
                "{dtype} tensor needs {want} values but {field} has {have}"
            ))
        }
    };
    let mut out = Vec::new();
    match dtype {
        DType::F32 => {
            check("float_data", t.float_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.float_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        DType::F64 => {
            check("double_data", t.double_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.double_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        DType::I64 => {
            check("int64_data", t.int64_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.int64_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        DType::U64 => {
            check("uint64_data", t.uint64_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.uint64_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        DType::U32 => {
            check("uint64_data", t.uint64_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.uint64_data.iter().flat_map(|&v| (v as u32).to_le_bytes()));
        }
        DType::I32 => {
            check("int32_data", t.int32_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.int32_data.iter().flat_map(|v| v.to_le_bytes()));
        }
        DType::I16 | DType::U16 | DType::F16 | DType::BF16 => {
            check("int32_data", t.int32_data.len(), numel)?;
            out.reserve_exact(bytes as usize);
            out.extend(t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()));
        }
        DType::I8 | DType::U8 | DType::Bool => {
            check("int32_data", t.int32_data.len(), numel)?;
            out.extend(t.int32_data.iter().map(|&v| v as u8));
        }
        DType::I4 | DType::U4 => {
            check("int32_data", t.int32_data.len(), bytes)?;
            out.extend(t.int32_data.iter().map(|&v| v as u8));
        }
        DType::Str => return Err("string tensors are not supported".into()),
    }
    Ok(out)
}

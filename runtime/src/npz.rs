//! `.npz` archives (numpy's `savez`): calibration data, `compc run` inputs and outputs.
//! Arrays keep their order in the archive. Reading accepts both byte orders and Fortran
//! order; writing uses little-endian C order, uncompressed like `np.savez`. numpy has no
//! bfloat16, so bf16 tensors are written as float32; 4-bit tensors as unpacked int8/uint8.

use crate::error::{Result, RuntimeError};
use crate::ops::shape_ops::transpose;
use crate::tensor::{Tensor, TensorData};
use compc_ir::{DType, Weight};
use npyz::{Endianness, Order, TypeChar};
use std::io::{Read, Write};
use std::path::Path;

fn io_err(path: &Path, msg: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Io {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

fn dtype_of(tc: TypeChar, size: u64) -> Option<DType> {
    Some(match (tc, size) {
        (TypeChar::Float, 2) => DType::F16,
        (TypeChar::Float, 4) => DType::F32,
        (TypeChar::Float, 8) => DType::F64,
        (TypeChar::Int, 1) => DType::I8,
        (TypeChar::Int, 2) => DType::I16,
        (TypeChar::Int, 4) => DType::I32,
        (TypeChar::Int, 8) => DType::I64,
        (TypeChar::Uint, 1) => DType::U8,
        (TypeChar::Uint, 2) => DType::U16,
        (TypeChar::Uint, 4) => DType::U32,
        (TypeChar::Uint, 8) => DType::U64,
        (TypeChar::Bool, 1) => DType::Bool,
        _ => return None,
    })
}

/// Reads every array of an `.npz` file, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut ar = npyz::npz::NpzArchive::open(path).map_err(|e| io_err(path, e))?;
    // `array_names` iterates a hash map; the archive index keeps the order numpy wrote.
    let zip = ar.zip_archive();
    let mut names = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let f = zip.by_index(i).map_err(|e| io_err(path, e))?;
        if let Some(n) = npyz::npz::array_name_from_file_name(f.name()) {
            names.push(n.to_string());
        }
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let err = |msg: String| io_err(path, format!("array `{name}`: {msg}"));
        let file = ar
            .by_name(&name)
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("listed but not found".into()))?;
        let npyz::DType::Plain(ts) = file.dtype() else {
            return Err(err("structured arrays are not supported".into()));
        };
        let dtype = dtype_of(ts.type_char(), ts.size_field())
            .ok_or_else(|| err(format!("unsupported dtype `{ts}`")))?;
        let shape: Vec<u64> = file.shape().to_vec();
        let fortran = file.order() == Order::Fortran;
        let mut bytes = Vec::new();
        file.into_inner()
            .read_to_end(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
        let width = ts.size_field() as usize;
        if ts.endianness() == Endianness::Big && width > 1 {
            bytes.chunks_exact_mut(width).for_each(|c| c.reverse());
        }
        let mut dims = shape.clone();
        if fortran {
            dims.reverse();
        }
        let w =
            Weight::from_bytes(name.clone(), dtype, dims, bytes).map_err(|e| err(e.to_string()))?;
        let mut t = Tensor::from_weight(&w).map_err(|e| err(e.to_string()))?;
        if fortran && t.rank() > 1 {
            t = transpose(&t, None).map_err(|e| err(e.to_string()))?;
        }
        out.push((name, t));
    }
    Ok(out)
}

/// numpy type string and little-endian bytes of a tensor.
fn npy_payload(t: &Tensor) -> (&'static str, Vec<u8>) {
    let descr = match t.dtype() {
        DType::F16 => "<f2",
        DType::F32 | DType::BF16 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I16 => "<i2",
        DType::I8 | DType::I4 => "|i1",
        DType::U8 | DType::U4 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool | DType::Str => "|b1",
    };
    let bytes = match (t.dtype(), t.data()) {
        (DType::F16, _) => t.to_bytes(),
        (_, TensorData::F32(v)) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (_, TensorData::I8(v)) => v.iter().map(|&x| x as u8).collect(),
        (_, TensorData::U8(v)) => v.clone(),
        _ => t.to_bytes(),
    };
    (descr, bytes)
}

/// The `.npy` header (format 1.0, padded so the data starts 64-byte aligned).
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - total % 64) % 64));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend((dict.len() as u16).to_le_bytes());
    h.extend(dict.as_bytes());
    h
}

/// Writes tensors as an `.npz` archive (one `<name>.npy` member each, in order).
pub fn write_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut zip = npyz::zip::ZipWriter::new(std::io::BufWriter::new(file));
    for (name, t) in tensors {
        let (descr, bytes) = npy_payload(t);
        let header = npy_header(descr, t.shape());
        let opts = npyz::zip::write::FileOptions::default()
            .compression_method(npyz::zip::CompressionMethod::Stored)
            .large_file(header.len() + bytes.len() >= (1 << 31));
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| io_err(path, e))?;
        zip.write_all(&header).map_err(|e| io_err(path, e))?;
        zip.write_all(&bytes).map_err(|e| io_err(path, e))?;
    }
    let mut w = zip.finish().map_err(|e| io_err(path, e))?;
    w.flush().map_err(|e| io_err(path, e))?;
    Ok(())
}

//! Runtime tensors: an element type, a shape and a flat row-major buffer.
//!
//! Storage is one `Vec` per storage class: f16/bf16 values live in an f32 buffer (rounded
//! to their precision) and 4-bit values unpacked into i8/u8, with the logical `DType`
//! remembered, so kernels compute in f32 and the result converts back exactly like ONNX
//! Runtime's fp32-upcast kernels.

use crate::error::{bail, Result, RuntimeError};
use compc_ir::{DType, Weight};
use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// Applies a generic expression to whichever buffer a `TensorData` holds and wraps the
/// result in the same variant (`map_data!(&t.data, v => v.clone())`).
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::F32($v) => $crate::tensor::TensorData::F32($body),
            $crate::tensor::TensorData::F64($v) => $crate::tensor::TensorData::F64($body),
            $crate::tensor::TensorData::I64($v) => $crate::tensor::TensorData::I64($body),
            $crate::tensor::TensorData::I32($v) => $crate::tensor::TensorData::I32($body),
            $crate::tensor::TensorData::I16($v) => $crate::tensor::TensorData::I16($body),
            $crate::tensor::TensorData::I8($v) => $crate::tensor::TensorData::I8($body),
            $crate::tensor::TensorData::U8($v) => $crate::tensor::TensorData::U8($body),
            $crate::tensor::TensorData::U16($v) => $crate::tensor::TensorData::U16($body),
            $crate::tensor::TensorData::U32($v) => $crate::tensor::TensorData::U32($body),
            $crate::tensor::TensorData::U64($v) => $crate::tensor::TensorData::U64($body),
            $crate::tensor::TensorData::Bool($v) => $crate::tensor::TensorData::Bool($body),
        }
    };
}
pub(crate) use map_data;

/// Like `map_data!` but for two buffers of the same variant (Concat, Where, scatter):
/// evaluates `$body` with both bound, or `$else` when the variants differ.
macro_rules! zip_data {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr, else $else:expr) => {{
        use $crate::tensor::TensorData as TD;
        match ($a, $b) {
            (TD::F32($x), TD::F32($y)) => TD::F32($body),
            (TD::F64($x), TD::F64($y)) => TD::F64($body),
            (TD::I64($x), TD::I64($y)) => TD::I64($body),
            (TD::I32($x), TD::I32($y)) => TD::I32($body),
            (TD::I16($x), TD::I16($y)) => TD::I16($body),
            (TD::I8($x), TD::I8($y)) => TD::I8($body),
            (TD::U8($x), TD::U8($y)) => TD::U8($body),
            (TD::U16($x), TD::U16($y)) => TD::U16($body),
            (TD::U32($x), TD::U32($y)) => TD::U32($body),
            (TD::U64($x), TD::U64($y)) => TD::U64($body),
            (TD::Bool($x), TD::Bool($y)) => TD::Bool($body),
            _ => $else,
        }
    }};
}
pub(crate) use zip_data;

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage class a logical dtype is kept in (`None` for strings).
    pub fn storage_of(dtype: DType) -> Option<DType> {
        Some(match dtype {
            DType::F32 | DType::F16 | DType::BF16 => DType::F32,
            DType::I8 | DType::I4 => DType::I8,
            DType::U8 | DType::U4 => DType::U8,
            DType::Str => return None,
            other => other,
        })
    }

    fn storage(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I16(_) => DType::I16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// A zero-filled buffer of `n` elements in `dtype`'s storage class.
    pub fn zeros(dtype: DType, n: usize) -> Result<TensorData> {
        Ok(match TensorData::storage_of(dtype) {
            Some(DType::F32) => TensorData::F32(vec![0.0; n]),
            Some(DType::F64) => TensorData::F64(vec![0.0; n]),
            Some(DType::I64) => TensorData::I64(vec![0; n]),
            Some(DType::I32) => TensorData::I32(vec![0; n]),
            Some(DType::I16) => TensorData::I16(vec![0; n]),
            Some(DType::I8) => TensorData::I8(vec![0; n]),
            Some(DType::U8) => TensorData::U8(vec![0; n]),
            Some(DType::U16) => TensorData::U16(vec![0; n]),
            Some(DType::U32) => TensorData::U32(vec![0; n]),
            Some(DType::U64) => TensorData::U64(vec![0; n]),
            Some(DType::Bool) => TensorData::Bool(vec![false; n]),
            _ => bail!("{dtype} tensors cannot be computed on"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: TensorData,
}

/// Largest element count a kernel will allocate: a bad shape input (`Range` to
/// `INT64_MAX`, `Tile` by a billion) must be an error, not an allocation abort.
pub const MAX_NUMEL: usize = 1 << 32;

/// Element count of an output shape a kernel is about to allocate.
pub fn checked_numel(shape: &[usize], what: &str) -> Result<usize> {
    match numel_of(shape) {
        Some(n) if n <= MAX_NUMEL => Ok(n),
        _ => bail!("{what}: output shape {shape:?} is too large"),
    }
}

/// Number of elements of a shape, `None` on overflow.
pub fn numel_of(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F16 => half::f16::from_f32(v).to_f32(),
        DType::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Wraps an integer into the value range of an integer dtype (two's complement), the
/// way a C cast or numpy's `astype` does.
fn wrap_int(dtype: DType, v: i64) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::I16 => v as i16 as i64,
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::U16 => v as u16 as i64,
        DType::U32 => v as u32 as i64,
        DType::I4 => ((v as i8) << 4 >> 4) as i64,
        DType::U4 => v & 0xF,
        _ => v,
    }
}

impl Tensor {
    /// Checks that `data` is `dtype`'s storage class and holds `shape`'s element count.
    pub fn new(dtype: DType, shape: Vec<usize>, data: TensorData) -> Result<Tensor> {
        let Some(storage) = TensorData::storage_of(dtype) else {
            bail!("{dtype} tensors cannot be computed on");
        };
        if storage != data.storage() {
            bail!("a {dtype} tensor cannot hold {} data", data.storage());
        }
        match numel_of(&shape) {
            Some(n) if n == data.len() => Ok(Tensor { dtype, shape, data }),
            _ => bail!(
                "shape {shape:?} needs {} elements, data has {}",
                numel_of(&shape).map_or("too many".to_string(), |n| n.to_string()),
                data.len()
            ),
        }
    }

    /// Builds a tensor whose data is known to match (internal use by kernels).
    pub(crate) fn raw(dtype: DType, shape: Vec<usize>, data: TensorData) -> Tensor {
        debug_assert_eq!(numel_of(&shape), Some(data.len()));
        Tensor { dtype, shape, data }
    }

    /// An f32 tensor. The caller guarantees `v.len()` equals the shape's element count.
    pub fn from_f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        assert_eq!(
            numel_of(&shape),
            Some(v.len()),
            "shape {shape:?} vs {} values",
            v.len()
        );
        Tensor::raw(DType::F32, shape, TensorData::F32(v))
    }

    pub fn from_i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        assert_eq!(
            numel_of(&shape),
            Some(v.len()),
            "shape {shape:?} vs {} values",
            v.len()
        );
        Tensor::raw(DType::I64, shape, TensorData::I64(v))
    }

    pub fn from_bool(shape: Vec<usize>, v: Vec<bool>) -> Tensor {
        assert_eq!(
            numel_of(&shape),
            Some(v.len()),
            "shape {shape:?} vs {} values",
            v.len()
        );
        Tensor::raw(DType::Bool, shape, TensorData::Bool(v))
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor::from_f32(vec![], vec![v])
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::from_i64(vec![], vec![v])
    }

    /// Float values stored as `dtype` (f32, f16, bf16 or f64), rounded to its precision.
    pub fn from_f32_as(dtype: DType, shape: Vec<usize>, mut v: Vec<f32>) -> Result<Tensor> {
        match dtype {
            DType::F32 => {}
            DType::F16 | DType::BF16 => v.iter_mut().for_each(|x| *x = round_to(dtype, *x)),
            DType::F64 => {
                let v = v.into_iter().map(f64::from).collect();
                return Tensor::new(dtype, shape, TensorData::F64(v));
            }
            _ => return Tensor::from_f64_as(dtype, shape, v.into_iter().map(f64::from).collect()),
        }
        Tensor::new(dtype, shape, TensorData::F32(v))
    }

    /// Values converted to any numeric dtype: floats round to the type's precision,
    /// integers truncate toward zero and saturate (Rust `as`), bool is `x != 0`.
    pub fn from_f64_as(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
        if dtype.is_int() {
            let v = v
                .into_iter()
                .map(|x| match dtype {
                    DType::U64 => x as u64 as i64,
                    DType::I4 => (x as i64).clamp(-8, 7),
                    DType::U4 => (x as i64).clamp(0, 15),
                    DType::I32 => x as i32 as i64,
                    DType::I16 => x as i16 as i64,
                    DType::I8 => x as i8 as i64,
                    DType::U8 => x as u8 as i64,
                    DType::U16 => x as u16 as i64,
                    DType::U32 => x as u32 as i64,
                    _ => x as i64,
                })
                .collect();
            return Tensor::from_i64_as(dtype, shape, v);
        }
        let data = match dtype {
            DType::F64 => TensorData::F64(v),
            DType::F32 | DType::F16 | DType::BF16 => {
                TensorData::F32(v.into_iter().map(|x| round_to(dtype, x as f32)).collect())
            }
            DType::Bool => TensorData::Bool(v.into_iter().map(|x| x != 0.0).collect()),
            _ => bail!("cannot convert to {dtype}"),
        };
        Tensor::new(dtype, shape, data)
    }

    /// Integer values converted to any numeric dtype; integers wrap (two's complement).
    pub fn from_i64_as(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Result<Tensor> {
        let data = match TensorData::storage_of(dtype) {
            Some(DType::I64) => TensorData::I64(v),
            Some(DType::I32) => TensorData::I32(v.into_iter().map(|x| x as i32).collect()),
            Some(DType::I16) => TensorData::I16(v.into_iter().map(|x| x as i16).collect()),
            Some(DType::I8) => {
                TensorData::I8(v.into_iter().map(|x| wrap_int(dtype, x) as i8).collect())
            }
            Some(DType::U8) => {
                TensorData::U8(v.into_iter().map(|x| wrap_int(dtype, x) as u8).collect())
            }
            Some(DType::U16) => TensorData::U16(v.into_iter().map(|x| x as u16).collect()),
            Some(DType::U32) => TensorData::U32(v.into_iter().map(|x| x as u32).collect()),
            Some(DType::U64) => TensorData::U64(v.into_iter().map(|x| x as u64).collect()),
            Some(DType::Bool) => TensorData::Bool(v.into_iter().map(|x| x != 0).collect()),
            Some(DType::F64) => TensorData::F64(v.into_iter().map(|x| x as f64).collect()),
            Some(DType::F32) => {
                TensorData::F32(v.into_iter().map(|x| round_to(dtype, x as f32)).collect())
            }
            _ => bail!("cannot convert to {dtype}"),
        };
        Tensor::new(dtype, shape, data)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The f32 buffer, only when the dtype is exactly f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match (&self.data, self.dtype) {
            (TensorData::F32(v), DType::F32) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// Same data, new shape (element counts must agree).
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor> {
        if numel_of(&shape) != Some(self.numel()) {
            bail!("cannot reshape {:?} to {shape:?}", self.shape);
        }
        Ok(Tensor { shape, ..self })
    }

    /// Values as f32 without a copy when already stored as f32 (also f16/bf16).
    pub fn f32_cow(&self) -> Cow<'_, [f32]> {
        match &self.data {
            TensorData::F32(v) => Cow::Borrowed(v),
            _ => Cow::Owned(self.to_f32_vec()),
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Values as i64; floats truncate toward zero.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// ONNX `Cast`: float → int truncates toward zero and saturates, int → int wraps,
    /// anything → bool is `x != 0`, f32 → f16/bf16 rounds to nearest even.
    pub fn cast(&self, to: DType) -> Result<Tensor> {
        if to == self.dtype {
            return Ok(self.clone());
        }
        let shape = self.shape.clone();
        match &self.data {
            TensorData::F32(v) if matches!(to, DType::F32 | DType::F16 | DType::BF16) => {
                Tensor::from_f32_as(to, shape, v.clone())
            }
            TensorData::F32(_) | TensorData::F64(_) => {
                Tensor::from_f64_as(to, shape, self.to_f64_vec())
            }
            _ if to.is_float() => Tensor::from_f64_as(to, shape, self.to_f64_vec()),
            _ => Tensor::from_i64_as(to, shape, self.to_i64_vec()),
        }
    }

    /// Reads a weight from the store (4-bit types unpacked, f16/bf16 widened to f32).
    pub fn from_weight(w: &Weight) -> Result<Tensor> {
        let wrap = |e: compc_ir::WeightError| RuntimeError::Graph(e.to_string());
        let bytes = w.bytes().map_err(wrap)?;
        let mut shape = Vec::with_capacity(w.dims.len());
        for &d in &w.dims {
            match usize::try_from(d) {
                Ok(d) => shape.push(d),
                Err(_) => bail!("weight `{}`: dimension {d} is too large", w.name),
            }
        }
        let n = numel_of(&shape).unwrap_or(usize::MAX);
        let want = w.dtype.storage_bytes(n as u64).unwrap_or(u64::MAX);
        if want != bytes.len() as u64 {
            bail!(
                "weight `{}`: {} bytes for a {} tensor of shape {:?}",
                w.name,
                bytes.len(),
                w.dtype,
                w.dims
            );
        }
        macro_rules! le {
            ($t:ty, $n:literal) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect()
            };
        }
        let data = match w.dtype {
            DType::F32 => TensorData::F32(le!(f32, 4)),
            DType::F16 => TensorData::F32(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            DType::BF16 => TensorData::F32(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            DType::F64 => TensorData::F64(le!(f64, 8)),
            DType::I64 => TensorData::I64(le!(i64, 8)),
            DType::I32 => TensorData::I32(le!(i32, 4)),
            DType::I16 => TensorData::I16(le!(i16, 2)),
            DType::U16 => TensorData::U16(le!(u16, 2)),
            DType::U32 => TensorData::U32(le!(u32, 4)),
            DType::U64 => TensorData::U64(le!(u64, 8)),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::I4 => TensorData::I8(
                (0..n)
                    .map(|i| ((nibble(bytes, i) << 4) as i8) >> 4)
                    .collect(),
            ),
            DType::U4 => TensorData::U8((0..n).map(|i| nibble(bytes, i)).collect()),
            DType::Str => bail!("weight `{}`: string tensors cannot be computed on", w.name),
        };
        Tensor::new(w.dtype, shape, data)
    }

    /// Little-endian bytes as ONNX `raw_data` stores them (4-bit types packed, low nibble first).
    pub fn to_bytes(&self) -> Vec<u8> {
        match (&self.data, self.dtype) {
            (TensorData::F32(v), DType::F16) => v
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            (TensorData::F32(v), DType::BF16) => v
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
            (TensorData::I8(v), DType::I4) => pack_nibbles(v.iter().map(|&x| x as u8)),
            (TensorData::U8(v), DType::U4) => pack_nibbles(v.iter().copied()),
            (TensorData::F32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::F64(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::I64(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::I32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::I16(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::U16(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::U32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::U64(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (TensorData::I8(v), _) => v.iter().map(|&x| x as u8).collect(),
            (TensorData::U8(v), _) => v.clone(),
            (TensorData::Bool(v), _) => v.iter().map(|&x| x as u8).collect(),
        }
    }

    /// Converts to a weight named `name` (for passes that write tensors back to the store).
    pub fn to_weight(&self, name: &str) -> Result<Weight> {
        let dims = self.shape.iter().map(|&d| d as u64).collect();
        Weight::from_bytes(name, self.dtype, dims, self.to_bytes())
            .map_err(|e| RuntimeError::Op(e.to_string()))
    }

    /// Element `i` as f64 (for tests and small scalars).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        if i >= self.numel() {
            return None;
        }
        Some(match &self.data {
            TensorData::F32(v) => v[i] as f64,
            TensorData::F64(v) => v[i],
            TensorData::I64(v) => v[i] as f64,
            TensorData::I32(v) => v[i] as f64,
            TensorData::I16(v) => v[i] as f64,
            TensorData::I8(v) => v[i] as f64,
            TensorData::U8(v) => v[i] as f64,
            TensorData::U16(v) => v[i] as f64,
            TensorData::U32(v) => v[i] as f64,
            TensorData::U64(v) => v[i] as f64,
            TensorData::Bool(v) => v[i] as u8 as f64,
        })
    }

    /// Output `i` takes input element `idx[i]`; `usize::MAX` takes element 0 of `fill`
    /// (which must have this tensor's storage class). Indices are produced by kernels.
    pub(crate) fn take(
        &self,
        idx: &[usize],
        shape: Vec<usize>,
        fill: Option<&Tensor>,
    ) -> Result<Tensor> {
        let data = match fill {
            None => map_data!(&self.data, v => idx.iter().map(|&i| v[i]).collect()),
            Some(f) => zip_data!(&self.data, &f.data, (v, fv) => {
                let fv = fv.first().copied().unwrap_or_default();
                idx.iter().map(|&i| if i == usize::MAX { fv } else { v[i] }).collect()
            }, else bail!("pad value of type {} for a {} tensor", f.dtype, self.dtype)),
        };
        Tensor::new(self.dtype, shape, data)
    }
}

fn nibble(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 2] >> ((i % 2) * 4)) & 0xF
}

fn pack_nibbles(v: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, x) in v.enumerate() {
        if i % 2 == 0 {
            out.push(x & 0xF);
        } else if let Some(last) = out.last_mut() {
            *last |= (x & 0xF) << 4;
        }
    }
    out
}

/// Element types a `TensorData` can hold, for generic kernels that need several inputs'
/// buffers of one type (Concat, Where, scatter).
pub trait Elem: Copy + Default + PartialOrd + Send + Sync + 'static {
    fn slice(d: &TensorData) -> Option<&[Self]>;
}

macro_rules! impl_elem {
    ($($t:ty => $v:ident),*) => {$(
        impl Elem for $t {
            fn slice(d: &TensorData) -> Option<&[Self]> {
                match d {
                    TensorData::$v(x) => Some(x),
                    _ => None,
                }
            }
        }
    )*};
}
impl_elem!(f32 => F32, f64 => F64, i64 => I64, i32 => I32, i16 => I16, i8 => I8, u8 => U8, u16 => U16, u32 => U32, u64 => U64, bool => Bool);

//! Weights live outside the graph, in a `WeightStore`: the graph holds `Op::Const(WeightId)`
//! and cloning, printing or converting a graph never copies tensor data. Data is owned
//! (`Arc<[u8]>`) or a window into a memory-mapped file (ONNX external data), read in place.

use crate::dtype::DType;
use memmap2::Mmap;
use std::fmt;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub u32);

impl fmt::Display for WeightId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Where a weight's bytes are. Bytes are little-endian, laid out like ONNX `raw_data`
/// (4-bit types packed two per byte, low nibble first).
#[derive(Clone)]
pub enum WeightData {
    Owned(Arc<[u8]>),
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    /// Known by name, type and content hash only: IR parsed from text that referred to a
    /// weight it did not carry. Printing reproduces the reference; computing on it fails.
    Missing {
        hash: u64,
    },
}

impl fmt::Debug for WeightData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightData::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
            WeightData::Mapped { offset, len, .. } => write!(f, "Mapped({len} bytes at {offset})"),
            WeightData::Missing { hash } => write!(f, "Missing({hash:016x})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<u64>,
    data: WeightData,
    hash: OnceLock<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("weight `{name}` has no data (it was referenced by hash only)")]
    Missing { name: String },
    #[error("weight `{name}`: {what}")]
    Invalid { name: String, what: String },
}

impl Weight {
    /// Checks that `data` holds exactly the bytes `dtype` × `dims` need.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        dims: Vec<u64>,
        data: WeightData,
    ) -> Result<Weight, WeightError> {
        let name = name.into();
        let numel = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| WeightError::Invalid {
                name: name.clone(),
                what: format!("shape {dims:?} overflows"),
            })?;
        let len = match &data {
            WeightData::Owned(b) => Some(b.len()),
            WeightData::Mapped { len, .. } => Some(*len),
            WeightData::Missing { .. } => None,
        };
        if let (Some(len), false) = (len, dtype == DType::Str) {
            let want = dtype.storage_bytes(numel).unwrap_or(u64::MAX);
            if want != len as u64 {
                return Err(WeightError::Invalid {
                    name,
                    what: format!(
                        "{dtype} tensor of shape {dims:?} needs {want} bytes, data has {len}"
                    ),
                });
            }
        }
        let hash = OnceLock::new();
        if let WeightData::Missing { hash: h } = &data {
            let _ = hash.set(*h);
        }
        Ok(Weight {
            name,
            dtype,
            dims,
            data,
            hash,
        })
    }

    /// An owned weight from raw little-endian bytes.
    pub fn from_bytes(
        name: impl Into<String>,
        dtype: DType,
        dims: Vec<u64>,
        bytes: Vec<u8>,
    ) -> Result<Weight, WeightError> {
        Weight::new(name, dtype, dims, WeightData::Owned(bytes.into()))
    }

    pub fn from_f32(
        name: impl Into<String>,
        dims: Vec<u64>,
        values: &[f32],
    ) -> Result<Weight, WeightError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Weight::from_bytes(name, DType::F32, dims, bytes)
    }

    pub fn from_i64(
        name: impl Into<String>,
        dims: Vec<u64>,
        values: &[i64],
    ) -> Result<Weight, WeightError> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Weight::from_bytes(name, DType::I64, dims, bytes)
    }

    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of storage (what the report counts as model size).
    pub fn byte_len(&self) -> u64 {
        match &self.data {
            WeightData::Owned(b) => b.len() as u64,
            WeightData::Mapped { len, .. } => *len as u64,
            WeightData::Missing { .. } => self.dtype.storage_bytes(self.numel()).unwrap_or(0),
        }
    }

    pub fn data(&self) -> &WeightData {
        &self.data
    }

    pub fn is_missing(&self) -> bool {
        matches!(self.data, WeightData::Missing { .. })
    }

    /// The raw bytes, borrowed (no copy, also for memory-mapped data).
    pub fn bytes(&self) -> Result<&[u8], WeightError> {
        match &self.data {
            WeightData::Owned(b) => Ok(b),
            WeightData::Mapped { map, offset, len } => Ok(&map[*offset..*offset + *len]),
            WeightData::Missing { .. } => Err(WeightError::Missing {
                name: self.name.clone(),
            }),
        }
    }

    /// 64-bit content hash (xxh3) of the bytes, computed once. The text format prints it so
    /// a snapshot changes when a weight's contents change.
    pub fn content_hash(&self) -> u64 {
        *self.hash.get_or_init(|| match self.bytes() {
            Ok(b) => xxhash_rust::xxh3::xxh3_64(b),
            Err(_) => 0,
        })
    }

    /// Values converted to f32 (floats and integers alike; 4-bit types unpacked).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, WeightError> {
        let b = self.bytes()?;
        decode_to_f32(self.dtype, b, self.numel() as usize).map_err(|what| WeightError::Invalid {
            name: self.name.clone(),
            what,
        })
    }

    /// Values converted to i64 (integer and bool types only).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, WeightError> {
        let b = self.bytes()?;
        decode_to_i64(self.dtype, b, self.numel() as usize).map_err(|what| WeightError::Invalid {
            name: self.name.clone(),
            what,
        })
    }
}

/// Decodes little-endian storage of `dtype` into f32.
pub fn decode_to_f32(dtype: DType, b: &[u8], numel: usize) -> Result<Vec<f32>, String> {
    Ok(match dtype {
        DType::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DType::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::Str => return Err("string tensors have no numeric value".into()),
        _ => decode_to_i64(dtype, b, numel)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
    })
}

/// Decodes little-endian storage of an integer or bool `dtype` into i64.
pub fn decode_to_i64(dtype: DType, b: &[u8], numel: usize) -> Result<Vec<i64>, String> {
    Ok(match dtype {
        DType::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DType::U64 => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        DType::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        DType::U32 => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        DType::I16 => b
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        DType::U16 => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
        DType::U8 | DType::Bool => b.iter().map(|&x| x as i64).collect(),
        DType::I4 | DType::U4 => (0..numel)
            .map(|i| {
                let nib = (b[i / 2] >> ((i % 2) * 4)) & 0xF;
                if dtype == DType::I4 {
                    ((nib << 4) as i8 >> 4) as i64
                } else {
                    nib as i64
                }
            })
            .collect(),
        other => return Err(format!("{other} tensors have no integer value")),
    })
}

/// All weights of a graph, indexed by `WeightId`. Weights no node refers to any more are
/// simply not exported; ids are never reused, so a stale id cannot alias a new weight.
#[derive(Clone, Debug, Default)]
pub struct WeightStore {
    weights: Vec<Weight>,
}

impl WeightStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, w: Weight) -> WeightId {
        self.weights.push(w);
        WeightId((self.weights.len() - 1) as u32)
    }

    pub fn get(&self, id: WeightId) -> &Weight {
        &self.weights[id.0 as usize]
    }

    pub fn try_get(&self, id: WeightId) -> Option<&Weight> {
        self.weights.get(id.0 as usize)
    }

    /// Replaces the contents of a weight in place (a pass rewriting a tensor).
    pub fn replace(&mut self, id: WeightId, w: Weight) {
        self.weights[id.0 as usize] = w;
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (WeightId, &Weight)> {
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| (WeightId(i as u32), w))
    }
}

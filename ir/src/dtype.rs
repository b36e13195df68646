//! Element types. The set is what ONNX models and the compression passes need; packed
//! 4-bit types store two elements per byte, the first in the low nibble (ONNX convention).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    U16,
    U32,
    U64,
    I4,
    U4,
    Bool,
    /// Strings appear only in a few ONNX models; kept so such models import, never computed on.
    Str,
}

impl DType {
    pub const ALL: [DType; 16] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I4,
        DType::U4,
        DType::Bool,
        DType::Str,
    ];

    /// The short name used in the text format (`tensor<4xf32>`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::Bool => "bool",
            DType::Str => "str",
        }
    }

    /// Storage size in bits of one element (4 for the packed types).
    pub fn bits(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 64,
            DType::F32 | DType::I32 | DType::U32 => 32,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 16,
            DType::I8 | DType::U8 | DType::Bool => 8,
            DType::I4 | DType::U4 => 4,
            // Strings have no fixed size; callers never size string buffers by element count.
            DType::Str => 0,
        }
    }

    /// Bytes needed to store `numel` elements, rounding packed types up to a whole byte.
    pub fn storage_bytes(self, numel: u64) -> Option<u64> {
        numel.checked_mul(self.bits() as u64).map(|b| b.div_ceil(8))
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::I64
                | DType::I32
                | DType::I16
                | DType::I8
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
                | DType::I4
                | DType::U4
        )
    }

    /// The unsigned integer types of one byte or more (the packed `U4` is not among them).
    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64)
    }

    pub fn is_packed(self) -> bool {
        matches!(self, DType::I4 | DType::U4)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown element type `{s}`"))
    }
}

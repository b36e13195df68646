//! `attr_struct!` declares a typed attribute struct with ONNX attribute names and defaults,
//! and derives its conversion to and from the generic [`Attrs`] map. Attributes equal to
//! their default are not written, so printed IR stays canonical.

use crate::attr::{Attr, AttrReader, Attrs, Literal};
use crate::dtype::DType;

/// One typed attribute field: how it is read from and written to [`Attrs`].
pub trait AttrField: Sized + PartialEq {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String>;
    fn to_attr(&self) -> Option<Attr>;
}

impl AttrField for i64 {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        r.int(name, default)
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Int(*self))
    }
}

impl AttrField for bool {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        r.bool(name, default)
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Int(*self as i64))
    }
}

impl AttrField for f32 {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        r.float(name, default)
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Float(*self))
    }
}

impl AttrField for String {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_str(name)?.unwrap_or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Str(self.clone()))
    }
}

impl AttrField for Vec<i64> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_ints(name)?.unwrap_or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Ints(self.clone()))
    }
}

impl AttrField for Option<Vec<i64>> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_ints(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.clone().map(Attr::Ints)
    }
}

impl AttrField for Option<Vec<f32>> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_floats(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.clone().map(Attr::Floats)
    }
}

impl AttrField for Option<i64> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_int(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.map(Attr::Int)
    }
}

impl AttrField for Option<f32> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_float(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.map(Attr::Float)
    }
}

impl AttrField for Option<Vec<String>> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_strs(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.clone().map(Attr::Strs)
    }
}

impl AttrField for DType {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_type(name)?.unwrap_or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Type(*self))
    }
}

impl AttrField for Option<DType> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_type(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.map(Attr::Type)
    }
}

impl AttrField for Option<Literal> {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        Ok(r.opt_tensor(name)?.or(default))
    }
    fn to_attr(&self) -> Option<Attr> {
        self.clone().map(Attr::Tensor)
    }
}

/// Writes `value` under `name` unless it equals `default`.
pub fn write_field<T: AttrField>(attrs: &mut Attrs, name: &str, value: &T, default: &T) {
    if value != default {
        if let Some(a) = value.to_attr() {
            attrs.insert(name.to_string(), a);
        }
    }
}

/// Declares `pub struct $name { pub field: Type, .. }` whose fields map to ONNX attributes
/// (`"onnxName"`) with defaults, plus `from_attrs`, `to_attrs` and `ATTR_NAMES`.
#[macro_export]
macro_rules! attr_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr => $onnx:literal),* $(,)? } $(required [$($req:literal),*])?) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default),* }
            }
        }

        impl $name {
            pub const ATTR_NAMES: &'static [&'static str] = &[$($onnx),*];
            /// Attributes ONNX requires: written even when equal to the default.
            pub const REQUIRED: &'static [&'static str] = &[$($($req),*)?];

            pub fn from_attrs(op: &str, attrs: $crate::attr::Attrs) -> Result<Self, String> {
                #[allow(unused_mut)]
                let mut r = $crate::attr::AttrReader::new(op, attrs);
                #[allow(unused_variables)]
                let d = Self::default();
                let v = $name {
                    $($field: $crate::op::attr_struct::AttrField::read(&mut r, $onnx, d.$field)?),*
                };
                r.finish(Self::ATTR_NAMES)?;
                Ok(v)
            }

            pub fn to_attrs(&self) -> $crate::attr::Attrs {
                #[allow(unused_mut)]
                let mut a = $crate::attr::Attrs::new();
                #[allow(unused_variables)]
                let d = Self::default();
                $(
                    if Self::REQUIRED.contains(&$onnx) {
                        if let Some(v) = $crate::op::attr_struct::AttrField::to_attr(&self.$field) {
                            a.insert($onnx.to_string(), v);
                        }
                    } else {
                        $crate::op::attr_struct::write_field(&mut a, $onnx, &self.$field, &d.$field);
                    }
                )*
                a
            }
        }
    };
}

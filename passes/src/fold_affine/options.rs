//! `fold-affine`'s option schema and the resolved configuration.

use crate::options::{OptionKind, OptionSpec, PassOptions};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["cwac", "qwt"]),
        default: Some("cwac"),
        help: "cwac: channel-wise affine compensation (QwT-v2) folded into each quantized \
               layer's scales and bias; qwt: block-wise linear compensation (QwT), a float \
               MatMul+Add per transformer block fitted by least squares on the block input",
    },
    OptionSpec {
        name: "bias",
        kind: OptionKind::Bool,
        default: None,
        help: "cwac only (default true): fit a per-channel shift too (a layer without a bias \
               gains one: the bias input of MatMulNBits/Conv/Gemm, an Add after a QDQ \
               MatMul); false fits a scale only",
    },
    OptionSpec {
        name: "fold",
        kind: OptionKind::Bool,
        default: None,
        help: "cwac only (default true): false writes the compensation as explicit Mul/Add \
               nodes after each layer (the unfused reference the folded form equals)",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Cwac,
    Qwt,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FoldAffineConfig {
    pub method: Method,
    pub bias: bool,
    pub fold: bool,
}

impl FoldAffineConfig {
    pub fn resolve(o: &PassOptions) -> Result<FoldAffineConfig, String> {
        let method = match o.text("method") {
            None | Some("cwac") => Method::Cwac,
            Some("qwt") => Method::Qwt,
            Some(m) => {
                return Err(format!(
                    "fold-affine: unknown method `{m}` (valid: cwac, qwt)"
                ))
            }
        };
        if method == Method::Qwt {
            for name in ["bias", "fold"] {
                if o.bool(name).is_some() {
                    return Err(format!(
                        "fold-affine: `{name}` applies to method=cwac; method=qwt always fits a \
                         bias and inserts its compensation as a MatMul and Adds"
                    ));
                }
            }
        }
        Ok(FoldAffineConfig {
            method,
            bias: o.bool("bias").unwrap_or(true),
            fold: o.bool("fold").unwrap_or(true),
        })
    }
}

//! `fold-affine`'s option schema and the resolved configuration.

use crate::options::{OptionKind, OptionSpec, PassOptions};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["cwac"]),
        default: Some("cwac"),
        help: "cwac: channel-wise affine compensation (QwT-v2) folded into each quantized \
               layer's scales and bias",
    },
    OptionSpec {
        name: "bias",
        kind: OptionKind::Bool,
        default: Some("true"),
        help: "fit a per-channel shift too (a layer without a bias gains one: the bias input \
               of MatMulNBits, an Add after a QDQ MatMul); false fits a scale only",
    },
    OptionSpec {
        name: "fold",
        kind: OptionKind::Bool,
        default: Some("true"),
        help: "false writes the compensation as explicit Mul/Add nodes after each layer (the \
               unfused reference the folded form equals)",
    },
];

#[derive(Clone, Debug, PartialEq)]
pub struct FoldAffineConfig {
    pub bias: bool,
    pub fold: bool,
}

impl FoldAffineConfig {
    pub fn resolve(o: &PassOptions) -> Result<FoldAffineConfig, String> {
        match o.text("method") {
            None | Some("cwac") => {}
            Some(m) => return Err(format!("fold-affine: unknown method `{m}` (valid: cwac)")),
        }
        Ok(FoldAffineConfig {
            bias: o.bool("bias").unwrap_or(true),
            fold: o.bool("fold").unwrap_or(true),
        })
    }
}

//! `quant`'s option schema and the resolved configuration. Options the user leaves unset
//! are decided here, from the other options and from whether calibration data was given:
//! `quant` alone is int4 g128 asymmetric weight-only, GPTQ with calibration data and RTN
//! without; 8-bit weights default to per-channel symmetric (ORT's QDQ convention).

use super::importance::Importance;
use crate::needs_calibration;
use crate::options::{OptionKind, OptionSpec, PassOptions};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "bits",
        kind: OptionKind::Choice(&["8", "4", "3", "2"]),
        default: None,
        help: "weight bits (default 4; 8 for method=smoothquant)",
    },
    OptionSpec {
        name: "group",
        kind: OptionKind::Choice(&["0", "32", "64", "128"]),
        default: None,
        help: "input features per scale; 0 = per output channel (default 128; 0 for 8 bits)",
    },
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["rtn", "gptq", "awq", "smoothquant"]),
        default: None,
        help: "gptq when calibration data is given, rtn otherwise",
    },
    OptionSpec {
        name: "sym",
        kind: OptionKind::Bool,
        default: None,
        help: "symmetric weights (default false; true for 8 bits)",
    },
    OptionSpec {
        name: "act_bits",
        kind: OptionKind::Choice(&["0", "8"]),
        default: None,
        help: "8: static uint8 activation quantization of linear inputs (default 0; 8 for smoothquant)",
    },
    OptionSpec {
        name: "format",
        kind: OptionKind::Choice(&["qdq", "nbits"]),
        default: None,
        help: "qdq: DequantizeLinear + the float op; nbits: com.microsoft.MatMulNBits \
               (default: nbits for grouped ≤4-bit MatMul weights, qdq otherwise)",
    },
    OptionSpec {
        name: "skip",
        kind: OptionKind::Text,
        default: None,
        help: "keep layers whose weight or node name matches this glob in float (`*`, `?`; `|` separates patterns)",
    },
    OptionSpec {
        name: "damp",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: Some("0.01"),
        help: "GPTQ damping, as a fraction of the mean Hessian diagonal",
    },
    OptionSpec {
        name: "act_order",
        kind: OptionKind::Bool,
        default: Some("true"),
        help: "GPTQ: quantize columns by decreasing Hessian diagonal (with static groups)",
    },
    OptionSpec {
        name: "calib_method",
        kind: OptionKind::Choice(&["minmax", "percentile", "mse", "entropy"]),
        default: Some("minmax"),
        help: "activation range calibration (act_bits=8)",
    },
    OptionSpec {
        name: "importance",
        kind: OptionKind::Choice(&["none", "attncon"]),
        default: None,
        help: "GPTQ: weight calibration tokens in the Hessian by importance; attncon = the \
               attention mass each token receives in its block (RSQ; the default after \
               rotate{rsq=true}, none otherwise)",
    },
    OptionSpec {
        name: "alpha",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: Some("0.5"),
        help: "SmoothQuant migration strength",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Rtn,
    Gptq,
    Awq,
    SmoothQuant,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Rtn => "rtn",
            Method::Gptq => "gptq",
            Method::Awq => "awq",
            Method::SmoothQuant => "smoothquant",
        }
    }

    /// Methods that read calibration activations.
    pub fn needs_calibration(self) -> bool {
        !matches!(self, Method::Rtn)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Qdq,
    NBits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibMethod {
    MinMax,
    Percentile,
    Mse,
    Entropy,
}

impl CalibMethod {
    pub fn name(self) -> &'static str {
        match self {
            CalibMethod::MinMax => "minmax",
            CalibMethod::Percentile => "percentile",
            CalibMethod::Mse => "mse",
            CalibMethod::Entropy => "entropy",
        }
    }
}

/// Options with every default decided.
#[derive(Clone, Debug)]
pub struct QuantConfig {
    pub bits: u32,
    /// Input features per scale; 0 = per output channel.
    pub group: usize,
    pub method: Method,
    /// True when the method was chosen by default (the report says so).
    pub method_defaulted: bool,
    pub sym: bool,
    pub act_bits: u32,
    /// `None`: per layer (MatMulNBits for grouped ≤ 4-bit MatMul weights, QDQ otherwise).
    pub format: Option<Format>,
    pub skip: Vec<String>,
    pub damp: f64,
    pub act_order: bool,
    pub calib_method: CalibMethod,
    pub alpha: f64,
    /// GPTQ token weighting; `None` when unset (then the graph may ask for it).
    pub importance: Option<Importance>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            bits: 4,
            group: 128,
            method: Method::Rtn,
            method_defaulted: false,
            sym: false,
            act_bits: 0,
            format: None,
            skip: vec![],
            damp: 0.01,
            act_order: true,
            calib_method: CalibMethod::MinMax,
            alpha: 0.5,
            importance: None,
        }
    }
}

fn choice_int(o: &PassOptions, name: &str) -> Option<u32> {
    o.text(name).and_then(|t| t.parse().ok())
}

impl QuantConfig {
    /// Resolves the options; `has_calib` says whether calibration data was given.
    pub fn resolve(o: &PassOptions, has_calib: bool) -> Result<QuantConfig, String> {
        let (method, method_defaulted) = match o.text("method") {
            Some("rtn") => (Method::Rtn, false),
            Some("gptq") => (Method::Gptq, false),
            Some("awq") => (Method::Awq, false),
            Some("smoothquant") => (Method::SmoothQuant, false),
            Some(other) => return Err(format!("unknown method `{other}`")),
            None if has_calib => (Method::Gptq, true),
            None => (Method::Rtn, true),
        };
        let bits = choice_int(o, "bits").unwrap_or(match method {
            Method::SmoothQuant => 8,
            _ => 4,
        });
        let group = choice_int(o, "group")
            .map(|g| g as usize)
            .unwrap_or(if bits == 8 { 0 } else { 128 });
        let sym = o.bool("sym").unwrap_or(bits == 8);
        let act_bits = choice_int(o, "act_bits").unwrap_or(match method {
            Method::SmoothQuant => 8,
            _ => 0,
        });
        let format = match o.text("format") {
            Some("qdq") => Some(Format::Qdq),
            Some("nbits") => Some(Format::NBits),
            _ => None,
        };
        let skip = o.list("skip");
        let calib_method = match o.text("calib_method") {
            Some("percentile") => CalibMethod::Percentile,
            Some("mse") => CalibMethod::Mse,
            Some("entropy") => CalibMethod::Entropy,
            _ => CalibMethod::MinMax,
        };
        let cfg = QuantConfig {
            bits,
            group,
            method,
            method_defaulted,
            sym,
            act_bits,
            format,
            skip,
            damp: o.float("damp").unwrap_or(0.01),
            act_order: o.bool("act_order").unwrap_or(true),
            calib_method,
            alpha: o.float("alpha").unwrap_or(0.5),
            importance: o.text("importance").and_then(Importance::parse),
        };
        if cfg.importance == Some(Importance::AttnCon) && cfg.method != Method::Gptq {
            return Err(format!(
                "importance=attncon weights GPTQ's Hessian; it does not apply to method={}",
                cfg.method.name()
            ));
        }
        if !has_calib && (cfg.method.needs_calibration() || cfg.act_bits > 0) {
            let what = if cfg.method.needs_calibration() {
                format!("method={}", cfg.method.name())
            } else {
                "act_bits=8".to_string()
            };
            return Err(needs_calibration(&what));
        }
        Ok(cfg)
    }

    /// "int4 g128 asym", as the report writes a configuration.
    pub fn describe(&self) -> String {
        format!(
            "int{} {} {}",
            self.bits,
            if self.group == 0 {
                "per-channel".to_string()
            } else {
                format!("g{}", self.group)
            },
            if self.sym { "sym" } else { "asym" }
        )
    }
}

/// Glob match with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

//! `prune`'s option schema and the resolved configuration. Unstructured and N:M pruning
//! (`sparsity`, `pattern`, `method`) zero weights in place; structured pruning
//! (`structured=mlp|heads|both|channels|hidden`) removes whole MLP hidden units, attention
//! heads, convolution channels or residual-stream channels and shrinks the tensors. The two are separate modes of the pass: one `prune{...}` entry
//! does one or the other (a pipeline may hold two entries).

use crate::needs_calibration;
use crate::options::{OptionKind, OptionSpec, PassOptions};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "sparsity",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: None,
        help: "fraction of weights to zero (default 0.5; N:M patterns fix it at N/M)",
    },
    OptionSpec {
        name: "pattern",
        kind: OptionKind::Choice(&["unstructured", "2:4", "4:8"]),
        default: Some("unstructured"),
        help: "N:M zeroes N of every M consecutive weights along the input dimension",
    },
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["magnitude", "wanda", "sparsegpt"]),
        default: None,
        help: "weight scores: |W|, |W|·‖X‖ (wanda) or OBS with weight updates (sparsegpt); \
               default wanda with calibration data, magnitude without",
    },
    OptionSpec {
        name: "scope",
        kind: OptionKind::Choice(&["layer", "row", "adaptive-row", "global"]),
        default: None,
        help: "where the sparsity target holds for magnitude/wanda: per layer (magnitude's \
               default), per output row (wanda's default), per row with each row pruning the \
               same fraction of its score mass (adaptive-row, Wanda's variant) or over all \
               pruned layers at once",
    },
    OptionSpec {
        name: "skip",
        kind: OptionKind::Text,
        default: None,
        help: "leave layers whose weight or node name matches this glob dense (`*`, `?`; `|` separates patterns)",
    },
    OptionSpec {
        name: "layers",
        kind: OptionKind::Choice(&["blocks", "all"]),
        default: Some("blocks"),
        help: "blocks: the linears of attention and MLP idioms (not embeddings or the output \
               head); all: every float linear",
    },
    OptionSpec {
        name: "damp",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: Some("0.01"),
        help: "SparseGPT damping, as a fraction of the mean Hessian diagonal",
    },
    OptionSpec {
        name: "block",
        kind: OptionKind::Int { min: 1, max: 65536 },
        default: Some("128"),
        help: "SparseGPT columns per lazy-update block (the adaptive mask is chosen per block)",
    },
    OptionSpec {
        name: "structured",
        kind: OptionKind::Choice(&["mlp", "heads", "both", "channels", "hidden"]),
        default: None,
        help: "remove MLP hidden units and/or attention heads, convolution output channels, \
               or channels of a decoder's residual stream (hidden size); shrinks tensors",
    },
    OptionSpec {
        name: "ratio",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: None,
        help: "structured: fraction of MLP hidden units (and of heads, unless heads= is given) \
               to remove in every block (default 0.25)",
    },
    OptionSpec {
        name: "heads",
        kind: OptionKind::Int { min: 0, max: 4096 },
        default: None,
        help: "structured: number of attention heads (KV groups under GQA) to remove per layer",
    },
    OptionSpec {
        name: "importance",
        kind: OptionKind::Choice(&["magnitude", "wanda", "taylor"]),
        default: None,
        help: "structured: unit importance by weight L2 norm, by \
               Σ|W|·‖X‖ (wanda) or by the consumers' ‖W_{:,c}‖²·E[x_c²] (taylor: the \
               second-order OBD estimate); default wanda with calibration data, magnitude \
               without",
    },
    OptionSpec {
        name: "compensate",
        kind: OptionKind::Bool,
        default: Some("false"),
        help: "structured: add the removed channels' mean contribution (from calibration) to \
               the next layer's bias",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Magnitude,
    Wanda,
    SparseGpt,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Magnitude => "magnitude",
            Method::Wanda => "wanda",
            Method::SparseGpt => "sparsegpt",
        }
    }

    pub fn needs_calibration(self) -> bool {
        self != Method::Magnitude
    }
}

/// Zero `n` of every `m` consecutive weights along the input dimension, or no pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Unstructured,
    NM { n: usize, m: usize },
}

impl Pattern {
    pub fn name(self) -> String {
        match self {
            Pattern::Unstructured => "unstructured".into(),
            Pattern::NM { n, m } => format!("{n}:{m}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Layer,
    Row,
    /// Per-row budgets that prune the same fraction of every row's score mass, the
    /// fraction chosen so the layer holds the target (Wanda's `--use_variant`).
    AdaptiveRow,
    Global,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Layer => "layer",
            Scope::Row => "row",
            Scope::AdaptiveRow => "adaptive-row",
            Scope::Global => "global",
        }
    }

    /// Where the target holds, for the report.
    pub fn in_words(self) -> &'static str {
        match self {
            Scope::Layer => "per layer",
            Scope::Row => "per output row",
            Scope::AdaptiveRow => {
                "per layer, rows pruning an equal share of their score mass (adaptive-row)"
            }
            Scope::Global => "over all pruned layers",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Importance {
    Magnitude,
    Wanda,
    Taylor,
}

impl Importance {
    pub fn name(self) -> &'static str {
        match self {
            Importance::Magnitude => "magnitude",
            Importance::Wanda => "wanda",
            Importance::Taylor => "taylor",
        }
    }

    pub fn needs_calibration(self) -> bool {
        self != Importance::Magnitude
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Mlp,
    Heads,
    Both,
    /// Output channels of convolutions (with everything coupled to them).
    Channels,
    /// The hidden size of a pre-norm decoder's residual stream.
    Hidden,
}

impl Target {
    pub fn mlp(self) -> bool {
        matches!(self, Target::Mlp | Target::Both)
    }

    pub fn heads(self) -> bool {
        matches!(self, Target::Heads | Target::Both)
    }
}

/// Structured pruning, resolved.
#[derive(Clone, Debug)]
pub struct StructuredConfig {
    pub target: Target,
    /// Fraction of MLP hidden units removed per block.
    pub ratio: f64,
    /// Heads removed per attention; `None`: `round(ratio · heads)`.
    pub heads: Option<usize>,
    pub importance: Importance,
    pub compensate: bool,
}

/// Unstructured / N:M pruning, resolved.
#[derive(Clone, Debug)]
pub struct SparseConfig {
    pub sparsity: f64,
    pub pattern: Pattern,
    pub method: Method,
    pub method_defaulted: bool,
    pub scope: Scope,
    pub damp: f64,
    pub block: usize,
}

#[derive(Clone, Debug)]
pub enum Mode {
    Sparse(SparseConfig),
    Structured(StructuredConfig),
}

#[derive(Clone, Debug)]
pub struct PruneConfig {
    pub mode: Mode,
    pub skip: Vec<String>,
    pub all_layers: bool,
}

fn structured_only(o: &PassOptions) -> Option<&'static str> {
    ["ratio", "heads", "importance"]
        .into_iter()
        .find(|k| o.get(k).is_some())
}

impl PruneConfig {
    /// Resolves the options; `has_calib` says whether calibration data was given.
    pub fn resolve(o: &PassOptions, has_calib: bool) -> Result<PruneConfig, String> {
        let skip = o.list("skip");
        let all_layers = o.text("layers") == Some("all");
        let mode = match o.text("structured") {
            Some(t) => Mode::Structured(Self::structured(o, t, has_calib)?),
            None => {
                if let Some(k) = structured_only(o) {
                    return Err(format!(
                        "option `{k}` applies to structured pruning; give structured=mlp|heads|both"
                    ));
                }
                Mode::Sparse(Self::sparse(o, has_calib)?)
            }
        };
        Ok(PruneConfig {
            mode,
            skip,
            all_layers,
        })
    }

    fn sparse(o: &PassOptions, has_calib: bool) -> Result<SparseConfig, String> {
        let pattern = match o.text("pattern") {
            None | Some("unstructured") => Pattern::Unstructured,
            Some("2:4") => Pattern::NM { n: 2, m: 4 },
            Some("4:8") => Pattern::NM { n: 4, m: 8 },
            Some(p) => return Err(format!("unknown pattern `{p}` (unstructured, 2:4, 4:8)")),
        };
        let (method, method_defaulted) = match o.text("method") {
            Some("magnitude") => (Method::Magnitude, false),
            Some("wanda") => (Method::Wanda, false),
            Some("sparsegpt") => (Method::SparseGpt, false),
            Some(m) => {
                return Err(format!(
                    "unknown method `{m}` (magnitude, wanda, sparsegpt)"
                ))
            }
            None if has_calib => (Method::Wanda, true),
            None => (Method::Magnitude, true),
        };
        if method.needs_calibration() && !has_calib {
            return Err(needs_calibration(&format!("method={}", method.name())));
        }
        let sparsity = match (pattern, o.float("sparsity")) {
            (Pattern::Unstructured, s) => s.unwrap_or(0.5),
            (Pattern::NM { n, m }, Some(s)) if (s - n as f64 / m as f64).abs() > 1e-9 => {
                return Err(format!(
                    "pattern={n}:{m} zeroes exactly {n} of every {m} weights (sparsity {}); \
                     sparsity={s} contradicts it",
                    n as f64 / m as f64
                ))
            }
            (Pattern::NM { n, m }, _) => n as f64 / m as f64,
        };
        if !(0.0..1.0).contains(&sparsity) {
            return Err(format!(
                "sparsity={sparsity} is out of range: it must be at least 0 and below 1"
            ));
        }
        let scope = match (o.text("scope"), method) {
            (Some(_), Method::SparseGpt) => {
                return Err(
                    "scope= applies to magnitude and wanda; sparsegpt chooses its mask per \
                     block of columns"
                        .into(),
                )
            }
            (Some(_), _) if pattern != Pattern::Unstructured => {
                return Err(format!(
                    "scope= applies to unstructured pruning; pattern={} holds in every group",
                    pattern.name()
                ))
            }
            (Some("layer"), _) => Scope::Layer,
            (Some("row"), _) => Scope::Row,
            (Some("adaptive-row"), _) => Scope::AdaptiveRow,
            (Some("global"), _) => Scope::Global,
            (Some(s), _) => {
                return Err(format!(
                    "unknown scope `{s}` (layer, row, adaptive-row, global)"
                ))
            }
            (None, Method::Wanda | Method::SparseGpt) => Scope::Row,
            (None, Method::Magnitude) => Scope::Layer,
        };
        Ok(SparseConfig {
            sparsity,
            pattern,
            method,
            method_defaulted,
            scope,
            damp: o.float("damp").unwrap_or(0.01),
            block: o.int("block").unwrap_or(128).max(1) as usize,
        })
    }

    fn structured(o: &PassOptions, t: &str, has_calib: bool) -> Result<StructuredConfig, String> {
        let target = match t {
            "mlp" => Target::Mlp,
            "heads" => Target::Heads,
            "both" => Target::Both,
            "channels" => Target::Channels,
            "hidden" => Target::Hidden,
            other => {
                return Err(format!(
                    "unknown structured target `{other}` (mlp, heads, both, channels, hidden)"
                ))
            }
        };
        for k in ["sparsity", "method", "scope"] {
            if o.get(k).is_some() {
                return Err(format!(
                    "option `{k}` applies to unstructured pruning, not to structured={t}"
                ));
            }
        }
        if o.text("pattern").is_some_and(|p| p != "unstructured") {
            return Err(format!(
                "pattern= applies to unstructured pruning, not to structured={t}"
            ));
        }
        let ratio = o.float("ratio").unwrap_or(0.25);
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!(
                "ratio={ratio} is out of range: it must be at least 0 and below 1"
            ));
        }
        let heads = o.int("heads").map(|h| h as usize);
        if heads.is_some() && !target.heads() {
            return Err("heads= applies to structured=heads|both".into());
        }
        if matches!(target, Target::Channels | Target::Hidden) {
            super::structured::channels_rewrite::check_options(o, t)?;
        }
        let importance = match o.text("importance") {
            Some("magnitude") => Importance::Magnitude,
            Some("wanda") => Importance::Wanda,
            Some("taylor") => Importance::Taylor,
            Some(i) => {
                return Err(format!(
                    "unknown importance `{i}` (magnitude, wanda, taylor)"
                ))
            }
            None if has_calib
                && matches!(
                    target,
                    Target::Mlp | Target::Heads | Target::Both | Target::Channels | Target::Hidden
                ) =>
            {
                Importance::Wanda
            }
            None => Importance::Magnitude,
        };
        if importance.needs_calibration() && !has_calib {
            return Err(needs_calibration(&format!(
                "importance={}",
                importance.name()
            )));
        }
        let compensate = o.bool("compensate").unwrap_or(false);
        if compensate && !has_calib {
            return Err(needs_calibration("compensate=true"));
        }
        Ok(StructuredConfig {
            target,
            ratio,
            heads,
            importance,
            compensate,
        })
    }
}

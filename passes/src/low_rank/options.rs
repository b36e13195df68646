//! `low-rank`'s option schema and the resolved configuration.

use crate::options::{OptionKind, OptionSpec, PassOptions};

pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["svd", "asvd", "svdllm", "pca-out"]),
        default: Some("svd"),
        help: "svd: truncated SVD of W; asvd: SVD of W·diag(mean|x|^α); svdllm: SVD of W·L with \
               L the Cholesky factor of the calibration Gram matrix XᵀX; pca-out: projection \
               of the outputs y = Wx + b onto the top principal components of their \
               calibration covariance, the mean folded into the bias (all but svd need --calib)",
    },
    OptionSpec {
        name: "rank",
        kind: OptionKind::Int {
            min: 0,
            max: 1 << 30,
        },
        default: None,
        help: "rank r of every factored layer (capped at min(in, out))",
    },
    OptionSpec {
        name: "ratio",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: None,
        help: "fraction of each layer's parameters to keep: r = ⌊ratio·in·out/(in+out)⌋",
    },
    OptionSpec {
        name: "force",
        kind: OptionKind::Bool,
        default: Some("false"),
        help: "factor layers even where r·(in+out) ≥ in·out (no saving; for checks)",
    },
    OptionSpec {
        name: "alpha",
        kind: OptionKind::Float { min: 0.0, max: 4.0 },
        default: Some("0.5"),
        help: "ASVD: exponent of the per-channel mean |x| scale",
    },
    OptionSpec {
        name: "damp",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: Some("0.0001"),
        help: "SVD-LLM and pca-out: damping added to the Gram (SVD-LLM) or covariance \
               (pca-out) matrix of the inputs, as a fraction of its mean diagonal (SVD-LLM \
               raises it tenfold while the Cholesky factorization fails)",
    },
    OptionSpec {
        name: "skip",
        kind: OptionKind::Text,
        default: None,
        help: "leave layers whose weight or node name matches this glob alone (`*`, `?`; `|` separates patterns)",
    },
    OptionSpec {
        name: "alloc",
        kind: OptionKind::Choice(&["uniform", "energy"]),
        default: Some("uniform"),
        help: "uniform: every layer keeps ratio of its parameters; energy: the same total, \
               ranks chosen across layers by singular-value energy per parameter (of W, W·S or \
               W·L by method; for pca-out the output covariance's eigenvalues; needs ratio=)",
    },
    OptionSpec {
        name: "layers",
        kind: OptionKind::Choice(&["blocks", "all"]),
        default: Some("blocks"),
        help: "blocks: the linears of attention and MLP idioms (not embeddings or the output \
               head); all: every float linear",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Svd,
    Asvd,
    SvdLlm,
    /// Output-feature PCA (techniques.md §8.4).
    PcaOut,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Svd => "svd",
            Method::Asvd => "asvd",
            Method::SvdLlm => "svdllm",
            Method::PcaOut => "pca-out",
        }
    }

    pub fn needs_calibration(self) -> bool {
        self != Method::Svd
    }
}

/// How the rank of each layer is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    Rank(usize),
    Ratio(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    Uniform,
    Energy,
}

#[derive(Clone, Debug)]
pub struct LowRankConfig {
    pub alloc: Alloc,
    pub method: Method,
    pub target: Target,
    pub force: bool,
    pub alpha: f64,
    pub damp: f64,
    pub skip: Vec<String>,
    pub all_layers: bool,
}

impl LowRankConfig {
    pub fn resolve(o: &PassOptions) -> Result<LowRankConfig, String> {
        let method = match o.text("method") {
            Some("asvd") => Method::Asvd,
            Some("svdllm") => Method::SvdLlm,
            Some("pca-out") => Method::PcaOut,
            _ => Method::Svd,
        };
        let target = match (o.int("rank"), o.float("ratio")) {
            (Some(_), Some(_)) => {
                return Err("low-rank: give either rank= or ratio=, not both".into())
            }
            (None, None) => {
                return Err(
                    "low-rank: give rank=R (rank of every layer) or ratio=P (fraction of \
                     parameters to keep, 0 < P ≤ 1)"
                        .into(),
                )
            }
            (Some(r), None) => {
                if r < 1 {
                    return Err(format!("low-rank: rank={r}: the rank must be at least 1"));
                }
                Target::Rank(r as usize)
            }
            (None, Some(p)) => {
                if !(p > 0.0 && p <= 1.0) {
                    return Err(format!(
                        "low-rank: ratio={p}: the fraction of parameters kept must be in (0, 1]"
                    ));
                }
                Target::Ratio(p)
            }
        };
        let skip = o.list("skip");
        let alloc = match o.text("alloc") {
            Some("energy") => Alloc::Energy,
            _ => Alloc::Uniform,
        };
        if alloc == Alloc::Energy && !matches!(target, Target::Ratio(_)) {
            return Err(
                "low-rank: alloc=energy spreads a parameter budget over the layers; give \
                 ratio=P instead of rank="
                    .into(),
            );
        }
        Ok(LowRankConfig {
            alloc,
            method,
            target,
            force: o.bool("force").unwrap_or(false),
            alpha: o.float("alpha").unwrap_or(0.5),
            damp: o.float("damp").unwrap_or(1e-4),
            skip,
            all_layers: o.text("layers") == Some("all"),
        })
    }

    /// The rank for a layer with `n` inputs and `m` outputs (0 when the ratio leaves
    /// nothing), capped at `min(m, n)`.
    pub fn rank_for(&self, m: usize, n: usize) -> usize {
        let r = match self.target {
            Target::Rank(r) => r,
            Target::Ratio(p) => (p * (m * n) as f64 / (m + n) as f64).floor() as usize,
        };
        r.min(m.min(n))
    }

    pub fn describe(&self) -> String {
        match self.target {
            Target::Rank(r) => format!("rank {r}"),
            Target::Ratio(p) => format!("parameter ratio {p}"),
        }
    }
}

//! compc's passes and the machinery that runs them.
//!
//! A pass implements [`Pass`]; the [`Registry`] knows every pass by name with its option
//! schema; a pipeline string `name{key=value,...},name2` is checked against the registry
//! and run by the [`PassManager`], which verifies, times and records each pass in the
//! [`Ledger`] that becomes the output's report.

pub mod calib;
pub mod const_fold;
pub mod context;
pub mod cse;
pub mod dce;
pub mod egraph;
pub mod fold_affine;
pub mod gqa;
pub mod idioms;
pub mod ledger;
pub mod low_rank;
pub mod manager;
pub mod mod_routers;
pub mod options;
pub mod pass;
pub mod pipeline;
pub mod prune;
pub mod quant;
pub mod registry;
pub mod rotate;
pub mod same_constants;
pub mod share_layers;

pub use context::{needs_calibration, CalibData, PassContext, PassRecord};
pub use ledger::{GraphStats, Ledger, LedgerEntry};
pub use manager::{PassManager, PipelineError};
pub use options::{OptionKind, OptionSpec, OptionValue, PassOptions};
pub use pass::{Changed, Exactness, Pass, PassError};
pub use registry::{ConfiguredPass, PassDescriptor, Registry};

/// Descriptors of every built-in pass.
pub fn builtin_passes() -> Vec<PassDescriptor> {
    vec![
        PassDescriptor {
            name: "dce",
            summary: "remove nodes whose results nothing reads",
            exactness: Exactness::Exact,
            options: &[],
            build: |_| Ok(Box::new(dce::Dce)),
        },
        PassDescriptor {
            name: "cse",
            summary: "share identical computations and identical constants",
            exactness: Exactness::Exact,
            options: &[],
            build: |_| Ok(Box::new(cse::Cse)),
        },
        PassDescriptor {
            name: "const-fold",
            summary: "evaluate nodes whose inputs are constants (never quantization ops)",
            exactness: Exactness::Exact,
            options: &[],
            build: |_| Ok(Box::new(const_fold::ConstFold)),
        },
        quant::descriptor(),
        fold_affine::descriptor(),
        prune::descriptor(),
        rotate::descriptor(),
        gqa::descriptor(),
        share_layers::descriptor(),
        mod_routers::descriptor(),
        low_rank::descriptor(),
        PassDescriptor {
            name: "egraph-opt",
            summary: "equality saturation (egg) over pure regions: layout chains, identities, scale/BN/bias folding, fused GELU/norms; extracts the cheapest graph",
            exactness: Exactness::Exact,
            options: egraph::OPTIONS,
            build: |o| Ok(Box::new(egraph::EgraphOpt::from_options(o)?)),
        },
    ]
}

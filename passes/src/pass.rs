//! The `Pass` trait: one rewrite of the graph in place.

use crate::context::PassContext;
use compc_ir::Graph;

/// Whether a pass keeps the function the graph computes. Exact passes are tested for
/// numeric equality; lossy passes report their measured error in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Exactness {
    Exact,
    Lossy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl Changed {
    pub fn from_bool(b: bool) -> Changed {
        if b {
            Changed::Yes
        } else {
            Changed::No
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The pass cannot apply to this graph or these options (a user-facing condition).
    #[error("{0}")]
    Invalid(String),
    /// The graph is not what the pass expected (a verifier or inference error).
    #[error(transparent)]
    Verify(#[from] compc_ir::verify::VerifyError),
    #[error(transparent)]
    Graph(#[from] compc_ir::GraphError),
    #[error(transparent)]
    Runtime(#[from] compc_runtime::RuntimeError),
}

pub trait Pass {
    /// Kebab-case name, as written in pipelines.
    fn name(&self) -> &'static str;
    fn exactness(&self) -> Exactness;
    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError>;
}

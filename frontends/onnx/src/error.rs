//! Import errors. Each one displays as a single line that names the file, tensor or node
//! at fault, because the CLI prints it as is.

use compc_ir::infer::InferError;
use compc_ir::verify::VerifyError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// Model-level problems: opsets, missing graph, duplicate names.
    #[error("{0}")]
    Model(String),
    #[error("tensor `{name}`: {what}")]
    Tensor { name: String, what: String },
    #[error("tensor `{name}`: external data `{location}`: {what}")]
    ExternalData {
        name: String,
        location: String,
        what: String,
    },
    /// A node-level problem; the message starts with the node (`` `Loop` node "x" ``).
    #[error("{0}")]
    Node(String),
    #[error("shape inference failed at {0}")]
    Infer(#[from] InferError),
    #[error("the imported graph is invalid: {0}")]
    Verify(#[from] VerifyError),
}

impl ImportError {
    pub(crate) fn tensor(name: &str, what: impl Into<String>) -> Self {
        ImportError::Tensor {
            name: name.to_string(),
            what: what.into(),
        }
    }
}

//! Export errors: one line each, naming the node, weight or file at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A node compc cannot write (yet), or cannot write at the requested opset.
    #[error("{0}")]
    Node(String),
    /// Graph-level problems: duplicate input/output names, a cycle.
    #[error("{0}")]
    Graph(String),
    #[error("{0}")]
    Opset(String),
    #[error("{0}")]
    Weight(#[from] compc_ir::WeightError),
    #[error("the weights take {bytes} bytes, more than one ONNX file can hold; {hint}")]
    TooLarge { bytes: u64, hint: &'static str },
    #[error("refusing to write {}: the graph's weights are memory-mapped from that file", path.display())]
    WouldOverwriteSource { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ExportError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

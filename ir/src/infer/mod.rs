//! Shape and type inference. (Stub: keeps the types the graph already has.)

use crate::graph::Graph;

#[derive(Debug, thiserror::Error)]
#[error("{node}: {message}")]
pub struct InferError {
    pub node: String,
    pub message: String,
}

/// Infers the output types of every node in topological order, refining what is there.
pub fn infer_graph(_g: &mut Graph) -> Result<(), InferError> {
    Ok(())
}

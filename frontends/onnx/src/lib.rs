//! ONNX import: a `ModelProto` (opsets 13–23 of the default domain) to compc's IR.
//!
//! - Initializers become weights, each read through one shared `Const` node; external
//!   data is memory-mapped (one mapping per file), never copied. Its location must stay
//!   inside the model's folder.
//! - Opset differences are normalized so the IR has one form: constant `axes`/`split`
//!   inputs become attributes; `SimplifiedLayerNormalization` becomes `RmsNorm`; forms
//!   of opsets before 13 are rewritten to their opset-13 equivalents (`legacy.rs`).
//! - Ops compc does not know are kept verbatim as `Op::Custom`; control flow (graph
//!   attributes) is refused.
//! - Values without `value_info` get a placeholder type (unranked f32) that shape
//!   inference then refines; the verifier runs last.
//! - Hostile files fail with an error, never a panic or a huge allocation.

// onnx-protobuf's generated code needs exactly protobuf 3.4.0, which the workspace names
// `protobuf-onnx`.
extern crate protobuf_onnx as protobuf;

mod attrs;
mod builder;
mod control;
mod error;
mod external;
mod legacy;
mod model;
mod ops;
mod sort;
mod tensor;
pub mod testdata;
mod types;

pub use error::ImportError;
pub use types::{dtype_from_code, ValueKind};

use compc_ir::Graph;
use std::path::Path;

/// The oldest default-domain opset compc reads. Forms older than 13 are rewritten to
/// their opset-13 equivalents on import (or refused where there is none).
pub const OLDEST_OPSET: i64 = 1;
/// The newest default-domain opset compc reads.
pub const NEWEST_OPSET: i64 = 23;

/// Keys under which model-level fields are kept in `Graph::metadata`; the ONNX backend
/// writes them back.
pub mod meta {
    pub const PRODUCER_NAME: &str = "onnx.producer_name";
    pub const PRODUCER_VERSION: &str = "onnx.producer_version";
    pub const DOC_STRING: &str = "onnx.doc_string";
    pub const DOMAIN: &str = "onnx.domain";
    pub const MODEL_VERSION: &str = "onnx.model_version";
    pub const GRAPH_DOC_STRING: &str = "onnx.graph_doc_string";
    /// `ModelProto.metadata_props` entries are kept as `onnx.meta.<key>`.
    pub const PROPS_PREFIX: &str = "onnx.meta.";
}

/// Reads an ONNX model; external data is looked up beside it.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let m = model::parse(&bytes)?;
    // The parsed model holds its own copies; the file's bytes are not needed any more.
    drop(bytes);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    model::import(m, Some(dir))
}

/// Reads one serialized `TensorProto` (the `.pb` files of ONNX's test data) as a weight
/// named after the tensor. External data is refused: there is no folder to resolve it in.
pub fn read_tensor(bytes: &[u8]) -> Result<compc_ir::Weight, ImportError> {
    use protobuf::Message;
    let mut t = onnx_protobuf::TensorProto::parse_from_bytes(bytes)
        .map_err(|e| ImportError::NotOnnx(format!("not a TensorProto: {e}")))?;
    let name = t.name.clone();
    tensor::weight(&mut t, &name, &mut external::ExternalFiles::new(None))
}

/// Reads an ONNX model from memory. External data is resolved in `base_dir`; without
/// one, a model with external data is refused.
pub fn import_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph, ImportError> {
    let m = model::parse(bytes)?;
    model::import(m, base_dir)
}

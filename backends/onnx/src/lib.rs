//! ONNX export: compc's IR to a `ModelProto` that onnxruntime runs.
//!
//! - Nodes are written in `Graph::topo_order`; graph inputs and outputs keep their names,
//!   weights become initializers named by the weight (only the ones some node reads),
//!   other values are named `<node>_out<i>`.
//! - The opset is the one asked for, else the graph's own (or 17), raised when the graph
//!   needs newer ops or types (4-bit types and blocked quantization need 21); `axes` and
//!   `split` are written as attributes or constant inputs as that opset wants.
//! - compc's own ops are lowered: `Hadamard` to a MatMul by the Hadamard matrix;
//!   `RmsNorm` is `RMSNormalization` (23+) or onnxruntime's `SimplifiedLayerNormalization`.
//! - Large models put their weights in one `<stem>.data` file beside the model (64-byte
//!   aligned), streamed from the weight store; memory-mapped weights are never loaded whole.

extern crate protobuf_onnx as protobuf;

mod attrs;
mod emit;
mod error;
mod forms;
mod lower;
mod model;
mod names;
mod plan;
mod types;
mod write;

pub use error::ExportError;
pub use model::{EXTERNAL_MIN, INLINE_LIMIT};
pub use plan::ir_version;

use compc_ir::Graph;
use onnx_protobuf::ModelProto;
use std::path::{Path, PathBuf};

/// Metadata keys the ONNX frontend fills (kept in step with `compc_frontend_onnx::meta`).
mod meta {
    pub const DOC_STRING: &str = "onnx.doc_string";
    pub const DOMAIN: &str = "onnx.domain";
    pub const MODEL_VERSION: &str = "onnx.model_version";
    pub const GRAPH_DOC_STRING: &str = "onnx.graph_doc_string";
    pub const PROPS_PREFIX: &str = "onnx.meta.";
}

/// Where initializer bytes go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalData {
    /// Inline, unless the weights exceed what one ONNX file can hold.
    #[default]
    Auto,
    /// Every weight of at least `EXTERNAL_MIN` bytes in the external file.
    Always,
    /// Always inline; too large a model is an error.
    Never,
}

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub external_data: ExternalData,
    /// Default-domain opset to write; default: the graph's own, else 17.
    pub opset: Option<i64>,
}

/// Builds the model in memory, with every weight inline.
pub fn export_model(g: &Graph, opts: &ExportOptions) -> Result<ModelProto, ExportError> {
    Ok(model::build(g, opts, None)?.model)
}

/// Writes `path`, and `<stem>.data` beside it when weights go to external data.
pub fn export_file(g: &Graph, path: &Path, opts: &ExportOptions) -> Result<(), ExportError> {
    let data_path = data_path(path)?;
    write::check_not_source(g, &[path, &data_path])?;
    let location = data_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let built = model::build(g, opts, Some(&location))?;
    if !built.chunks.is_empty() {
        write::write_data(g, &built, &data_path)?;
    }
    write::write_model(&built, path)
}

/// `<stem>.data` beside the model.
pub fn data_path(path: &Path) -> Result<PathBuf, ExportError> {
    let stem = path
        .file_stem()
        .ok_or_else(|| ExportError::io(path, std::io::Error::other("the path has no file name")))?;
    let mut name = stem.to_os_string();
    name.push(".data");
    Ok(path.with_file_name(name))
}

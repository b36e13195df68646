//! compc's graph IR.
//!
//! - [`Graph`]: typed nodes on a petgraph `StableDiGraph`, graph inputs/outputs, opsets.
//! - [`Op`]: every operation, with typed attributes; compression ops are first class.
//! - [`TensorType`]: element type + dims that are known, symbolic or unknown.
//! - [`WeightStore`]: tensor data outside the graph, owned or memory-mapped.
//! - [`verify`]: structural and type checks whose errors name the node.
//! - [`infer`]: shape inference for the ops compc supports.
//! - [`region`]: cut a subgraph out as a standalone graph and splice a replacement back
//!   (the door to other IR forms: e-graphs, MLIR).
//! - [`text`]: the textual form (printer and parser, byte-for-byte round trip).

pub mod attr;
pub mod cost;
pub mod dtype;
pub mod graph;
pub mod infer;
pub mod op;
pub mod region;
pub mod shape;
pub mod text;
pub mod verify;
pub mod weights;

pub use attr::{Attr, Attrs, Literal};
pub use dtype::DType;
pub use graph::{Edge, Graph, GraphError, GraphOutput, Node, NodeId, ValueRef};
pub use op::Op;
pub use shape::{Dim, Shape, TensorType};
pub use weights::{Weight, WeightData, WeightError, WeightId, WeightStore};

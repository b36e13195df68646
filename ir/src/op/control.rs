//! Control flow (If, Loop, Scan, SequenceMap), sequences and optionals.
//!
//! A body is a [`Subgraph`]: a whole [`Graph`] held in the op. ONNX bodies may read any
//! value of an enclosing graph by name; in the IR such reads are explicit: the outer
//! values a body reads ("captures") are the node's last inputs, and the body has one graph
//! input for each, after the inputs ONNX gives it. `captures` counts them.
//!
//! Sequence and optional values have no type of their own in the IR: a value holding a
//! sequence of tensors (or an optional) has its elements' element type and an unranked
//! shape; the ops that make and read them say what they are.
//!
//! In the text format a body is printed as a string attribute holding its own text.

use crate::attr::{Attr, AttrReader};
use crate::attr_struct;
use crate::dtype::DType;
use crate::graph::Graph;
use crate::op::attr_struct::AttrField;
use std::fmt;
use std::sync::Arc;

/// A body graph, shared (cloning an op does not copy it).
#[derive(Clone, Default)]
pub struct Subgraph(pub Arc<Graph>);

impl Subgraph {
    pub fn new(g: Graph) -> Self {
        Subgraph(Arc::new(g))
    }

    pub fn graph(&self) -> &Graph {
        &self.0
    }

    /// The graph for changing (copied first if another op shares it).
    pub fn graph_mut(&mut self) -> &mut Graph {
        Arc::make_mut(&mut self.0)
    }
}

impl fmt::Debug for Subgraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Subgraph(@{}, {} nodes)",
            self.0.name,
            self.0.node_count()
        )
    }
}

/// Two bodies are equal when they print the same.
impl PartialEq for Subgraph {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || crate::text::print(&self.0) == crate::text::print(&other.0)
    }
}

impl AttrField for Subgraph {
    fn read(r: &mut AttrReader<'_>, name: &str, default: Self) -> Result<Self, String> {
        match r.opt_str(name)? {
            None => Ok(default),
            Some(text) => crate::text::parse(&text)
                .map(Subgraph::new)
                .map_err(|e| format!("body `{name}`: {e}")),
        }
    }
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Str(crate::text::print(&self.0)))
    }
}

attr_struct!(
    /// `If`: input 0 is the condition, the rest are captures; both branches take the
    /// captures as their inputs and give the node's outputs.
    IfOp {
        else_branch: Subgraph = Subgraph::default() => "else_branch",
        then_branch: Subgraph = Subgraph::default() => "then_branch",
    }
    required ["else_branch", "then_branch"]
);

attr_struct!(
    /// `Loop`: inputs `M` (trip count, optional), `cond` (optional), N loop-carried values,
    /// then the captures. Body: inputs `(iteration, cond, N values, captures)`, outputs
    /// `(cond, N values, K scan outputs)`; the node gives the N final values and the K scan
    /// outputs stacked along a new first axis.
    LoopOp {
        body: Subgraph = Subgraph::default() => "body",
        captures: i64 = 0 => "captures",
    }
    required ["body"]
);

attr_struct!(
    /// `Scan` (opset 9 and later): inputs N initial states, M scanned tensors, then the
    /// captures; the body maps (states, one slice of each scanned input, captures) to
    /// (new states, K slices), which the node stacks.
    ScanOp {
        body: Subgraph = Subgraph::default() => "body",
        captures: i64 = 0 => "captures",
        num_scan_inputs: i64 = 0 => "num_scan_inputs",
        scan_input_axes: Option<Vec<i64>> = None => "scan_input_axes",
        scan_input_directions: Option<Vec<i64>> = None => "scan_input_directions",
        scan_output_axes: Option<Vec<i64>> = None => "scan_output_axes",
        scan_output_directions: Option<Vec<i64>> = None => "scan_output_directions",
    }
    required ["body", "num_scan_inputs"]
);

attr_struct!(
    /// `SequenceMap`: input 0 a sequence, then further sequences or tensors, then the
    /// captures; the body runs once per element (tensors are passed whole) and each of
    /// its outputs is collected into an output sequence.
    SequenceMapOp {
        body: Subgraph = Subgraph::default() => "body",
        captures: i64 = 0 => "captures",
    }
    required ["body"]
);

attr_struct!(
    /// An empty sequence of `dtype` (f32 when unset).
    SequenceEmpty {
        dtype: Option<DType> = None => "dtype",
    }
);

attr_struct!(
    ConcatFromSequence {
        axis: i64 = 0 => "axis",
        new_axis: bool = false => "new_axis",
    }
    required ["axis"]
);

attr_struct!(
    SplitToSequence {
        axis: i64 = 0 => "axis",
        keepdims: bool = true => "keepdims",
    }
);

attr_struct!(
    /// `Optional`: wraps its input, or with no input is empty (of `elem_type`, which the
    /// importer reads from ONNX's `type` attribute).
    OptionalOp {
        elem_type: Option<DType> = None => "elem_type",
        /// The empty optional holds a sequence rather than a tensor.
        of_sequence: bool = false => "of_sequence",
    }
);

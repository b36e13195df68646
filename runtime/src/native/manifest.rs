//! The manifest of a compiled model (`OUT/manifest.json`): which library and entry point
//! to call, and for every argument of the entry point where its bytes come from (a graph
//! input or a range of `weights.bin`), its element type and its dims. Written by the MLIR
//! backend, read by [`super::NativeModel`]; the runtime needs no MLIR to run it.

use compc_ir::{DType, Dim};
use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT_VERSION: u32 = 1;

/// A dim: a number, or the name of a symbolic dim (`batch`, or a product `batch*seq`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DimSpec {
    Known(u64),
    Sym(String),
}

impl DimSpec {
    pub fn from_dim(d: &Dim) -> Option<DimSpec> {
        match d {
            Dim::Known(n) => Some(DimSpec::Known(*n)),
            Dim::Sym(s) => Some(DimSpec::Sym(s.clone())),
            Dim::Unknown => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Text-format dtype name (`f32`, `i64`, `bool`, `u8`).
    pub dtype: String,
    pub dims: Vec<DimSpec>,
}

impl TensorSpec {
    pub fn dtype(&self) -> Result<DType, String> {
        self.dtype
            .parse::<DType>()
            .map_err(|_| format!("unknown dtype `{}`", self.dtype))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binding {
    /// Graph input number `index`.
    Input { index: usize },
    /// `len` bytes of the weights file at `offset` (64-byte aligned).
    Weights { offset: u64, len: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamSpec {
    #[serde(flatten)]
    pub tensor: TensorSpec,
    pub binding: Binding,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `cpu` (shared library) or `gpu` (PTX).
    pub target: String,
    /// File name of the library in the output folder.
    pub library: String,
    /// The packed-argument entry point (`void entry(void **args)`).
    pub entry: String,
    pub weights_file: String,
    /// Entry-point arguments in order: inputs and weights; the outputs follow them.
    pub params: Vec<ParamSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Graph input names in order (what `compc run --inputs` must provide).
    pub inputs: Vec<String>,
    /// GPU models: the architecture the PTX was generated for (`sm_90`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<String>,
    /// GPU models: every kernel in `kernels.ptx`, in launch-independent terms (the grid
    /// depends on the input shapes and is computed by the host code in the library).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelSpec>,
    /// CPU models whose samples are computed independently of each other along dim 0,
    /// which is this symbolic dim in every input and output: the runtime may run them one
    /// sample at a time (a batch of one keeps its intermediate tensors in the caches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_batch: Option<String>,
}

/// One GPU kernel as the PTX declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSpec {
    /// Entry name in the PTX.
    pub name: String,
    /// The PTX module (one `gpu.module`) that holds it; the host code loads each module
    /// and looks the kernel up by name.
    pub module: String,
    /// Number of launch arguments (pointers and sizes of the buffers it reads and
    /// writes, then scalars).
    pub params: usize,
    /// Threads per block (x, y, z) when the PTX fixes it (`.maxntid`/`.reqntid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<[u32; 3]>,
    /// Static shared memory per block, in bytes.
    pub shared_bytes: u64,
}

//! Runs models compiled to native code by the MLIR backend. The compiled entry point takes
//! packed arguments (`void entry(void **args)`, MLIR's `llvm.emit_c_interface` wrapper):
//! each argument is a pointer to a pointer to a strided memref descriptor
//! `{allocated, aligned, offset, sizes[rank], strides[rank]}`, in manifest order: inputs,
//! weights, then the outputs, which the caller allocates (their shapes follow from the
//! input shapes through the symbolic dims).
//!
//! [`NativeModel::load`] opens an output folder (`manifest.json`, the shared library,
//! `weights.bin` memory-mapped); the backend's JIT builds one from an in-process function
//! pointer with [`NativeModel::from_entry`].

pub mod gpu;
pub mod gpu_pool;
pub mod manifest;

use crate::{RuntimeError, Tensor};
use compc_ir::{DType, Weight};
use manifest::{Binding, DimSpec, Manifest, TensorSpec, MANIFEST_FILE};
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::Arc;

pub type PackedEntry = unsafe extern "C" fn(*mut *mut c_void);

type Result<T> = std::result::Result<T, RuntimeError>;

/// Bytes with at least 16-byte alignment (what vectorized code may assume for weights).
#[derive(Clone)]
pub enum WeightBytes {
    Owned(Arc<Vec<u128>>, usize),
    Mapped(Arc<memmap2::Mmap>, usize, usize),
}

impl WeightBytes {
    pub fn copy_of(b: &[u8]) -> WeightBytes {
        let mut v = vec![0u128; b.len().div_ceil(16).max(1)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut v)[..b.len()].copy_from_slice(b);
        WeightBytes::Owned(Arc::new(v), b.len())
    }
    fn ptr(&self) -> *const u8 {
        match self {
            WeightBytes::Owned(v, _) => v.as_ptr() as *const u8,
            WeightBytes::Mapped(m, off, _) => m[*off..].as_ptr(),
        }
    }
    fn len(&self) -> usize {
        match self {
            WeightBytes::Owned(_, n) => *n,
            WeightBytes::Mapped(_, _, n) => *n,
        }
    }
}

pub struct NativeModel {
    entry: PackedEntry,
    manifest: Manifest,
    /// One per `Binding::Weights` param, in param order.
    weights: Vec<WeightBytes>,
    /// Keeps the code alive: the shared library, or the JIT engine of the backend.
    _owner: Box<dyn std::any::Any>,
    /// Threads that run the samples of a `split_batch` model side by side (`None`: the
    /// calling thread runs them in turn).
    pool: Option<rayon::ThreadPool>,
}

// The entry point is reentrant (no global state) and the weights are read-only.
unsafe impl Send for NativeModel {}
unsafe impl Sync for NativeModel {}

fn err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Graph(msg.into())
}

impl NativeModel {
    /// Wraps an entry point that `owner` keeps alive.
    ///
    /// # Safety
    /// `entry` must be the packed entry point of code compiled for exactly `manifest`.
    pub unsafe fn from_entry(
        entry: PackedEntry,
        manifest: Manifest,
        weights: Vec<WeightBytes>,
        owner: Box<dyn std::any::Any>,
    ) -> NativeModel {
        NativeModel {
            entry,
            manifest,
            weights,
            _owner: owner,
            pool: None,
        }
    }

    /// Runs the samples of a batch-separable model (`split_batch` in the manifest) on
    /// `threads` threads side by side; other models, and `threads` ≤ 1, run on the calling
    /// thread. Outputs are the same either way (each sample is one call of the same code).
    pub fn with_threads(mut self, threads: usize) -> Result<NativeModel> {
        self.pool = if threads > 1 && self.manifest.split_batch.is_some() {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| err(format!("cannot start {threads} threads: {e}")))?;
            Some(pool)
        } else {
            None
        };
        Ok(self)
    }

    /// Opens a compiled CPU model folder.
    pub fn load(dir: &Path) -> Result<NativeModel> {
        let io = |p: &Path, e: std::io::Error| RuntimeError::Io {
            path: p.display().to_string(),
            msg: e.to_string(),
        };
        let manifest = read_manifest(dir)?;
        if manifest.target != "cpu" {
            return Err(err(format!(
                "{} holds a `{}` model; this runs `cpu` models",
                dir.display(),
                manifest.target
            )));
        }
        let wpath = dir.join(&manifest.weights_file);
        let file = std::fs::File::open(&wpath).map_err(|e| io(&wpath, e))?;
        // SAFETY: the weights file is only read; compc writes it once, atomically.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(&wpath, e))?);
        let mut weights = Vec::new();
        for p in &manifest.params {
            if let Binding::Weights { offset, len } = p.binding {
                let end = offset.checked_add(len).filter(|&e| e <= map.len() as u64);
                if end.is_none() {
                    return Err(err(format!(
                        "{}: weight `{}` lies outside the file ({} bytes)",
                        wpath.display(),
                        p.tensor.name,
                        map.len()
                    )));
                }
                weights.push(WeightBytes::Mapped(
                    map.clone(),
                    offset as usize,
                    len as usize,
                ));
            }
        }
        let lpath = dir.join(&manifest.library);
        // SAFETY: loading runs the library's initialisers; compc's own output has none
        // beyond the C runtime's.
        let lib = unsafe { libloading::Library::new(&lpath) }.map_err(|e| RuntimeError::Io {
            path: lpath.display().to_string(),
            msg: e.to_string(),
        })?;
        let entry: PackedEntry = unsafe {
            *lib.get::<PackedEntry>(manifest.entry.as_bytes())
                .map_err(|e| RuntimeError::Io {
                    path: lpath.display().to_string(),
                    msg: format!("no entry point `{}`: {e}", manifest.entry),
                })?
        };
        Ok(NativeModel {
            pool: None,
            entry,
            manifest,
            weights,
            _owner: Box::new(lib),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Runs the model on named inputs; returns the outputs in manifest order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let by_name: HashMap<&str, &Tensor> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut syms: HashMap<String, u64> = HashMap::new();
        // Bind symbolic dims from the inputs, checking static ones.
        let mut input_bytes: Vec<Vec<u128>> = Vec::new();
        let mut descs: Vec<Vec<i64>> = Vec::new();
        let mut weights = self.weights.iter();
        for p in &self.manifest.params {
            let spec = &p.tensor;
            let dt = spec.dtype().map_err(err)?;
            match p.binding {
                Binding::Input { .. } => {
                    let t = given_input(spec, dt, &by_name)?;
                    bind_dims(spec, t.shape(), &mut syms)?;
                    let bytes = t.to_bytes();
                    let mut buf = vec![0u128; bytes.len().div_ceil(16).max(1)];
                    bytemuck::cast_slice_mut::<u128, u8>(&mut buf)[..bytes.len()]
                        .copy_from_slice(&bytes);
                    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
                    descs.push(descriptor(buf.as_ptr() as *const u8, &shape));
                    input_bytes.push(buf);
                }
                Binding::Weights { .. } => {
                    let w = weights.next().ok_or_else(|| err("weights missing"))?;
                    let shape = resolve(spec, &syms)?;
                    let want = dt.storage_bytes(shape.iter().product()).unwrap_or(0) as usize;
                    if w.len() != want {
                        return Err(err(format!(
                            "weight `{}` has {} bytes, its type needs {want}",
                            spec.name,
                            w.len()
                        )));
                    }
                    descs.push(descriptor(w.ptr(), &shape));
                }
            }
        }
        let mut outs: Vec<(Vec<u128>, OutputLayout)> = Vec::new();
        for layout in output_layouts(&self.manifest, &syms)? {
            outs.push((vec![0u128; layout.bytes.div_ceil(16).max(1)], layout));
        }
        for (buf, layout) in &outs {
            descs.push(descriptor(buf.as_ptr() as *const u8, &layout.shape));
        }
        match (self.split(&syms, &descs), &self.pool) {
            // SAFETY: as below; every per-sample descriptor points at one sample's block
            // (dim 0 of size 1) of the same buffers, so the calls write disjoint outputs,
            // and the entry point is reentrant (no global state; intermediate buffers come
            // from each thread's own cache).
            (Some(per_sample), Some(pool)) => {
                use rayon::prelude::*;
                let entry = self.entry;
                pool.install(|| {
                    per_sample
                        .into_par_iter()
                        .for_each(|mut d| unsafe { call_packed(entry, &mut d) })
                });
            }
            (Some(per_sample), None) => {
                for mut d in per_sample {
                    unsafe { call_packed(self.entry, &mut d) };
                }
            }
            // SAFETY: every descriptor points at a live buffer of the size its dims say,
            // in the order and with the types of the manifest the code was compiled for.
            (None, _) => unsafe { call_packed(self.entry, &mut descs) },
        }
        drop(input_bytes);
        let mut result = Vec::new();
        for ((buf, layout), spec) in outs.into_iter().zip(&self.manifest.outputs) {
            let bytes = bytemuck::cast_slice::<u128, u8>(&buf)[..layout.bytes].to_vec();
            result.push(output_tensor(spec, layout, bytes)?);
        }
        Ok(result)
    }
}

impl NativeModel {
    /// For a model the manifest marks as `split_batch`, run on a batch of more than one:
    /// the descriptors of each sample in turn (inputs and outputs narrowed to their
    /// sample's block, weights unchanged). `None`: one call on the whole batch.
    fn split(&self, syms: &HashMap<String, u64>, descs: &[Vec<i64>]) -> Option<Vec<Vec<Vec<i64>>>> {
        let s = self.manifest.split_batch.as_ref()?;
        let n = *syms.get(s)?;
        if n <= 1 {
            return None;
        }
        // (argument index, bytes per sample) of every input and output.
        let mut batched = Vec::new();
        let specs = self
            .manifest
            .params
            .iter()
            .map(|p| (&p.tensor, matches!(p.binding, Binding::Input { .. })))
            .chain(self.manifest.outputs.iter().map(|o| (o, true)));
        for (i, (spec, is_batched)) in specs.enumerate() {
            if !is_batched {
                continue;
            }
            if spec.dims.first() != Some(&DimSpec::Sym(s.clone())) {
                return None;
            }
            let rest: u64 = resolve(spec, syms).ok()?[1..].iter().product();
            let dt = spec.dtype().ok()?;
            let per = dt.storage_bytes(rest)?;
            if dt.storage_bytes(rest * n)? != per * n {
                return None;
            }
            batched.push((i, per as i64));
        }
        Some(
            (0..n as i64)
                .map(|k| {
                    let mut d = descs.to_vec();
                    for &(i, per) in &batched {
                        d[i][0] += k * per;
                        d[i][1] += k * per;
                        d[i][3] = 1;
                    }
                    d
                })
                .collect(),
        )
    }
}

/// Input `spec` from the named inputs, checked to have the manifest's dtype.
fn given_input<'a>(
    spec: &TensorSpec,
    dt: DType,
    by_name: &HashMap<&str, &'a Tensor>,
) -> Result<&'a Tensor> {
    let t = by_name
        .get(spec.name.as_str())
        .ok_or_else(|| RuntimeError::Input {
            name: spec.name.clone(),
            msg: "not given".into(),
        })?;
    if t.dtype() != dt {
        return Err(RuntimeError::Input {
            name: spec.name.clone(),
            msg: format!("expected {}, got {}", dt.name(), t.dtype().name()),
        });
    }
    Ok(t)
}

/// An output's dtype, shape (symbolic dims resolved) and size in bytes.
struct OutputLayout {
    dtype: DType,
    shape: Vec<u64>,
    bytes: usize,
}

fn output_layouts(manifest: &Manifest, syms: &HashMap<String, u64>) -> Result<Vec<OutputLayout>> {
    manifest
        .outputs
        .iter()
        .map(|o| {
            let dtype = o.dtype().map_err(err)?;
            let shape = resolve(o, syms)?;
            let bytes = dtype.storage_bytes(shape.iter().product()).unwrap_or(0) as usize;
            Ok(OutputLayout {
                dtype,
                shape,
                bytes,
            })
        })
        .collect()
}

/// Output `spec` as a tensor from its first `layout.bytes` bytes.
fn output_tensor(
    spec: &TensorSpec,
    layout: OutputLayout,
    mut bytes: Vec<u8>,
) -> Result<(String, Tensor)> {
    bytes.truncate(layout.bytes);
    let w = Weight::from_bytes(spec.name.clone(), layout.dtype, layout.shape, bytes)
        .map_err(|e| err(e.to_string()))?;
    Ok((spec.name.clone(), Tensor::from_weight(&w)?))
}

/// Calls a packed entry point with one descriptor per argument.
///
/// # Safety
/// `descs` must match the entry point's arguments (order, rank, element type) and point
/// at live buffers of the sizes their dims say.
unsafe fn call_packed(entry: PackedEntry, descs: &mut [Vec<i64>]) {
    let mut desc_ptrs: Vec<*mut i64> = descs.iter_mut().map(|d| d.as_mut_ptr()).collect();
    let mut args: Vec<*mut c_void> = desc_ptrs
        .iter_mut()
        .map(|p| p as *mut *mut i64 as *mut c_void)
        .collect();
    unsafe { entry(args.as_mut_ptr()) };
}

/// Reads and checks `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&mpath).map_err(|e| RuntimeError::Io {
        path: mpath.display().to_string(),
        msg: e.to_string(),
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| RuntimeError::Io {
        path: mpath.display().to_string(),
        msg: format!("not a compc manifest: {e}"),
    })?;
    if manifest.format != manifest::FORMAT_VERSION {
        return Err(err(format!(
            "{}: manifest format {} (this compc reads {})",
            mpath.display(),
            manifest.format,
            manifest::FORMAT_VERSION
        )));
    }
    Ok(manifest)
}

/// `{allocated, aligned, offset, sizes.., strides..}` of a contiguous row-major buffer.
fn descriptor(ptr: *const u8, shape: &[u64]) -> Vec<i64> {
    let mut d = vec![ptr as i64, ptr as i64, 0];
    d.extend(shape.iter().map(|&s| s as i64));
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1] as i64;
    }
    d.extend(strides);
    d
}

fn bind_dims(spec: &TensorSpec, shape: &[usize], syms: &mut HashMap<String, u64>) -> Result<()> {
    let bad = |msg: String| RuntimeError::Input {
        name: spec.name.clone(),
        msg,
    };
    if shape.len() != spec.dims.len() {
        return Err(bad(format!(
            "rank {} given, the compiled model takes rank {}",
            shape.len(),
            spec.dims.len()
        )));
    }
    for (i, (d, &n)) in spec.dims.iter().zip(shape).enumerate() {
        match d {
            DimSpec::Known(k) if *k != n as u64 => {
                return Err(bad(format!("dim {i} is {n}, the compiled model needs {k}")))
            }
            DimSpec::Sym(s) => match syms.get(s) {
                Some(&v) if v != n as u64 => {
                    return Err(bad(format!(
                        "dim {i} is {n}, but {{{s}}} is {v} in an earlier input"
                    )))
                }
                _ => {
                    syms.insert(s.clone(), n as u64);
                }
            },
            _ => {}
        }
    }
    Ok(())
}

fn resolve(spec: &TensorSpec, syms: &HashMap<String, u64>) -> Result<Vec<u64>> {
    spec.dims
        .iter()
        .map(|d| match d {
            DimSpec::Known(k) => Ok(*k),
            DimSpec::Sym(s) => s
                .split('*')
                .map(|p| {
                    if let Ok(n) = p.parse::<u64>() {
                        return Ok(n);
                    }
                    syms.get(p).copied().ok_or_else(|| {
                        err(format!(
                            "`{}`: dim {{{p}}} is not bound by any input",
                            spec.name
                        ))
                    })
                })
                .product::<Result<u64>>(),
        })
        .collect()
}

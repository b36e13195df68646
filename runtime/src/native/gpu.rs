//! Runs models compiled for NVIDIA GPUs (`--target gpu`) through the CUDA driver API
//! (the `cudarc` crate, which loads `libcuda` at run time: compc builds and runs without
//! CUDA, and says so when a GPU model is opened on a machine without a driver).
//!
//! A GPU output folder holds the same manifest and `weights.bin` as a CPU one; its
//! `model.so` is host code that launches PTX kernels through MLIR's GPU runtime API,
//! which the library forwards to a table of functions bound here (see the backend's
//! `gpu::shim`): kernel modules are JIT-compiled by the driver on first use, buffers come
//! from the stream-ordered allocator and are kept for the next run ([`BufferPool`]), and
//! every launch goes to this model's stream.
//!
//! [`GpuModel::load`] copies the weights to the device once; [`GpuModel::run`] copies the
//! inputs in, runs the entry point, waits, and copies the outputs back.
//! [`GpuModel::run_resident`] runs on inputs already on the device (benchmarks).

use super::gpu_pool::{BufferPool, DevicePtr};
use super::manifest::{Binding, Manifest};
use super::{
    bind_dims, call_packed, descriptor, err, given_input, output_layouts, output_tensor, resolve,
    OutputLayout, PackedEntry,
};
use crate::{RuntimeError, Tensor};
use compc_ir::DType;
use cudarc::driver::{result, sys, CudaContext};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CStr};
use std::path::Path;
use std::sync::{Arc, Mutex};

type Result<T> = std::result::Result<T, RuntimeError>;

/// Whether this machine has an NVIDIA driver to run GPU models with.
pub fn available() -> bool {
    // SAFETY: only probes for the library.
    unsafe { sys::is_culib_present() }
}

fn cuda(what: &str, e: impl std::fmt::Debug) -> RuntimeError {
    RuntimeError::Graph(format!("CUDA: {what}: {e:?}"))
}

/// The table `model.so`'s shim forwards to; the field order is the C struct's.
#[repr(C)]
struct GpuApi {
    get_function: unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void,
    #[allow(clippy::type_complexity)]
    launch: unsafe extern "C" fn(
        *mut c_void,
        isize,
        isize,
        isize,
        isize,
        isize,
        isize,
        i32,
        *mut c_void,
        *mut *mut c_void,
        *mut *mut c_void,
        usize,
    ),
    stream: unsafe extern "C" fn() -> *mut c_void,
    alloc: unsafe extern "C" fn(u64) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void),
}

static API: GpuApi = GpuApi {
    get_function: api_get_function,
    launch: api_launch,
    stream: api_stream,
    alloc: api_alloc,
    free: api_free,
};

/// What the callbacks work on while a model's entry point runs on this thread.
struct RunState {
    stream: sys::CUstream,
    /// PTX pointer (the module handle the library passes) → loaded module.
    modules: HashMap<usize, sys::CUmodule>,
    functions: HashMap<(usize, usize), sys::CUfunction>,
    /// Kernels that wait on the kernel before them (`griddepcontrol.wait`): they are
    /// launched with programmatic stream serialization, so they may start early.
    grid_wait: HashSet<usize>,
    /// The first failure; later callbacks do nothing, and the run reports it.
    error: Option<String>,
    launches: u64,
    /// Intermediate buffers kept between runs.
    pool: BufferPool,
}

thread_local! {
    static CURRENT: Cell<*mut RunState> = const { Cell::new(std::ptr::null_mut()) };
}

fn with_state<T>(f: impl FnOnce(&mut RunState) -> T) -> Option<T> {
    let p = CURRENT.with(|c| c.get());
    // SAFETY: set by `GpuModel::call` to a state it holds locked for the whole call, on
    // this thread; the library calls back only from inside that call.
    (!p.is_null()).then(|| f(unsafe { &mut *p }))
}

unsafe extern "C" fn api_get_function(module: *mut c_void, name: *const c_char) -> *mut c_void {
    with_state(|s| {
        if s.error.is_some() {
            return std::ptr::null_mut();
        }
        let key = (module as usize, name as usize);
        if let Some(f) = s.functions.get(&key) {
            return *f as *mut c_void;
        }
        let m = match s.modules.get(&(module as usize)) {
            Some(m) => *m,
            None => match unsafe { result::module::load_data(module) } {
                Ok(m) => {
                    s.modules.insert(module as usize, m);
                    m
                }
                Err(e) => {
                    s.error = Some(format!("the driver cannot load a PTX module: {e:?}"));
                    return std::ptr::null_mut();
                }
            },
        };
        let cname = unsafe { CStr::from_ptr(name) }.to_owned();
        match unsafe { result::module::get_function(m, cname.clone()) } {
            Ok(f) => {
                s.functions.insert(key, f);
                if cname.to_bytes().starts_with(GRID_WAIT_PREFIX.as_bytes()) {
                    s.grid_wait.insert(f as usize);
                }
                f as *mut c_void
            }
            Err(e) => {
                s.error = Some(format!("no kernel {cname:?}: {e:?}"));
                std::ptr::null_mut()
            }
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn api_launch(
    function: *mut c_void,
    gx: isize,
    gy: isize,
    gz: isize,
    bx: isize,
    by: isize,
    bz: isize,
    smem: i32,
    _stream: *mut c_void,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
    _n: usize,
) {
    with_state(|s| {
        if s.error.is_some() || function.is_null() {
            return;
        }
        let dims = [gx, gy, gz, bx, by, bz];
        if dims.iter().any(|&d| d <= 0 || d > u32::MAX as isize) {
            if dims.contains(&0) {
                return; // an empty loop nest: nothing to do
            }
            s.error = Some(format!("launch sizes out of range: {dims:?}"));
            return;
        }
        let f = function as sys::CUfunction;
        let (grid, block) = (
            [gx as u32, gy as u32, gz as u32],
            [bx as u32, by as u32, bz as u32],
        );
        let smem = smem.max(0) as u32;
        // SAFETY: the parameters are what the compiled host code built for this kernel.
        let r = unsafe {
            if s.grid_wait.contains(&(f as usize)) {
                launch_dependent(f, grid, block, smem, s.stream, params, extra)
            } else {
                sys::cuLaunchKernel(
                    f, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, s.stream,
                    params, extra,
                )
            }
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            s.error = Some(format!(
                "kernel launch (grid {gx}×{gy}×{gz}, block {bx}×{by}×{bz}) failed: {r:?}"
            ));
        }
        s.launches += 1;
    });
}

/// Name prefix of kernels compiled to wait on the previous kernel (`griddepcontrol.wait`
/// before they read anything an earlier kernel wrote); the MLIR backend names its fused
/// low-bit kernels so on sm_90 and newer.
pub const GRID_WAIT_PREFIX: &str = "compc_gridwait_";

/// Launches `f` with programmatic stream serialization: the driver may start it while
/// the kernel before it is finishing, once that kernel allows it
/// (`griddepcontrol.launch_dependents`); `f` itself waits before touching its inputs.
///
/// # Safety
/// As for `cuLaunchKernel`, and `f` must execute `griddepcontrol.wait` before it reads
/// or writes memory that an earlier kernel uses.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_dependent(
    f: sys::CUfunction,
    grid: [u32; 3],
    block: [u32; 3],
    smem: u32,
    stream: sys::CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> sys::CUresult {
    // SAFETY: plain-data C structs; zero is a valid value for every field.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: grid[0],
        gridDimY: grid[1],
        gridDimZ: grid[2],
        blockDimX: block[0],
        blockDimY: block[1],
        blockDimZ: block[2],
        sharedMemBytes: smem,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: `config` and `attr` outlive the call; the rest is the caller's contract.
    unsafe { sys::cuLaunchKernelEx(&config, f, params, extra) }
}

unsafe extern "C" fn api_stream() -> *mut c_void {
    with_state(|s| s.stream as *mut c_void).unwrap_or(std::ptr::null_mut())
}

unsafe extern "C" fn api_alloc(bytes: u64) -> *mut c_void {
    with_state(|s| {
        if s.error.is_some() {
            return std::ptr::null_mut();
        }
        let size = (bytes as usize).max(1);
        if let Some(p) = s.pool.take(size) {
            return p as *mut c_void;
        }
        match unsafe { result::malloc_async(s.stream, size) } {
            Ok(p) => {
                s.pool.lend(p, size);
                p as *mut c_void
            }
            Err(e) => {
                s.error = Some(format!("cannot allocate {bytes} bytes on the GPU: {e:?}"));
                std::ptr::null_mut()
            }
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

unsafe extern "C" fn api_free(ptr: *mut c_void) {
    with_state(|s| {
        if !ptr.is_null() && !s.pool.give_back(ptr as DevicePtr) {
            let _ = unsafe { result::free_async(ptr as sys::CUdeviceptr, s.stream) };
        }
    });
}

/// A device allocation freed on drop: synchronous, or stream-ordered on the stream it
/// was allocated on (outputs of queued runs, so queuing never waits for the GPU).
struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    len: usize,
    stream: Option<sys::CUstream>,
}

impl DeviceBuffer {
    fn new(len: usize) -> Result<DeviceBuffer> {
        // SAFETY: a plain allocation in the current context.
        let ptr = unsafe { result::malloc_sync(len.max(1)) }.map_err(|e| cuda("cuMemAlloc", e))?;
        Ok(DeviceBuffer {
            ptr,
            len,
            stream: None,
        })
    }

    fn on_stream(stream: sys::CUstream, len: usize) -> Result<DeviceBuffer> {
        // SAFETY: a stream-ordered allocation on a live stream of the current context.
        let ptr = unsafe { result::malloc_async(stream, len.max(1)) }
            .map_err(|e| cuda("cuMemAllocAsync", e))?;
        Ok(DeviceBuffer {
            ptr,
            len,
            stream: Some(stream),
        })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`/`on_stream`, freed once, in the same order.
        let _ = unsafe {
            match self.stream {
                Some(s) => result::free_async(self.ptr, s),
                None => result::free_sync(self.ptr),
            }
        };
    }
}

/// A tensor resident on the device (for [`GpuModel::run_resident`]).
pub struct DeviceTensor {
    buf: DeviceBuffer,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl DeviceTensor {
    pub fn bytes(&self) -> usize {
        self.buf.len
    }
}

pub struct GpuModel {
    entry: PackedEntry,
    manifest: Manifest,
    ctx: Arc<CudaContext>,
    stream: Arc<cudarc::driver::CudaStream>,
    state: Mutex<RunState>,
    /// `weights.bin`, on the device; one pointer per weight param into it.
    _weights: DeviceBuffer,
    weight_ptrs: Vec<sys::CUdeviceptr>,
    /// Declared last: unloaded after everything that may point into it.
    _lib: libloading::Library,
}

// The state is behind a mutex; the library's globals are only the PTX it was built with.
unsafe impl Send for GpuModel {}
unsafe impl Sync for GpuModel {}

impl GpuModel {
    /// Opens a folder written by `--target gpu` and copies its weights to GPU 0.
    pub fn load(dir: &Path) -> Result<GpuModel> {
        let manifest = super::read_manifest(dir)?;
        if manifest.target != "gpu" {
            return Err(err(format!(
                "{} holds a `{}` model; this runs `gpu` models",
                dir.display(),
                manifest.target
            )));
        }
        if !available() {
            return Err(err(format!(
                "{} is compiled for an NVIDIA GPU ({}), and this machine has no NVIDIA \
                 driver (libcuda) to run it",
                dir.display(),
                manifest.chip.as_deref().unwrap_or("PTX")
            )));
        }
        let ctx = CudaContext::new(0).map_err(|e| cuda("opening GPU 0", e))?;
        let stream = ctx.new_stream().map_err(|e| cuda("creating a stream", e))?;
        let wpath = dir.join(&manifest.weights_file);
        let bytes = std::fs::read(&wpath).map_err(|e| RuntimeError::Io {
            path: wpath.display().to_string(),
            msg: e.to_string(),
        })?;
        let weights = DeviceBuffer::new(bytes.len())?;
        // SAFETY: the buffer holds `bytes.len()` bytes.
        unsafe { result::memcpy_htod_sync(weights.ptr, &bytes) }
            .map_err(|e| cuda("copying the weights", e))?;
        let mut weight_ptrs = Vec::new();
        for p in &manifest.params {
            if let Binding::Weights { offset, len } = p.binding {
                if offset + len > bytes.len() as u64 {
                    return Err(err(format!(
                        "{}: weight `{}` lies outside the file ({} bytes)",
                        wpath.display(),
                        p.tensor.name,
                        bytes.len()
                    )));
                }
                weight_ptrs.push(weights.ptr + offset);
            }
        }
        let lpath = dir.join(&manifest.library);
        // SAFETY: the library's constructors only record its PTX pointers (see the shim).
        let lib = unsafe { libloading::Library::new(&lpath) }.map_err(|e| RuntimeError::Io {
            path: lpath.display().to_string(),
            msg: e.to_string(),
        })?;
        let lib_err = |what: &str, e: libloading::Error| RuntimeError::Io {
            path: lpath.display().to_string(),
            msg: format!("no `{what}`: {e} (not a compc GPU library?)"),
        };
        // SAFETY: the symbols have the types the backend compiles them with.
        let entry: PackedEntry = unsafe {
            *lib.get::<PackedEntry>(manifest.entry.as_bytes())
                .map_err(|e| lib_err(&manifest.entry, e))?
        };
        unsafe {
            let bind = lib
                .get::<unsafe extern "C" fn(*const GpuApi)>(b"compc_gpu_bind")
                .map_err(|e| lib_err("compc_gpu_bind", e))?;
            bind(&API);
            let init = lib
                .get::<unsafe extern "C" fn()>(b"compc_gpu_init")
                .map_err(|e| lib_err("compc_gpu_init", e))?;
            // Records each kernel module's PTX pointer (no CUDA call happens here).
            init();
        }
        let state = RunState {
            stream: stream.cu_stream(),
            modules: HashMap::new(),
            functions: HashMap::new(),
            grid_wait: HashSet::new(),
            error: None,
            launches: 0,
            pool: BufferPool::default(),
        };
        Ok(GpuModel {
            entry,
            manifest,
            ctx,
            stream,
            state: Mutex::new(state),
            _weights: weights,
            weight_ptrs,
            _lib: lib,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Kernel launches so far (all runs).
    pub fn launches(&self) -> u64 {
        self.state.lock().map(|s| s.launches).unwrap_or(0)
    }

    /// Copies host tensors to the device, checking them against the manifest.
    pub fn upload(&self, inputs: &[(String, Tensor)]) -> Result<Vec<DeviceTensor>> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda("binding the context", e))?;
        let by_name: HashMap<&str, &Tensor> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = Vec::new();
        for p in &self.manifest.params {
            if let Binding::Input { .. } = p.binding {
                let spec = &p.tensor;
                let dt = spec.dtype().map_err(err)?;
                let t = given_input(spec, dt, &by_name)?;
                let bytes = t.to_bytes();
                let buf = DeviceBuffer::new(bytes.len())?;
                // SAFETY: sized for `bytes`.
                unsafe { result::memcpy_htod_sync(buf.ptr, &bytes) }
                    .map_err(|e| cuda("copying an input", e))?;
                out.push(DeviceTensor {
                    buf,
                    dtype: dt,
                    shape: t.shape().iter().map(|&d| d as u64).collect(),
                });
            }
        }
        Ok(out)
    }

    /// Runs the model on named host inputs; returns the outputs in manifest order.
    pub fn run(&self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let dev = self.upload(inputs)?;
        let outs = self.run_resident(&dev)?;
        self.download(&outs)
    }

    /// Runs on device-resident inputs (in manifest input order) and waits for the GPU.
    pub fn run_resident(&self, inputs: &[DeviceTensor]) -> Result<Vec<DeviceTensor>> {
        let outs = self.enqueue(inputs)?;
        self.synchronize()?;
        Ok(outs)
    }

    /// Waits for everything queued on the model's stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| cuda("waiting for the kernels", e))
    }

    /// The model's stream (benchmarks record events on it).
    pub fn stream(&self) -> &Arc<cudarc::driver::CudaStream> {
        &self.stream
    }

    /// Queues one run on the model's stream without waiting; the outputs are valid after
    /// [`GpuModel::synchronize`].
    pub fn enqueue(&self, inputs: &[DeviceTensor]) -> Result<Vec<DeviceTensor>> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda("binding the context", e))?;
        let mut syms: HashMap<String, u64> = HashMap::new();
        let mut descs: Vec<Vec<i64>> = Vec::new();
        let mut ins = inputs.iter();
        let mut weights = self.weight_ptrs.iter();
        for p in &self.manifest.params {
            let spec = &p.tensor;
            match p.binding {
                Binding::Input { .. } => {
                    let t = ins.next().ok_or_else(|| RuntimeError::Input {
                        name: spec.name.clone(),
                        msg: "not given".into(),
                    })?;
                    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                    bind_dims(spec, &shape, &mut syms)?;
                    descs.push(descriptor(t.buf.ptr as *const u8, &t.shape));
                }
                Binding::Weights { .. } => {
                    let w = weights.next().ok_or_else(|| err("weights missing"))?;
                    let shape = resolve(spec, &syms)?;
                    descs.push(descriptor(*w as *const u8, &shape));
                }
            }
        }
        let mut outs = Vec::new();
        for layout in output_layouts(&self.manifest, &syms)? {
            outs.push(DeviceTensor {
                buf: DeviceBuffer::on_stream(self.stream.cu_stream(), layout.bytes)?,
                dtype: layout.dtype,
                shape: layout.shape,
            });
        }
        for o in &outs {
            descs.push(descriptor(o.buf.ptr as *const u8, &o.shape));
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| err("the GPU model's state is poisoned"))?;
        state.error = None;
        CURRENT.with(|c| c.set(&mut *state as *mut RunState));
        // SAFETY: every descriptor points at device memory of the size its dims say, in
        // the order and with the types of the manifest the code was compiled for; the
        // callbacks see `state` through CURRENT until it is cleared below.
        unsafe { call_packed(self.entry, &mut descs) };
        CURRENT.with(|c| c.set(std::ptr::null_mut()));
        for p in state.pool.end_run() {
            // SAFETY: a buffer of this model's pool, idle for the whole run; freed in
            // stream order, after the kernels queued before it.
            let _ = unsafe { result::free_async(p, state.stream) };
        }
        if let Some(e) = state.error.take() {
            return Err(err(format!("running the GPU model: {e}")));
        }
        Ok(outs)
    }

    /// GPU milliseconds of what `work` queues on the model's stream, measured with CUDA
    /// events. With `hold_ms` > 0 a spin kernel first holds the stream that long, so the
    /// host can queue all of `work` before the GPU starts: the time is then the kernels'
    /// own, not the host's launch rate.
    pub fn gpu_ms<T>(&self, hold_ms: f64, work: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda("binding the context", e))?;
        if hold_ms > 0.0 {
            self.spin(hold_ms)?;
        }
        let ev = |what| {
            self.stream
                .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| cuda(what, e))
        };
        let start = ev("recording an event")?;
        let out = work()?;
        let end = ev("recording an event")?;
        end.synchronize()
            .map_err(|e| cuda("waiting for an event", e))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| cuda("reading an event", e))?;
        Ok((ms as f64, out))
    }

    /// Holds the model's stream busy for about `ms` milliseconds. The spin kernel's
    /// module is loaded once, with the model's kernel modules (unloaded on drop).
    fn spin(&self, ms: f64) -> Result<()> {
        let clock_khz = self
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
            .map_err(|e| cuda("reading the clock rate", e))? as f64;
        let mut cycles = (ms * clock_khz) as u64;
        let mut state = self
            .state
            .lock()
            .map_err(|_| err("the GPU model's state is poisoned"))?;
        let key = SPIN_PTX.as_ptr() as usize;
        let m = match state.modules.get(&key) {
            Some(m) => *m,
            // SAFETY: a NUL-terminated PTX image with static lifetime.
            None => unsafe { result::module::load_data(SPIN_PTX.as_ptr() as *const c_void) }
                .map_err(|e| cuda("loading the spin kernel", e))?,
        };
        state.modules.insert(key, m);
        // SAFETY: `m` is loaded; the kernel takes one u64 by value.
        unsafe {
            let f = result::module::get_function(m, c"compc_spin".to_owned())
                .map_err(|e| cuda("finding the spin kernel", e))?;
            let mut params = [&mut cycles as *mut u64 as *mut c_void];
            result::launch_kernel(
                f,
                (1, 1, 1),
                (1, 1, 1),
                0,
                self.stream.cu_stream(),
                &mut params,
            )
            .map_err(|e| cuda("launching the spin kernel", e))
        }
    }

    /// Copies device tensors back, named as the manifest's outputs.
    pub fn download(&self, outs: &[DeviceTensor]) -> Result<Vec<(String, Tensor)>> {
        let mut result = Vec::new();
        for (o, spec) in outs.iter().zip(&self.manifest.outputs) {
            let mut bytes = vec![0u8; o.buf.len];
            // SAFETY: `bytes` has the buffer's size.
            unsafe { result::memcpy_dtoh_sync(&mut bytes, o.buf.ptr) }
                .map_err(|e| cuda("copying an output back", e))?;
            let layout = OutputLayout {
                dtype: o.dtype,
                shape: o.shape.clone(),
                bytes: o.dtype.storage_bytes(o.shape.iter().product()).unwrap_or(0) as usize,
            };
            result.push(output_tensor(spec, layout, bytes)?);
        }
        Ok(result)
    }
}

impl Drop for GpuModel {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        if let Ok(s) = self.state.get_mut() {
            for p in s.pool.drain() {
                // SAFETY: allocated for this model's runs; the stream has drained.
                let _ = unsafe { result::free_sync(p) };
            }
            for (_, m) in s.modules.drain() {
                // SAFETY: loaded by this model, used by nothing after the stream drained.
                let _ = unsafe { result::module::unload(m) };
            }
        }
    }
}

/// A kernel that busy-waits for a number of clock cycles (PTX, JIT-compiled by the
/// driver; NUL-terminated, as the driver reads it).
const SPIN_PTX: &str = concat!(
    r#"
.version 7.0
.target sm_70
.address_size 64
.visible .entry compc_spin(.param .u64 cycles)
{
  .reg .u64 %rd<4>;
  .reg .pred %p;
  ld.param.u64 %rd1, [cycles];
  mov.u64 %rd2, %clock64;
SPIN:
  mov.u64 %rd3, %clock64;
  sub.u64 %rd3, %rd3, %rd2;
  setp.lt.u64 %p, %rd3, %rd1;
  @%p bra SPIN;
  ret;
}
"#,
    "\0"
);

/// Device-to-device copy bandwidth in GB/s (bytes read + written per second) over a
/// buffer of `bytes`, the best of `reps` copies: the reference for memory-bound kernels.
pub fn copy_bandwidth_gbs(bytes: usize, reps: usize) -> Result<f64> {
    if !available() {
        return Err(err("no NVIDIA driver on this machine"));
    }
    let ctx = CudaContext::new(0).map_err(|e| cuda("opening GPU 0", e))?;
    let stream = ctx.new_stream().map_err(|e| cuda("creating a stream", e))?;
    let src = DeviceBuffer::new(bytes)?;
    let dst = DeviceBuffer::new(bytes)?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) + 1 {
        let start = stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda("event", e))?;
        // SAFETY: both buffers hold `bytes` bytes.
        unsafe { result::memcpy_dtod_async(dst.ptr, src.ptr, bytes, stream.cu_stream()) }
            .map_err(|e| cuda("copying", e))?;
        let end = stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda("event", e))?;
        end.synchronize().map_err(|e| cuda("event", e))?;
        let ms = start.elapsed_ms(&end).map_err(|e| cuda("event", e))? as f64;
        best = best.min(ms);
    }
    Ok(2.0 * bytes as f64 / (best * 1e-3) / 1e9)
}

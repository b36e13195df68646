//! The host side of a compiled GPU model calls MLIR's GPU runtime API (`mgpuLaunchKernel`,
//! `mgpuModuleGetFunction`, …, what `gpu-to-llvm` emits) and, for every buffer it
//! allocates, `_mlir_memref_to_llvm_alloc`/`_free` (`finalize-memref-to-llvm` with generic
//! allocation functions). MLIR's implementation of that API (`libmlir_cuda_runtime`) links
//! the CUDA toolkit, which neither Debian nor CI has, so every `model.so` carries this
//! C shim instead: each function forwards to a table that compc's runtime fills in with
//! its own CUDA driver calls (`compc_runtime::native::gpu`, through cudarc) when it opens
//! the library. Allocation therefore gives device memory, launches go to the runtime's
//! stream, and the library itself has no dependency on CUDA at link or load time.
//!
//! MLIR loads kernel modules in global constructors, which the JIT that compiles the host
//! code turns into one local init function (`__orc_init_func.<module>`) instead of an
//! `.init_array` entry. The backend makes that symbol global in the object file and the
//! shim exports `compc_gpu_init`, which calls it; the runtime calls that after binding
//! the table. A module load only records the PTX pointer, which is the module handle;
//! the runtime JIT-compiles each module on the first lookup of one of its functions.

/// The C source linked into every GPU `model.so`. Keep [`compc_runtime::native::gpu`]'s
/// `GpuApi` in the same field order.
pub const SHIM_C: &str = r#"
#include <stddef.h>
#include <stdint.h>

typedef struct {
  void *(*get_function)(void *module, const char *name);
  void (*launch)(void *function, intptr_t gx, intptr_t gy, intptr_t gz, intptr_t bx,
                 intptr_t by, intptr_t bz, int32_t smem, void *stream, void **params,
                 void **extra, size_t nparams);
  void *(*stream)(void);
  void *(*alloc)(uint64_t bytes);
  void (*free)(void *ptr);
} compc_gpu_api;

static const compc_gpu_api *api;

void compc_gpu_bind(const compc_gpu_api *table) { api = table; }

extern void compc_host_init(void) __asm__("__orc_init_func.LLVMDialectModule");
void compc_gpu_init(void) { compc_host_init(); }

void *mgpuModuleLoadJIT(void *data, int opt_level) { (void)opt_level; return data; }
void *mgpuModuleLoad(void *data, size_t size) { (void)size; return data; }
void mgpuModuleUnload(void *module) { (void)module; }

void *mgpuModuleGetFunction(void *module, const char *name) {
  return api ? api->get_function(module, name) : NULL;
}

void mgpuLaunchKernel(void *function, intptr_t gx, intptr_t gy, intptr_t gz, intptr_t bx,
                      intptr_t by, intptr_t bz, int32_t smem, void *stream, void **params,
                      void **extra, size_t nparams) {
  if (api) api->launch(function, gx, gy, gz, bx, by, bz, smem, stream, params, extra, nparams);
}

/* One stream, the runtime's, for every launch: kernels run in order without a
   synchronisation after each, and the runtime waits once at the end of a run. */
void *mgpuStreamCreate(void) { return api ? api->stream() : NULL; }
void mgpuStreamDestroy(void *stream) { (void)stream; }
void mgpuStreamSynchronize(void *stream) { (void)stream; }

void *_mlir_memref_to_llvm_alloc(size_t bytes) { return api ? api->alloc(bytes) : NULL; }
void *_mlir_memref_to_llvm_aligned_alloc(size_t align, size_t bytes) {
  (void)align; /* device allocations are 256-byte aligned */
  return api ? api->alloc(bytes) : NULL;
}
void _mlir_memref_to_llvm_free(void *ptr) { if (api) api->free(ptr); }
"#;

/// The host code's init function, made global in the object so the shim can call it.
pub const HOST_INIT_SYMBOL: &str = "__orc_init_func.LLVMDialectModule";

/// The runtime API symbols the host code may reference, for the JIT that compiles it
/// (its constructors run there; stubs that do nothing keep them harmless).
pub const HOST_SYMBOLS: &[&str] = &[
    "mgpuModuleLoadJIT",
    "mgpuModuleLoad",
    "mgpuModuleUnload",
    "mgpuModuleGetFunction",
    "mgpuLaunchKernel",
    "mgpuStreamCreate",
    "mgpuStreamDestroy",
    "mgpuStreamSynchronize",
    "_mlir_memref_to_llvm_alloc",
    "_mlir_memref_to_llvm_aligned_alloc",
    "_mlir_memref_to_llvm_free",
];

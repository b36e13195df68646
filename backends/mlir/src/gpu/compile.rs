//! Emitted MLIR → PTX kernels plus a host library that launches them (feature `mlir`).
//!
//! Stages, each a melior pass-manager run on the same module:
//! 1. fuse element-wise chains, bufferize (function boundaries included, results as
//!    caller-allocated out-params, ownership-based deallocation);
//! 2. text rewrites ([`super::rewrite`]): copies become linalg ops, transcendentals
//!    NVVM approximations;
//! 3. linalg → `scf.parallel`; each loop gets its thread/block mapping
//!    ([`super::mapping`]);
//! 4. parallel loops → `gpu.launch`, outlined to kernels, kernels → NVVM → PTX
//!    (`gpu-module-to-binary{format=isa}`: PTX text, which the CUDA driver compiles at
//!    load time, so no `ptxas` is needed);
//! 5. the host function → LLVM, calling MLIR's GPU runtime API (provided by
//!    [`super::shim`]) and allocating through the generic allocation functions.

use super::hand_kernels;
use super::mapping;
use super::pipeline;
use super::result_copies;
use super::rewrite;
use super::shim;
use super::wide_loops;
use crate::compile::{
    context, link_shared_library, mlir_error, parse, run_passes, Diags, PACKED_ENTRY,
};
use crate::emit::MlirModule;
use crate::BackendError;
use melior::ir::Module;
use melior::{Context, ExecutionEngine};
use std::path::Path;

/// What lowering produced: the PTX of every kernel module and the host module (LLVM
/// dialect) that launches them.
pub struct GpuLowered<'c> {
    pub kernels: Vec<(String, String)>,
    pub host: Module<'c>,
}

/// Lowers `m` for the NVIDIA architecture `chip` (`sm_90`, `sm_80`).
pub fn lower<'c>(
    ctx: &'c Context,
    diags: &Diags,
    m: &MlirModule,
    chip: &str,
) -> Result<GpuLowered<'c>, BackendError> {
    let aside = hand_kernels::set_aside(&m.text);
    let mut module = parse(ctx, &aside.text, diags)?;
    run_passes(ctx, &mut module, pipeline::BUFFERIZE, "bufferizing", diags)?;
    let bufferized = result_copies::elide(&module.as_operation().to_string());
    let text = rewrite::for_gpu(&bufferized).map_err(|e| BackendError::Mlir(e.to_string()))?;
    let text = hand_kernels::restore(&text, &aside.definitions);
    let mut module = parse(ctx, &text, diags)?;
    run_passes(
        ctx,
        &mut module,
        pipeline::TO_LOOPS,
        "linalg to loops",
        diags,
    )?;
    let text = wide_loops::split(&module.as_operation().to_string());
    let mut module = parse(ctx, &text, diags)?;
    // SAFETY: the walk only reads ops and sets attributes on them.
    unsafe { map_parallel_loops(ctx, &module)? };
    run_passes(
        ctx,
        &mut module,
        &pipeline::to_kernels(chip),
        "lowering the kernels to PTX",
        diags,
    )?;
    // SAFETY: reads attributes of the module's own ops.
    let kernels = unsafe { kernel_ptx(&module) };
    run_passes(
        ctx,
        &mut module,
        pipeline::HOST,
        "lowering the host code",
        diags,
    )?;
    Ok(GpuLowered {
        kernels,
        host: module,
    })
}

/// Sets the `mapping` attribute of every top-level `scf.parallel` in the module's
/// functions.
unsafe fn map_parallel_loops(ctx: &Context, module: &Module) -> Result<(), BackendError> {
    use mlir_sys::*;
    let name_of = |op: MlirOperation| -> String {
        let s = unsafe { mlirIdentifierStr(mlirOperationGetName(op)) };
        let b = unsafe { std::slice::from_raw_parts(s.data as *const u8, s.length) };
        String::from_utf8_lossy(b).into_owned()
    };
    let body = unsafe { mlirModuleGetBody(module.to_raw()) };
    let mut f = unsafe { mlirBlockGetFirstOperation(body) };
    while !f.ptr.is_null() {
        if name_of(f) == "func.func" {
            let region = unsafe { mlirOperationGetRegion(f, 0) };
            let block = unsafe { mlirRegionGetFirstBlock(region) };
            let mut op = if block.ptr.is_null() {
                MlirOperation {
                    ptr: std::ptr::null_mut(),
                }
            } else {
                unsafe { mlirBlockGetFirstOperation(block) }
            };
            while !op.ptr.is_null() {
                if name_of(op) == "scf.parallel" {
                    let n = unsafe { mlirOperationGetNumOperands(op) } as usize / 3;
                    let extents: Vec<Option<i64>> = (0..n)
                        .map(|i| unsafe {
                            constant_index(mlirOperationGetOperand(op, (n + i) as isize), &name_of)
                        })
                        .collect();
                    let text = mapping::attribute(&mapping::assign(&extents));
                    let attr = unsafe {
                        mlirAttributeParseGet(
                            ctx.to_raw(),
                            MlirStringRef {
                                data: text.as_ptr() as *const _,
                                length: text.len(),
                            },
                        )
                    };
                    if attr.ptr.is_null() {
                        return Err(BackendError::Mlir(format!(
                            "cannot parse the loop mapping `{text}`"
                        )));
                    }
                    let key = "mapping";
                    unsafe {
                        mlirOperationSetAttributeByName(
                            op,
                            MlirStringRef {
                                data: key.as_ptr() as *const _,
                                length: key.len(),
                            },
                            attr,
                        )
                    };
                }
                op = unsafe { mlirOperationGetNextInBlock(op) };
            }
        }
        f = unsafe { mlirOperationGetNextInBlock(f) };
    }
    Ok(())
}

/// The value of an `arith.constant` index, if `v` is one.
unsafe fn constant_index(
    v: mlir_sys::MlirValue,
    name_of: &dyn Fn(mlir_sys::MlirOperation) -> String,
) -> Option<i64> {
    use mlir_sys::*;
    if !unsafe { mlirValueIsAOpResult(v) } {
        return None;
    }
    let owner = unsafe { mlirOpResultGetOwner(v) };
    if name_of(owner) != "arith.constant" {
        return None;
    }
    let key = "value";
    let attr = unsafe {
        mlirOperationGetAttributeByName(
            owner,
            MlirStringRef {
                data: key.as_ptr() as *const _,
                length: key.len(),
            },
        )
    };
    if attr.ptr.is_null() || !unsafe { mlirAttributeIsAInteger(attr) } {
        return None;
    }
    Some(unsafe { mlirIntegerAttrGetValueInt(attr) })
}

/// `(kernel module name, PTX)` of every `gpu.binary` in the module.
unsafe fn kernel_ptx(module: &Module) -> Vec<(String, String)> {
    use mlir_sys::*;
    let str_of = |s: MlirStringRef| -> String {
        let b = unsafe { std::slice::from_raw_parts(s.data as *const u8, s.length) };
        String::from_utf8_lossy(b).into_owned()
    };
    let attr_of = |op: MlirOperation, key: &str| unsafe {
        mlirOperationGetAttributeByName(
            op,
            MlirStringRef {
                data: key.as_ptr() as *const _,
                length: key.len(),
            },
        )
    };
    let mut out = Vec::new();
    let body = unsafe { mlirModuleGetBody(module.to_raw()) };
    let mut op = unsafe { mlirBlockGetFirstOperation(body) };
    while !op.ptr.is_null() {
        if str_of(unsafe { mlirIdentifierStr(mlirOperationGetName(op)) }) == "gpu.binary" {
            let name = attr_of(op, "sym_name");
            let name = if name.ptr.is_null() {
                String::new()
            } else {
                str_of(unsafe { mlirStringAttrGetValue(name) })
            };
            let objects = attr_of(op, "objects");
            if !objects.ptr.is_null() && unsafe { mlirAttributeIsAArray(objects) } {
                for i in 0..unsafe { mlirArrayAttrGetNumElements(objects) } {
                    let o = unsafe { mlirArrayAttrGetElement(objects, i) };
                    let ptx = str_of(unsafe { mlirGPUObjectAttrGetObject(o) });
                    out.push((name.clone(), ptx.trim_end_matches('\0').to_string()));
                }
            }
        }
        op = unsafe { mlirOperationGetNextInBlock(op) };
    }
    out
}

extern "C" fn stub() -> *mut std::ffi::c_void {
    std::ptr::null_mut()
}

/// Compiles `m` for `chip` into `dir`: `model.so` (host code + [`shim::SHIM_C`]) and
/// `kernels.ptx` (every kernel module, for inspection). Returns the PTX modules.
pub fn write_gpu_library(
    m: &MlirModule,
    dir: &Path,
    chip: &str,
) -> Result<Vec<(String, String)>, BackendError> {
    let (ctx, diags) = context();
    let obj = dir.join("model.o");
    let kernels = {
        let lowered = lower(&ctx, &diags, m, chip)?;
        let engine = ExecutionEngine::new(&lowered.host, 2, &[], true, true);
        for s in shim::HOST_SYMBOLS {
            // SAFETY: the JIT only materializes the code (and may run its constructors,
            // which call `mgpuModuleLoadJIT`); the stub returns null and does nothing.
            unsafe { engine.register_symbol(s, stub as *const () as *mut ()) };
        }
        if engine.lookup(PACKED_ENTRY).is_null() {
            return Err(mlir_error("compiling the host code", &diags));
        }
        engine.dump_to_object_file(&obj.display().to_string());
        lowered.kernels
    };
    if !obj.exists() {
        return Err(BackendError::Mlir("the object file was not written".into()));
    }
    let io = |p: &Path, e: std::io::Error| BackendError::Io {
        path: p.display().to_string(),
        msg: e.to_string(),
    };
    let status = std::process::Command::new("objcopy")
        .arg(format!("--globalize-symbol={}", shim::HOST_INIT_SYMBOL))
        .arg(&obj)
        .status()
        .map_err(|e| BackendError::Link(format!("cannot run `objcopy`: {e}")))?;
    if !status.success() {
        return Err(BackendError::Link(format!(
            "`objcopy --globalize-symbol` exited with {status}"
        )));
    }
    link_shared_library(dir, &obj, shim::SHIM_C, &[])?;
    let ptx_path = dir.join("kernels.ptx");
    let mut all = String::new();
    for (name, ptx) in &kernels {
        all.push_str(&format!("// ---- kernel module `{name}` ----\n{ptx}\n"));
    }
    std::fs::write(&ptx_path, all).map_err(|e| io(&ptx_path, e))?;
    Ok(kernels)
}

//! MLIR text → native code through melior (feature `mlir`): parse, run the CPU lowering
//! pipeline, then JIT ([`jit`]) or write an object and link a shared library
//! ([`compile_to_dir`]).

use crate::emit::{MlirModule, ParamSource, ENTRY};
use crate::pipeline::{cpu_pipeline, with_cpu_schedule, SCHEDULE_PIPELINE};
use crate::{manifest_for, BackendError};
use compc_ir::Graph;
use compc_runtime::native::{NativeModel, PackedEntry, WeightBytes};
use melior::dialect::DialectRegistry;
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::{Context, ExecutionEngine};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

/// The packed wrapper MLIR's execution engine generates for `@main`'s C interface.
pub const PACKED_ENTRY: &str = "_mlir__mlir_ciface_main";

pub(crate) fn context() -> (Box<Context>, Diags) {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let ctx = Context::new();
    ctx.append_dialect_registry(&registry);
    ctx.load_all_available_dialects();
    register_all_llvm_translations(&ctx);
    register_all_passes();
    let diags = Rc::new(RefCell::new(Vec::new()));
    let d = diags.clone();
    ctx.attach_diagnostic_handler(move |diag| {
        d.borrow_mut().push(format!("{} {diag}", diag.location()));
        true
    });
    (Box::new(ctx), diags)
}

pub(crate) fn mlir_error(stage: &str, diags: &Diags) -> BackendError {
    let d = diags.borrow();
    let shown: Vec<&String> = d.iter().take(8).collect();
    BackendError::Mlir(format!(
        "{stage} failed:\n{}",
        shown
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

pub(crate) type Diags = Rc<RefCell<Vec<String>>>;

pub(crate) fn parse<'c>(
    ctx: &'c Context,
    text: &str,
    diags: &Diags,
) -> Result<Module<'c>, BackendError> {
    Module::parse(ctx, text).ok_or_else(|| mlir_error("parsing the emitted MLIR", diags))
}

/// Runs one pass pipeline; `stage` names it in the error.
pub(crate) fn run_passes(
    ctx: &Context,
    module: &mut Module,
    pipeline: &str,
    stage: &str,
    diags: &Diags,
) -> Result<(), BackendError> {
    let pm = PassManager::new(ctx);
    parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
        .map_err(|e| BackendError::Mlir(format!("pass pipeline: {e}")))?;
    pm.run(module).map_err(|_| mlir_error(stage, diags))
}

/// Runs the CPU pipeline on a parsed module.
fn run_pipeline(ctx: &Context, module: &mut Module, diags: &Diags) -> Result<(), BackendError> {
    let pm = PassManager::new(ctx);
    parse_pass_pipeline(pm.as_operation_pass_manager(), SCHEDULE_PIPELINE)
        .map_err(|e| BackendError::Mlir(format!("pass pipeline: {e}")))?;
    pm.run(module)
        .map_err(|_| mlir_error("applying the loop schedule", diags))?;
    erase_schedule(module);
    let pm = PassManager::new(ctx);
    parse_pass_pipeline(pm.as_operation_pass_manager(), &cpu_pipeline())
        .map_err(|e| BackendError::Mlir(format!("pass pipeline: {e}")))?;
    pm.run(module)
        .map_err(|_| mlir_error("lowering to LLVM", diags))
}

/// Removes the top-level `transform.*` ops (the schedule) so lowering sees only code.
fn erase_schedule(module: &Module) {
    use mlir_sys::*;
    // SAFETY: walks the module's own block; each erased op is unlinked before it is freed.
    unsafe {
        let body = mlirModuleGetBody(module.to_raw());
        let mut op = mlirBlockGetFirstOperation(body);
        while !op.ptr.is_null() {
            let next = mlirOperationGetNextInBlock(op);
            let name = mlirIdentifierStr(mlirOperationGetName(op));
            let name = std::slice::from_raw_parts(name.data as *const u8, name.length);
            if name.starts_with(b"transform.") {
                mlirOperationRemoveFromParent(op);
                mlirOperationDestroy(op);
            }
            op = next;
        }
    }
}

/// The lowered module as text (the LLVM dialect), for debugging and tests.
pub fn lower_to_llvm_text(m: &MlirModule) -> Result<String, BackendError> {
    let (ctx, diags) = context();
    let mut module = parse(&ctx, &with_cpu_schedule(&m.text), &diags)?;
    run_pipeline(&ctx, &mut module, &diags)?;
    Ok(module.as_operation().to_string())
}

/// The weights each argument reads, copied to aligned buffers (JIT path).
fn weight_bytes(g: &Graph, m: &MlirModule) -> Result<Vec<WeightBytes>, BackendError> {
    let mut out = Vec::new();
    for p in &m.params {
        match &p.source {
            ParamSource::Input(_) => {}
            ParamSource::Weight(id) => {
                let w = g.weights.get(*id);
                let b = w
                    .bytes()
                    .map_err(|e| BackendError::Weights(format!("{}: {e}", w.name)))?;
                out.push(WeightBytes::copy_of(b));
            }
            ParamSource::Prepared(b) => out.push(WeightBytes::copy_of(b)),
        }
    }
    Ok(out)
}

/// Binds the runtime support the lowered code calls: `memrefCopy` and the allocation
/// functions of [`crate::block_cache`].
fn register_support(engine: &ExecutionEngine) {
    // SAFETY: each function has the C signature MLIR's lowering calls it with.
    unsafe {
        engine.register_symbol(
            "memrefCopy",
            crate::support::memref_copy as *const () as *mut (),
        );
        for (name, f) in crate::block_cache::symbols() {
            engine.register_symbol(name, f);
        }
    }
}

/// What keeps JIT-compiled code alive: the engine (dropped first), then its context.
struct JitOwner {
    _engine: ExecutionEngine,
    _ctx: Box<Context>,
}

/// Compiles in process and returns a runnable model (tests and `compc run` on a model
/// file use this; `--target cpu -o OUT` writes a library instead).
pub fn jit(g: &Graph, m: &MlirModule, opt_level: usize) -> Result<NativeModel, BackendError> {
    let (ctx, diags) = context();
    let engine = {
        let mut module = parse(&ctx, &with_cpu_schedule(&m.text), &diags)?;
        run_pipeline(&ctx, &mut module, &diags)?;
        ExecutionEngine::new(&module, opt_level, &[], false, false)
    };
    register_support(&engine);
    let ptr = engine.lookup(PACKED_ENTRY);
    if ptr.is_null() {
        return Err(BackendError::Mlir(format!(
            "the JIT has no `{PACKED_ENTRY}` (entry `{ENTRY}`)"
        )));
    }
    // SAFETY: the symbol is the packed wrapper of `@main`, compiled for this manifest.
    let entry: PackedEntry = unsafe { std::mem::transmute(ptr) };
    let mut manifest = manifest_for(m, "cpu", "", PACKED_ENTRY)?;
    manifest.split_batch = crate::split::split_batch_symbol(g);
    let weights = weight_bytes(g, m)?;
    let owner = JitOwner {
        _engine: engine,
        _ctx: ctx,
    };
    Ok(unsafe { NativeModel::from_entry(entry, manifest, weights, Box::new(owner)) })
}

/// Writes `dir/model.o` through the execution engine's object dump (position-independent
/// code) and links `dir/model.so` with the system C compiler.
pub fn write_shared_library(
    m: &MlirModule,
    dir: &Path,
    opt_level: usize,
) -> Result<(), BackendError> {
    let (ctx, diags) = context();
    let obj = dir.join("model.o");
    {
        let mut module = parse(&ctx, &with_cpu_schedule(&m.text), &diags)?;
        run_pipeline(&ctx, &mut module, &diags)?;
        let engine = ExecutionEngine::new(&module, opt_level, &[], true, true);
        // Materializing the code resolves the support symbols; the library links the C
        // versions.
        register_support(&engine);
        if engine.lookup(PACKED_ENTRY).is_null() {
            return Err(BackendError::Mlir(format!(
                "no `{PACKED_ENTRY}` was compiled"
            )));
        }
        engine.dump_to_object_file(&obj.display().to_string());
    }
    if !obj.exists() {
        return Err(BackendError::Mlir("the object file was not written".into()));
    }
    let support = [
        crate::support::MEMREF_COPY_C,
        crate::block_cache::BLOCK_CACHE_C,
    ]
    .concat();
    link_shared_library(dir, &obj, &support, &["-lm"])
}

/// Links `obj` with the C `support` source into `dir/model.so` (the system C compiler),
/// then removes both inputs.
pub(crate) fn link_shared_library(
    dir: &Path,
    obj: &Path,
    support: &str,
    libs: &[&str],
) -> Result<(), BackendError> {
    let so = dir.join("model.so");
    let src = dir.join("support.c");
    std::fs::write(&src, support).map_err(|e| BackendError::Io {
        path: src.display().to_string(),
        msg: e.to_string(),
    })?;
    let status = std::process::Command::new("cc")
        .args(["-O2", "-fPIC", "-shared", "-o"])
        .arg(&so)
        .arg(obj)
        .arg(&src)
        .args(libs)
        .status()
        .map_err(|e| BackendError::Link(format!("cannot run `cc`: {e}")))?;
    let _ = std::fs::remove_file(obj);
    let _ = std::fs::remove_file(&src);
    if !status.success() {
        return Err(BackendError::Link(format!(
            "`cc -shared` exited with {status}"
        )));
    }
    Ok(())
}

//! How `@main` calls a hand-written kernel function (`cpu_nbits`, `gpu_nbits`): A's
//! leading dims become one row dim M, and the call is destination-passing — `@main`
//! allocates the `[M, N]` result and passes its tensors as buffer views, so bufferization
//! adds no copy around the kernel.

use super::builder::{Emitter, Val};
use super::layout::{collapse_leading, expand_to};
use super::EmitError;
use compc_ir::{DType, Dim, Shape, TensorType};

/// `a` `[..., K]` as a matrix `[M, K]`: the leading dims collapsed into M, a vector as
/// one row.
pub fn rows(em: &mut Emitter, a: &Val) -> Result<Val, EmitError> {
    let lead = a.rank() - 1;
    let a2 = collapse_leading(em, a, lead)?;
    if lead > 0 {
        return Ok(a2);
    }
    let mut dims = vec![Dim::Known(1)];
    dims.extend_from_slice(a.dims());
    expand_to(em, &a2, &TensorType::new(DType::F32, Shape::Ranked(dims)))
}

/// M of a `[M, K]` matrix as it appears in a type (`?` when dynamic) and as a kernel
/// name suffix (`dyn` when dynamic).
pub fn m_text(a2: &Val) -> (String, String) {
    match a2.dims()[0].known() {
        Some(m) => (m.to_string(), m.to_string()),
        None => ("?".into(), "dyn".into()),
    }
}

/// Calls `@name(a2, inputs…, out)` with every tensor viewed as a buffer, where `out` is a
/// fresh f32 buffer of A's leading dims and `n` (`[M, n]` for a matrix A), and returns
/// `out` as a tensor reshaped to `out_ty`.
pub fn call(
    em: &mut Emitter,
    name: &str,
    a2: &Val,
    inputs: &[&Val],
    n: u64,
    out_ty: &TensorType,
) -> Result<Val, EmitError> {
    let lead = &a2.dims()[..a2.rank() - 1];
    let mut views = Vec::new();
    for v in std::iter::once(a2).chain(inputs.iter().copied()) {
        let t = v.mlir_type();
        let m = t.replacen("tensor<", "memref<", 1);
        let ssa = em.op(format!(
            "bufferization.to_buffer {} read_only : {t} to {m}",
            v.ssa
        ));
        views.push((ssa, m));
    }
    let mut o_dims = lead.to_vec();
    o_dims.push(Dim::Known(n));
    let o = TensorType::new(DType::F32, Shape::Ranked(o_dims));
    let o_ty = super::builder::tensor_type(&o);
    let o_mem = o_ty.replacen("tensor<", "memref<", 1);
    let mut sizes = Vec::new();
    for (i, d) in lead.iter().enumerate() {
        if d.known().is_none() {
            let ci = em.cidx(i as i64);
            sizes.push(em.op(format!("tensor.dim {}, {ci} : {}", a2.ssa, a2.mlir_type())));
        }
    }
    let alloc = em.op(format!("memref.alloc({}) : {o_mem}", sizes.join(", ")));
    let args: Vec<&str> = views.iter().map(|(s, _)| s.as_str()).collect();
    let tys: Vec<&str> = views.iter().map(|(_, t)| t.as_str()).collect();
    em.op_void(format!(
        "func.call @{name}({}, {alloc}) : ({}, {o_mem}) -> ()",
        args.join(", "),
        tys.join(", ")
    ));
    let ssa = em.op(format!(
        "bufferization.to_tensor {alloc} restrict writable : {o_mem} to {o_ty}"
    ));
    expand_to(em, &Val { ssa, ty: o }, out_ty)
}

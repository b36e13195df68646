//! compc's own ops lowered to standard ONNX at export.
//!
//! `Hadamard{size}` is a MatMul by the normalized Hadamard matrix H (symmetric, so
//! `x·H` transforms each row); with a Kronecker factor F it is a MatMul by `F ⊗ H`. When the blocks are smaller than the last axis, the input
//! is viewed as `[-1, size]`, multiplied, and reshaped back to its own shape.

use crate::emit::Emitter;
use crate::error::ExportError;
use compc_ir::{Attrs, DType, NodeId, Weight};

/// Larger blocks would make an H of more than a gigabyte.
const MAX_BLOCK: u64 = 1 << 14;

pub fn hadamard(
    em: &mut Emitter<'_>,
    id: NodeId,
    index: usize,
    size: i64,
    inputs: Vec<String>,
    outputs: Vec<String>,
) -> Result<(), ExportError> {
    let g = em.g;
    let n = g.node(id);
    let desc = n.describe(id);
    let err = |what: String| ExportError::Node(format!("{desc}: {what}"));
    let (Some(x), [out]) = (inputs.first(), outputs.as_slice()) else {
        return Err(err("hadamard needs one input and one output".into()));
    };
    let ty = n
        .input(0)
        .and_then(|v| g.value_type(v))
        .ok_or_else(|| err("the input has no type".into()))?;
    if !ty.dtype.is_float() {
        return Err(err(format!(
            "cannot lower a hadamard of {} values",
            ty.dtype
        )));
    }
    let last = ty
        .shape
        .dims()
        .and_then(|d| d.last())
        .and_then(|d| d.known());
    // A Kronecker factor F [K, K] (a constant): the matrix is F ⊗ H_size.
    let factor = match n.input(1) {
        None => None,
        Some(v) => {
            let w = g
                .const_weight(v)
                .ok_or_else(|| err("the Kronecker factor is not a constant".into()))?;
            let k = match w.dims.as_slice() {
                [a, b] if a == b && *a > 0 => *a,
                d => return Err(err(format!("the Kronecker factor has shape {d:?}"))),
            };
            let vals = w.to_f32_vec().map_err(|e| err(e.to_string()))?;
            Some((k, vals, w.content_hash()))
        }
    };
    let k = factor.as_ref().map_or(1, |f| f.0);
    let pow2 = match (size, last) {
        (s, _) if s > 0 => s as u64,
        (_, Some(d)) if d % k == 0 => d / k,
        _ => return Err(err(
            "the last axis has an unknown length, so the whole-axis transform cannot be lowered"
                .into(),
        )),
    };
    if !pow2.is_power_of_two() || pow2 * k > MAX_BLOCK {
        return Err(err(format!(
            "block size {pow2} must be a power of two, and {k}·{pow2} at most {MAX_BLOCK}"
        )));
    }
    let block = pow2 * k;
    if let Some(d) = last {
        if d % block != 0 {
            return Err(err(format!(
                "block size {block} does not divide the last axis ({d})"
            )));
        }
    }

    let h = match &factor {
        None => hadamard_matrix(em, block, ty.dtype)?,
        Some((k, f, hash)) => kron_matrix(em, *k, f, *hash, pow2, ty.dtype)?,
    };
    let base = crate::names::base_name(&n.name, "hadamard", index);
    if last == Some(block) {
        em.push_node(
            "",
            "MatMul",
            &base,
            vec![x.clone(), h],
            vec![out.clone()],
            Attrs::new(),
            index,
        );
        return Ok(());
    }
    let shape = em.fresh(&format!("{base}_shape"));
    let blocks = em.fresh(&format!("{base}_blocks"));
    let rotated = em.fresh(&format!("{base}_rotated"));
    let view = Weight::from_i64(format!("{base}_view"), vec![2], &[-1, block as i64])?;
    let view = em.add_made(&format!("{base}_view"), view);
    em.push_node(
        "",
        "Shape",
        &format!("{base}_shape"),
        vec![x.clone()],
        vec![shape.clone()],
        Attrs::new(),
        index,
    );
    em.push_node(
        "",
        "Reshape",
        &format!("{base}_blocks"),
        vec![x.clone(), view],
        vec![blocks.clone()],
        Attrs::new(),
        index,
    );
    em.push_node(
        "",
        "MatMul",
        &base,
        vec![blocks, h],
        vec![rotated.clone()],
        Attrs::new(),
        index,
    );
    em.push_node(
        "",
        "Reshape",
        &format!("{base}_back"),
        vec![rotated, shape],
        vec![out.clone()],
        Attrs::new(),
        index,
    );
    Ok(())
}

/// The initializer holding `F ⊗ H_pow2` (F: `k × k`), shared by every hadamard node with
/// the same factor.
fn kron_matrix(
    em: &mut Emitter<'_>,
    k: u64,
    f: &[f32],
    hash: u64,
    pow2: u64,
    dtype: DType,
) -> Result<String, ExportError> {
    let key = format!("hadamard:{k}x{pow2}:{hash:016x}:{dtype}");
    if let Some(name) = em.made.get(&key) {
        return Ok(name.clone());
    }
    let (k, s) = (k as usize, pow2 as usize);
    let n = k * s;
    let hs = 1.0 / (s as f64).sqrt();
    let mut bytes = Vec::with_capacity(n * n * dtype.bits() / 8);
    for i in 0..n {
        for j in 0..n {
            let h = if ((i % s) & (j % s)).count_ones() & 1 == 0 {
                hs
            } else {
                -hs
            };
            let v = f[(i / s) * k + j / s] as f64 * h;
            match dtype {
                DType::F64 => bytes.extend(v.to_le_bytes()),
                DType::F32 => bytes.extend((v as f32).to_le_bytes()),
                DType::F16 => bytes.extend(half::f16::from_f64(v).to_le_bytes()),
                DType::BF16 => bytes.extend(half::bf16::from_f64(v).to_le_bytes()),
                other => {
                    return Err(ExportError::Node(format!(
                        "no hadamard matrix of {other} values"
                    )))
                }
            }
        }
    }
    let base = format!("hadamard_{k}x{s}_{dtype}");
    let w = Weight::from_bytes(base.clone(), dtype, vec![n as u64, n as u64], bytes)?;
    let name = em.add_made(&base, w);
    em.made.insert(key, name.clone());
    Ok(name)
}

/// The initializer holding H for `block` and `dtype`, shared by every hadamard node.
fn hadamard_matrix(em: &mut Emitter<'_>, block: u64, dtype: DType) -> Result<String, ExportError> {
    let key = format!("hadamard:{block}:{dtype}");
    if let Some(name) = em.made.get(&key) {
        return Ok(name.clone());
    }
    let b = block as usize;
    let scale = 1.0 / (block as f64).sqrt();
    let value = |i: usize, j: usize| {
        if (i & j).count_ones() & 1 == 0 {
            scale
        } else {
            -scale
        }
    };
    let mut bytes = Vec::with_capacity(b * b * dtype.bits() / 8);
    for i in 0..b {
        for j in 0..b {
            let v = value(i, j);
            match dtype {
                DType::F64 => bytes.extend(v.to_le_bytes()),
                DType::F32 => bytes.extend((v as f32).to_le_bytes()),
                DType::F16 => bytes.extend(half::f16::from_f64(v).to_le_bytes()),
                DType::BF16 => bytes.extend(half::bf16::from_f64(v).to_le_bytes()),
                other => {
                    return Err(ExportError::Node(format!(
                        "no hadamard matrix of {other} values"
                    )))
                }
            }
        }
    }
    let base = format!("hadamard_{block}_{dtype}");
    let w = Weight::from_bytes(base.clone(), dtype, vec![block, block], bytes)?;
    let name = em.add_made(&base, w);
    em.made.insert(key, name.clone());
    Ok(name)
}

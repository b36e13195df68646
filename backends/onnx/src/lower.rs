//! compc's own ops lowered to standard ONNX at export.
//!
//! `Hadamard{size}` is a MatMul by the normalized Hadamard matrix H (symmetric, so
//! `x·H` transforms each row). When the blocks are smaller than the last axis, the input
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
    let block = match (size, last) {
        (s, _) if s > 0 => s as u64,
        (_, Some(d)) => d,
        _ => return Err(err(
            "the last axis has an unknown length, so the whole-axis transform cannot be lowered"
                .into(),
        )),
    };
    if !block.is_power_of_two() || block > MAX_BLOCK {
        return Err(err(format!(
            "block size {block} must be a power of two up to {MAX_BLOCK}"
        )));
    }
    if let Some(d) = last {
        if d & (block - 1) != 0 {
            return Err(err(format!(
                "block size {block} does not divide the last axis ({d})"
            )));
        }
    }

    let h = hadamard_matrix(em, block, ty.dtype)?;
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

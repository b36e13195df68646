//! QDQ weights of MatMul layers (`DequantizeLinear` of constant 8- or 4-bit codes feeding
//! a MatMul, as `quant{format=qdq}` and 8-bit `quant` write them) rewritten as
//! `com.microsoft.MatMulNBits`: the same codes, scales and zero points, repacked N-major.
//! The native backends then keep the weight in its integer codes and dequantize it inside
//! the fused matmul kernel, instead of storing it dequantized as f32 (4× the bytes for
//! 8 bits). The function is unchanged: `s·(q − z)` is computed from the same integers.

use super::grid::Grid;
use super::layers::{Layer, Layout};
use super::lower_nbits::{lower_nbits, nbits_block};
use super::qmatrix::QMatrix;
use crate::idioms::{Idioms, LinearKind};
use crate::pass::PassError;
use compc_ir::{DType, Graph, Op, ValueRef};

/// Rewrites every QDQ MatMul whose weight MatMulNBits can hold; returns how many. Layers
/// it cannot hold (a dequantized weight read by other nodes too, per-tensor zero points
/// that differ by channel, a group that is not a power of two) are left as they are.
pub fn qdq_matmuls_to_nbits(g: &mut Graph) -> Result<usize, PassError> {
    let idioms = Idioms::find(g)?;
    let mut plans = Vec::new();
    for (index, l) in idioms.linears.iter().enumerate() {
        if l.kind != LinearKind::QdqMatMul || !matches!(g.node(l.node).op, Op::MatMul) {
            continue;
        }
        let Some(dq) = g.node(l.node).input(1) else {
            continue;
        };
        if g.value_users(dq).len() != 1 {
            continue;
        }
        if let Some(q) = read_qdq(g, dq) {
            let layer = Layer {
                index,
                linear: l.clone(),
                name: g.node(l.node).name.clone(),
                layout: Layout::InOut,
                rows: q.rows,
                cols: q.cols,
                dtype: DType::F32,
            };
            plans.push((layer, q));
        }
    }
    for (layer, q) in &plans {
        let dq = g.node(layer.linear.node).input(1);
        lower_nbits(g, layer, q)?;
        // The DequantizeLinear fed only the MatMul: nothing reads it now (its constants
        // are left for `dce`).
        if let Some(dq) = dq {
            if !g.is_used(dq) {
                g.remove_node(dq.node)?;
            }
        }
    }
    Ok(plans.len())
}

/// The weight behind `DequantizeLinear(codes, scale[, zero_point])` with codes `[K, N]`
/// (MatMul's `B = Wᵀ`) as a W-form matrix, when MatMulNBits can hold it: 8- or 4-bit
/// codes; scales per tensor, per output channel (`axis` 1) or in blocks along K (`axis`
/// 0, `block_size` a power of two ≥ 16); f32 scales.
fn read_qdq(g: &Graph, dq: ValueRef) -> Option<QMatrix> {
    let node = g.node(dq.node);
    let Op::DequantizeLinear(attrs) = &node.op else {
        return None;
    };
    let codes = g.const_weight(node.input(0)?)?;
    let scale = g.const_weight(node.input(1)?)?;
    let zero = match node.input(2) {
        Some(z) => Some(g.const_weight(z)?),
        None => None,
    };
    let (bits, signed) = match codes.dtype {
        DType::I8 => (8, true),
        DType::U8 => (8, false),
        DType::I4 => (4, true),
        DType::U4 => (4, false),
        _ => return None,
    };
    if scale.dtype != DType::F32 || zero.is_some_and(|z| z.dtype != codes.dtype) {
        return None;
    }
    let [k, n] = codes.dims[..] else { return None };
    let (k, n) = (k as usize, n as usize);
    let axis = if attrs.axis < 0 {
        attrs.axis + 2
    } else {
        attrs.axis
    };
    // (groups along K, the scale's index of (group, column)).
    let (groups, group) = match (scale.dims.as_slice(), axis, attrs.block_size) {
        ([] | [1], _, _) => (1, k),
        ([c], 1, 0) if *c as usize == n => (1, k),
        ([gk, c], 0, bs)
            if bs > 0 && *c as usize == n && *gk as usize == k.div_ceil(bs as usize) =>
        {
            (*gk as usize, bs as usize)
        }
        _ => return None,
    };
    let per_tensor = scale.numel() == 1;
    let scales = scale.to_f32_vec().ok()?;
    let q = codes.to_i64_vec().ok()?;
    let z = match zero {
        Some(z) => z.to_i64_vec().ok()?,
        None => vec![0; scales.len()],
    };
    if z.len() != scales.len() || q.len() != k * n {
        return None;
    }
    // MatMulNBits' codes are unsigned: signed ones shift by 2^(bits−1), their zero points
    // with them, which leaves every q − z as it was.
    let offset = if signed { 1i64 << (bits - 1) } else { 0 };
    let at = |gi: usize, c: usize| if per_tensor { 0 } else { gi * n + c };
    let mut m = QMatrix::zeroed(n, k, group, Grid::new(bits, signed));
    if m.groups() != groups || nbits_block(&m).is_none() {
        return None;
    }
    for c in 0..n {
        for gi in 0..groups {
            m.scales[c * groups + gi] = scales[at(gi, c)];
            m.zeros[c * groups + gi] = u8::try_from(z[at(gi, c)] + offset).ok()?;
        }
        for r in 0..k {
            m.codes[c * k + r] = u8::try_from(q[r * n + c] + offset).ok()?;
        }
    }
    Some(m)
}

//! 2-bit `MatMulNBits` widened to 4-bit containers, for the native backends, whose fused
//! kernels unpack 4- and 8-bit codes. The codes, scales and zero points keep their values
//! (a 2-bit code q is the 4-bit code q), so `s·(q − z)` is unchanged; only the packing
//! changes, at twice the bytes of the 2-bit form and half those of 8 bits. The zero points
//! are written out, because MatMulNBits' default zero point depends on the width (2 for 2
//! bits, 8 for 4).

use super::lower_nbits::{pack, unpack};
use crate::pass::PassError;
use compc_ir::op::MatMulNBits;
use compc_ir::{DType, Graph, NodeId, Op, ValueRef, Weight};

/// Rewrites every 2-bit MatMulNBits with constant operands; returns how many.
pub fn widen_two_bit_nbits(g: &mut Graph) -> Result<usize, PassError> {
    let ids: Vec<NodeId> = g
        .node_ids()
        .filter(|&id| matches!(&g.node(id).op, Op::MatMulNBits(q) if q.bits == 2))
        .collect();
    for &id in &ids {
        widen(g, id)?;
    }
    Ok(ids.len())
}

fn widen(g: &mut Graph, id: NodeId) -> Result<(), PassError> {
    let node = g.node(id);
    let desc = node.describe(id);
    let err = |what: &str| PassError::Invalid(format!("{desc}: {what}"));
    let Op::MatMulNBits(q) = node.op.clone() else {
        return Ok(());
    };
    let (n, k, bs) = (q.n as usize, q.k as usize, q.block_size as usize);
    if n == 0 || bs == 0 || !bs.is_multiple_of(4) {
        return Err(err(
            "2-bit MatMulNBits needs N > 0 and a block size divisible by 4",
        ));
    }
    let nb = k.div_ceil(bs);
    let b = node
        .input(1)
        .and_then(|v| g.const_weight(v))
        .ok_or_else(|| err("B is not a constant"))?;
    let bytes = b.bytes().map_err(|e| err(&e.to_string()))?;
    let (blob2, blob4) = (bs / 4, bs / 2);
    if bytes.len() != n * nb * blob2 {
        return Err(err("B's size does not match N, K and block_size"));
    }
    let mut wide = vec![0u8; n * nb * blob4];
    for (src, dst) in bytes.chunks_exact(blob2).zip(wide.chunks_exact_mut(blob4)) {
        pack(&unpack(src, 2, bs), 4, dst);
    }
    let zeros: Vec<u8> = match node.input(3) {
        Some(v) => {
            let z = g
                .const_weight(v)
                .ok_or_else(|| err("the zero points are not a constant"))?;
            if z.dtype != DType::U8 {
                return Err(err("the zero points are not packed uint8"));
            }
            let zb = z.bytes().map_err(|e| err(&e.to_string()))?;
            let row = (nb * 2).div_ceil(8);
            if zb.len() != n * row {
                return Err(err("the zero points' size does not match N and the blocks"));
            }
            zb.chunks_exact(row)
                .flat_map(|r| unpack(r, 2, nb))
                .collect()
        }
        None => vec![2; n * nb],
    };
    let zrow = (nb * 4).div_ceil(8);
    let mut zp = vec![0u8; n * zrow];
    for (src, dst) in zeros.chunks_exact(nb).zip(zp.chunks_exact_mut(zrow)) {
        pack(src, 4, dst);
    }
    let base = node.name.clone();
    let bad = |e: compc_ir::WeightError| PassError::Invalid(e.to_string());
    let bw = Weight::from_bytes(
        format!("{base}_Q4"),
        DType::U8,
        vec![n as u64, nb as u64, blob4 as u64],
        wide,
    )
    .map_err(bad)?;
    let zw = Weight::from_bytes(
        format!("{base}_zero_points4"),
        DType::U8,
        vec![n as u64, zrow as u64],
        zp,
    )
    .map_err(bad)?;
    let bc = ValueRef::new(g.add_const(bw), 0);
    let zc = ValueRef::new(g.add_const(zw), 0);
    let mut inputs: Vec<Option<ValueRef>> = g.node(id).inputs().to_vec();
    if inputs.len() < 4 {
        inputs.resize(4, None);
    }
    inputs[1] = Some(bc);
    inputs[3] = Some(zc);
    g.set_inputs(id, inputs);
    g.node_mut(id).op = Op::MatMulNBits(MatMulNBits { bits: 4, ..q });
    Ok(())
}

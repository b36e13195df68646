//! Lowering to `com.microsoft.MatMulNBits` (techniques.md §1.6, ORT's
//! ContribOperators.md): `Y = A · dequant(B)ᵀ + bias` with B stored N-major as
//! `uint8[N, k_blocks, blob]`, `blob = block_size · bits / 8`; codes little-endian
//! bit-packed (4 bits: byte t holds code 2t in bits 0–3 and code 2t+1 in bits 4–7),
//! zero-padded past K; scales `[N, k_blocks]` in A's float type; zero points packed the
//! same way along the block axis per row (`uint8[N, ceil(k_blocks · bits / 8)]`), or
//! absent when they all equal the default `2^(bits−1)`; an optional bias `[N]`.
//! compc's W-form rows are exactly MatMulNBits' N rows, so packing is row-local.

use super::layers::Layer;
use super::qmatrix::QMatrix;
use crate::idioms::LinearKind;
use crate::pass::PassError;
use compc_ir::op::MatMulNBits;
use compc_ir::{DType, Graph, Op, ValueRef, Weight};
use rayon::prelude::*;

/// Bits of the MatMulNBits container for a grid of `bits` (3-bit codes travel in 4).
pub fn container_bits(bits: u32) -> u32 {
    match bits {
        2 => 2,
        3 | 4 => 4,
        _ => 8,
    }
}

/// Packs `codes` (each < 2^bits) little-endian, lowest bits first, into `out`.
pub fn pack(codes: &[u8], bits: u32, out: &mut [u8]) {
    let per = (8 / bits) as usize;
    let mask = ((1u16 << bits) - 1) as u8;
    // Whole bytes first, in a loop the compiler vectorizes (the generic per-element
    // index arithmetic below is several times slower on large weights).
    let whole = codes.len() / per;
    match bits {
        8 => out[..whole].copy_from_slice(&codes[..whole]),
        4 => {
            for (o, c) in out.iter_mut().zip(codes.chunks_exact(2)) {
                *o = (c[0] & mask) | (c[1] & mask) << 4;
            }
        }
        2 => {
            for (o, c) in out.iter_mut().zip(codes.chunks_exact(4)) {
                *o = (c[0] & mask) | (c[1] & mask) << 2 | (c[2] & mask) << 4 | (c[3] & mask) << 6;
            }
        }
        _ => {
            for (o, c) in out.iter_mut().zip(codes.chunks_exact(per)) {
                *o = c
                    .iter()
                    .enumerate()
                    .fold(0, |b, (j, &v)| b | (v & mask) << (j as u32 * bits));
            }
        }
    }
    out[whole..].iter_mut().for_each(|b| *b = 0);
    for (j, &c) in codes[whole * per..].iter().enumerate() {
        out[whole] |= (c & mask) << (j as u32 * bits);
    }
}

/// Inverse of [`pack`]: `n` codes.
pub fn unpack(bytes: &[u8], bits: u32, n: usize) -> Vec<u8> {
    let per = (8 / bits) as usize;
    let mask = ((1u16 << bits) - 1) as u8;
    (0..n)
        .map(|i| (bytes[i / per] >> ((i % per) as u32 * bits)) & mask)
        .collect()
}

/// The block size MatMulNBits gets for a matrix: its group when that is a power of two
/// ≥ 16, else (per-channel) one block covering K, rounded up to a power of two.
pub fn nbits_block(q: &QMatrix) -> Option<usize> {
    let g = q.group;
    if g.is_power_of_two() && g >= 16 {
        Some(g)
    } else if q.per_channel() {
        Some(q.cols.next_power_of_two().max(16))
    } else {
        None
    }
}

/// MatMulNBits tensors of a quantized matrix.
pub struct NBitsTensors {
    pub k: usize,
    pub n: usize,
    pub bits: u32,
    pub block: usize,
    /// `[N, k_blocks, blob]`.
    pub b: Vec<u8>,
    /// `[N, k_blocks]`.
    pub scales: Vec<f32>,
    /// Packed `[N, ceil(k_blocks · bits / 8)]`, absent when every zero point is the default.
    pub zero_points: Option<Vec<u8>>,
}

pub fn nbits_tensors(q: &QMatrix) -> Result<NBitsTensors, String> {
    let block = nbits_block(q).ok_or_else(|| {
        format!(
            "group {} is not a power of two ≥ 16, which MatMulNBits needs",
            q.group
        )
    })?;
    let bits = container_bits(q.grid.bits);
    let (n, k) = (q.rows, q.cols);
    let kb = k.div_ceil(block);
    let blob = block * bits as usize / 8;
    // One matrix group can hold several blocks only when per-channel was widened.
    let ng = q.groups();
    let per_group = if ng == 1 { kb } else { 1 };
    let mut b = vec![0u8; n * kb * blob];
    b.par_chunks_mut(kb * blob)
        .zip(q.codes.par_chunks(k.max(1)))
        .for_each(|(out, codes)| {
            let mut padded = vec![0u8; block];
            for (bi, ob) in out.chunks_mut(blob).enumerate() {
                let src = &codes[bi * block..((bi + 1) * block).min(k)];
                padded[..src.len()].copy_from_slice(src);
                padded[src.len()..].iter_mut().for_each(|c| *c = 0);
                pack(&padded, bits, ob);
            }
        });
    let group_of = |bi: usize| if per_group == kb { 0 } else { bi };
    let mut scales = vec![0f32; n * kb];
    let mut zps = vec![0u8; n * kb];
    for r in 0..n {
        for bi in 0..kb {
            scales[r * kb + bi] = q.scales[r * ng + group_of(bi)];
            zps[r * kb + bi] = q.zeros[r * ng + group_of(bi)];
        }
    }
    let default_zp = 1u8 << (bits - 1);
    let zero_points = if zps.iter().all(|&z| z == default_zp) {
        None
    } else {
        let zrow = (kb * bits as usize).div_ceil(8);
        let mut zp = vec![0u8; n * zrow];
        zp.par_chunks_mut(zrow)
            .zip(zps.par_chunks(kb))
            .for_each(|(o, z)| pack(z, bits, o));
        Some(zp)
    };
    Ok(NBitsTensors {
        k,
        n,
        bits,
        block,
        b,
        scales,
        zero_points,
    })
}

/// True when the layer can become a MatMulNBits node: a MatMul whose input has rank ≥ 2
/// and whose groups fit MatMulNBits' blocks.
pub fn can_lower(g: &Graph, l: &Layer, q: &QMatrix) -> bool {
    let rank_ok = l
        .input(g)
        .and_then(|v| g.value_type(v))
        .and_then(|t| t.shape.rank())
        .is_some_and(|r| r >= 2);
    l.linear.kind == LinearKind::MatMul && rank_ok && nbits_block(q).is_some()
}

/// Replaces the layer's MatMul (and its bias Add) by one MatMulNBits node; returns the
/// bytes of the new constants and the new node.
pub fn lower_nbits(
    g: &mut Graph,
    l: &Layer,
    q: &QMatrix,
) -> Result<(u64, compc_ir::NodeId), PassError> {
    let t = nbits_tensors(q).map_err(|e| PassError::Invalid(format!("layer `{}`: {e}", l.name)))?;
    let node = l.linear.node;
    let a = l
        .input(g)
        .ok_or_else(|| PassError::Invalid(format!("layer `{}` has no input", l.name)))?;
    let act = g.value_type(a).map(|t| t.dtype).unwrap_or(DType::F32);
    let kb = t.k.div_ceil(t.block);
    let blob = t.block * t.bits as usize / 8;
    let bad = |e: compc_ir::WeightError| PassError::Invalid(e.to_string());
    let bw = Weight::from_bytes(
        format!("{}_Q{}", l.name, t.bits),
        DType::U8,
        vec![t.n as u64, kb as u64, blob as u64],
        t.b,
    )
    .map_err(bad)?;
    let st = compc_runtime::Tensor::from_f32_as(act, vec![t.n, kb], t.scales)?;
    let sw = st.to_weight(&format!("{}_scales", l.name))?;
    let mut bytes = bw.byte_len() + sw.byte_len();
    let bc = g.add_const(bw);
    let sc = g.add_const(sw);
    let zc = match t.zero_points {
        Some(z) => {
            let zrow = z.len() / t.n.max(1);
            let zw = Weight::from_bytes(
                format!("{}_zero_points", l.name),
                DType::U8,
                vec![t.n as u64, zrow as u64],
                z,
            )
            .map_err(bad)?;
            bytes += zw.byte_len();
            Some(ValueRef::new(g.add_const(zw), 0))
        }
        None => None,
    };
    let (output, bias) = match l.linear.bias {
        Some((add, b)) if add != node => {
            let bt = g.value_type(b).map(|t| t.dtype);
            if bt == Some(act) {
                (ValueRef::new(add, 0), Some(b))
            } else {
                (ValueRef::new(node, 0), None)
            }
        }
        _ => (ValueRef::new(node, 0), None),
    };
    let out_ty = g.node(output.node).outputs[0].clone();
    let mut inputs = vec![
        Some(a),
        Some(ValueRef::new(bc, 0)),
        Some(ValueRef::new(sc, 0)),
        zc,
        None,
        bias,
    ];
    while inputs.last() == Some(&None) {
        inputs.pop();
    }
    let nb = g.add_node(
        Op::MatMulNBits(MatMulNBits {
            k: t.k as i64,
            n: t.n as i64,
            bits: t.bits as i64,
            block_size: t.block as i64,
            accuracy_level: 0,
        }),
        inputs,
        vec![out_ty],
        format!("{}_MatMulNBits", l.name),
    );
    g.replace_all_uses(output, ValueRef::new(nb, 0));
    if output.node != node {
        g.remove_node(output.node)?;
    }
    g.remove_node(node)?;
    g.opsets
        .entry(compc_ir::op::MS_DOMAIN.to_string())
        .or_insert(1);
    Ok((bytes, nb))
}

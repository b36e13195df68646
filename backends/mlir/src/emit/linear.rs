//! Matrix products. On the CPU a MatMul by a constant f32 weight goes to the panel kernel
//! (`cpu_matmul`, weights re-laid out at compile time); other plain matmuls become the
//! named `linalg.matmul` / `linalg.batch_matmul` (leading dims collapsed, which is free),
//! so the tiling and vectorization recipes apply to them; what does not fit a named op is
//! a `linalg.generic` contraction.
//! `MatMulNBits` is a contraction whose body unpacks and dequantizes the packed weight in
//! registers: the int4/int8 weight is never expanded to f32 in memory.

use super::builder::{affine_map, broadcast_map, elt, tensor_type, Emitter, Init, Val};
use super::layout::{collapse_leading, expand_to};
use super::EmitError;
use super::EmitOptions;
use compc_ir::op::{Gemm, MatMulNBits};
use compc_ir::{DType, Dim, Graph, NodeId, Op, Shape, TensorType};

/// `linalg.matmul` of 2-D operands into a zero-filled (or given) accumulator.
fn named_matmul(
    em: &mut Emitter,
    name: &str,
    a: &Val,
    b: &Val,
    out: &TensorType,
    acc: Option<&Val>,
) -> Result<Val, EmitError> {
    if name == "matmul"
        && em.options().gpu_kernels
        && out.dtype == DType::F32
        && super::gpu_matmul::supported(a, b, out)
    {
        // The GPU's shared-memory tiled kernel; Gemm's C is added after it.
        let r = super::gpu_matmul::emit(em, a, b, out)?;
        return match acc {
            Some(c) => em.elementwise(&[&r, c], out, |bd, x| {
                Ok(bd.op(format!("arith.addf {}, {} : f32", x[0], x[1])))
            }),
            None => Ok(r),
        };
    }
    let init = match acc {
        Some(v) => v.clone(),
        None => em.filled(out, "0.0")?,
    };
    let t = tensor_type(out);
    let ssa = em.op(format!(
        "linalg.{name} ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
        a.ssa,
        b.ssa,
        a.mlir_type(),
        b.mlir_type(),
        init.ssa
    ));
    Ok(Val {
        ssa,
        ty: out.clone(),
    })
}

fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape::Ranked(dims))
}

/// `[K, N]` of a MatMul's B when the CPU lowering reads it as panels
/// ([`super::cpu_matmul`]): a constant 2-D f32 weight with N a whole number of vectors,
/// multiplied by f32 activations of rank 2 or more.
pub(super) fn panelled_weight(g: &Graph, id: NodeId, options: &EmitOptions) -> Option<(u64, u64)> {
    let node = g.node(id);
    if options.gpu_kernels || !matches!(node.op, Op::MatMul) {
        return None;
    }
    let w = g.const_weight(node.input(1)?)?;
    let a = g.value_type(node.input(0)?)?;
    let ranked_a = a.shape.dims().is_some_and(|d| d.len() >= 2);
    match w.dims[..] {
        [k, n] if w.dtype == DType::F32 && a.dtype == DType::F32 && ranked_a => {
            super::cpu_matmul::supported(k, n).then_some((k, n))
        }
        _ => None,
    }
}

pub fn matmul(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    if let Some((k, n)) = panelled_weight(em.g, id, &em.options()) {
        return matmul_panelled(em, id, k, n);
    }
    let a = em.input(id, 0)?;
    let b = em.input(id, 1)?;
    let out = em.out_type(id)?;
    if !out.dtype.is_float() || a.ty.dtype != b.ty.dtype {
        return Err(em.err("matmul is lowered for float operands of one type"));
    }
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || rb < 2 {
        return Err(em.err("matmul with a vector operand is not lowered yet"));
    }
    let od = out.shape.dims().unwrap().to_vec();
    let dt = out.dtype;
    let dynamic = |d: &[Dim]| d.iter().filter(|x| x.known().is_none()).count();
    // On the CPU several dynamic dims are collapsed too, so the register tiles of the
    // matmul run over all rows at once (batch × sequence), not per batch element;
    // expanding them back goes through `tensor.reshape` (see layout::expand). The GPU
    // pipeline folds that reshape into the `memref.expand_shape` MLIR 22 crashes on, so
    // there such shapes take the batch_matmul below.
    let collapse_ok = dynamic(&a.dims()[..ra - 1]) <= 1 || !em.options().gpu_kernels;
    if rb == 2 && collapse_ok {
        // [..., M, K] x [K, N]: collapse the leading dims into M.
        let a2 = collapse_leading(em, &a, ra - 1)?;
        let m = a2.dims()[0].clone();
        let o2 = ty(dt, vec![m, od[od.len() - 1].clone()]);
        let r = named_matmul(em, "matmul", &a2, &b, &o2, None)?;
        return expand_to(em, &r, &out);
    }
    if rb == 2
        && ra == 3
        && em.options().gpu_kernels
        && dt == DType::F32
        && super::gpu_matmul::supported(&a, &b, &out)
    {
        // [B, S, K] x [K, N] with dynamic B and S: the GPU's tiled kernel indexes the
        // rows itself.
        return super::gpu_matmul::emit(em, &a, &b, &out);
    }
    if rb == 2 && ra == 3 {
        // [B, S, K] x [K, N] with dynamic B and S: a batch_matmul broadcasting B.
        let init = em.filled(&out, "0.0")?;
        let t = tensor_type(&out);
        let maps = [
            affine_map(4, &["d0".into(), "d1".into(), "d3".into()]),
            affine_map(4, &["d3".into(), "d2".into()]),
            affine_map(4, &["d0".into(), "d1".into(), "d2".into()]),
        ];
        let ssa = em.op(format!(
            "linalg.batch_matmul indexing_maps = [{}] ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
            maps.join(", "),
            a.ssa,
            b.ssa,
            a.mlir_type(),
            b.mlir_type(),
            init.ssa
        ));
        return Ok(Val { ssa, ty: out });
    }
    if ra == rb && a.dims()[..ra - 2] == b.dims()[..rb - 2] && dynamic(&a.dims()[..ra - 2]) <= 1 {
        // Same batch dims on both sides: one batch_matmul over their product.
        let a3 = collapse_leading(em, &a, ra - 2)?;
        let b3 = collapse_leading(em, &b, rb - 2)?;
        let o3 = ty(
            dt,
            vec![
                a3.dims()[0].clone(),
                od[od.len() - 2].clone(),
                od[od.len() - 1].clone(),
            ],
        );
        let r = named_matmul(em, "batch_matmul", &a3, &b3, &o3, None)?;
        return expand_to(em, &r, &out);
    }
    // General broadcasting contraction: loops (batch..., m, n, k).
    let r = od.len();
    let n_loops = r + 1;
    let k = format!("d{r}");
    let operand_map = |dims: &[Dim], last2: [String; 2]| {
        let batch = &dims[..dims.len() - 2];
        let m = broadcast_map(batch, &od[..r - 2]);
        // Reuse the broadcast rule on the batch part, then append the two matrix dims.
        let inner = m
            .split("-> (")
            .nth(1)
            .unwrap()
            .trim_end_matches(")>")
            .to_string();
        let mut e: Vec<String> = if inner.is_empty() {
            vec![]
        } else {
            inner.split(", ").map(String::from).collect()
        };
        e.extend(last2);
        affine_map(n_loops, &e)
    };
    let ma = operand_map(a.dims(), [format!("d{}", r - 2), k.clone()]);
    let mb = operand_map(b.dims(), [k.clone(), format!("d{}", r - 1)]);
    let mo = affine_map(
        n_loops,
        &(0..r).map(|i| format!("d{i}")).collect::<Vec<_>>(),
    );
    let mut iters = vec!["parallel"; r];
    iters.push("reduction");
    let t = elt(dt);
    em.generic(
        &[(&a, ma), (&b, mb)],
        &out,
        mo,
        &iters,
        Init::Fill("0.0".into()),
        |bd, x| {
            let p = bd.op(format!("arith.mulf {}, {} : {t}", x[0], x[1]));
            Ok(bd.op(format!("arith.addf {}, {p} : {t}", x[2])))
        },
    )
}

/// A MatMul by a constant `[K, N]` weight through the CPU panel kernel.
fn matmul_panelled(em: &mut Emitter, id: NodeId, k: u64, n: u64) -> Result<Val, EmitError> {
    let a = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let w = em.g.node(id).input(1).and_then(|v| em.g.const_weight(v));
    let w = w.ok_or_else(|| em.err("B is not a constant"))?;
    let values = w
        .to_f32_vec()
        .map_err(|e| em.err(format!("weight {}: {e}", w.name)))?;
    let name = format!("{}.panels", w.name);
    let c = super::cpu_matmul::panel_width(n);
    let panels = super::cpu_matmul::panels(&values, k as usize, n as usize);
    let wp = em.prepared(
        &name,
        DType::F32,
        &[n / c, k, c],
        bytemuck::cast_slice(&panels).to_vec(),
    );
    super::cpu_matmul::emit(em, &a, &wp, k, n, &out)
}

/// A constant 2-D weight transposed at compile time (Gemm's `transB`).
fn transposed_weight(em: &mut Emitter, id: NodeId, i: usize) -> Result<Option<Val>, EmitError> {
    let dims = match em.g.node(id).input(i).and_then(|v| em.g.const_weight(v)) {
        Some(w) if w.dims.len() == 2 => [w.dims[0], w.dims[1]],
        _ => return Ok(None),
    };
    transposed_constant(em, id, i, dims)
}

/// Input `i` of `id`, a constant f32 weight, read as a `[rows, cols]` matrix (its own dims
/// may differ, the bytes are the same: a `[F, C, 1, 1]` filter as `[F, C]`) and transposed
/// at compile time to `[cols, rows]`. `None` when the input is not a constant f32 weight
/// of `rows·cols` elements.
pub(super) fn transposed_constant(
    em: &mut Emitter,
    id: NodeId,
    i: usize,
    [rows, cols]: [u64; 2],
) -> Result<Option<Val>, EmitError> {
    let Some(w) = em.g.node(id).input(i).and_then(|v| em.g.const_weight(v)) else {
        return Ok(None);
    };
    if w.dtype != DType::F32 || w.dims.iter().product::<u64>() != rows * cols {
        return Ok(None);
    }
    let (r, c) = (rows as usize, cols as usize);
    let src = w
        .to_f32_vec()
        .map_err(|e| em.err(format!("weight {}: {e}", w.name)))?;
    let mut t = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = src[i * c + j];
        }
    }
    let name = format!("{}.T", w.name);
    Ok(Some(em.prepared(
        &name,
        DType::F32,
        &[cols, rows],
        bytemuck::cast_slice(&t).to_vec(),
    )))
}

pub fn gemm(em: &mut Emitter, id: NodeId, g: &Gemm) -> Result<Val, EmitError> {
    let out = em.out_type(id)?;
    if out.dtype != DType::F32 {
        return Err(em.err("gemm is lowered for f32"));
    }
    if g.trans_a {
        return Err(em.err("gemm with transA=1 is not lowered yet"));
    }
    let a = em.input(id, 0)?;
    let b = if g.trans_b {
        transposed_weight(em, id, 1)?
            .ok_or_else(|| em.err("gemm with transB=1 needs a constant f32 B"))?
    } else {
        em.input(id, 1)?
    };
    // C (scaled by beta) is the accumulator the product is added to.
    let acc = match em.g.node(id).input(2) {
        Some(_) => {
            let c = em.input(id, 2)?;
            let beta = g.beta;
            Some(em.elementwise(&[&c], &out, |bd, x| {
                let k = bd.fconst(beta, "f32");
                Ok(bd.op(format!("arith.mulf {}, {k} : f32", x[0])))
            })?)
        }
        None => None,
    };
    let a = if g.alpha != 1.0 {
        let alpha = g.alpha;
        let t = a.ty.clone();
        em.elementwise(&[&a], &t, |bd, x| {
            let k = bd.fconst(alpha, "f32");
            Ok(bd.op(format!("arith.mulf {}, {k} : f32", x[0])))
        })?
    } else {
        a
    };
    named_matmul(em, "matmul", &a, &b, &out, acc.as_ref())
}

/// `Y = A · dequant(B)ᵀ (+ bias)` with B packed `[N, n_blocks, blob]` (4-bit: two values a
/// byte, low nibble first), scales `[N·n_blocks]`, optional packed zero points. The loops
/// are (m, n, block, [nibble,] j); the body shifts and masks the byte, subtracts the zero
/// point and scales, all in registers.
pub fn matmul_nbits(em: &mut Emitter, id: NodeId, q: &MatMulNBits) -> Result<Val, EmitError> {
    let a = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let (k, n, bits, bs) = (q.k as u64, q.n as u64, q.bits as u64, q.block_size as u64);
    if !(bits == 4 || bits == 8) || bs < 2 || bs % 2 != 0 {
        return Err(em.err(format!(
            "MatMulNBits with bits={bits}, block_size={bs} is not lowered (4 or 8 bits, an even block size)"
        )));
    }
    if a.ty.dtype != DType::F32 {
        return Err(em.err("MatMulNBits is lowered for f32 activations"));
    }
    // The last block is zero-padded in B; A is padded to match (zeros add nothing).
    let nb = k.div_ceil(bs);
    let node = em.g.node(id);
    // Packed weight, viewed as i8 [N, nb, bs·bits/8] (same bytes).
    let wv = node.input(1).ok_or_else(|| em.err("B is missing"))?;
    let w =
        em.g.const_weight(wv)
            .ok_or_else(|| em.err("B must be a constant"))?;
    let wbytes = w
        .bytes()
        .map_err(|e| em.err(format!("weight {}: {e}", w.name)))?
        .to_vec();
    let per_block = bs * bits / 8;
    if wbytes.len() as u64 != n * nb * per_block {
        return Err(em.err("B's size does not match N, K, bits and block_size"));
    }
    let wname = w.name.clone();
    let scales = em
        .const_f32(id, 2)
        .ok_or_else(|| em.err("scales must be a constant"))?;
    // Int4 in blocks of 32 on whole 16-row tiles and 128-value steps: the tensor-core
    // kernels and their own weight layout (the scales are re-laid out, not prepared here).
    if em.options().gpu_kernels && super::gpu_nbits_tc::applies(n, k, bits, bs) {
        return matmul_nbits_gpu_tc(em, id, &a, &out, (k, n), &wbytes, &scales);
    }
    let sc = em.prepared(
        &format!("{wname}.scales"),
        DType::F32,
        &[n, nb],
        bytemuck::cast_slice(&scales).to_vec(),
    );
    if em.options().gpu_kernels && super::gpu_nbits::supported(k, bits, bs) {
        return matmul_nbits_gpu(em, id, &a, &out, (k, n, bits, bs), &wbytes, sc);
    }
    if !em.options().gpu_kernels && super::cpu_nbits::supported(n, bits, bs) {
        return matmul_nbits_cpu(em, id, &a, &out, (k, n, bits, bs), &wbytes, &scales);
    }
    let bq = em.prepared(&wname, DType::U8, &[n, nb, per_block], wbytes);
    // Zero points unpacked at compile time to f32 [N, nb] (default 2^(bits-1)).
    let zp: Vec<f32> = zero_points(em, id, n, nb, bits, node.input(3).is_some())?
        .into_iter()
        .map(f32::from)
        .collect();
    let zpv = em.prepared(
        &format!("{wname}.zero_points"),
        DType::F32,
        &[n, nb],
        bytemuck::cast_slice(&zp).to_vec(),
    );
    // Loops: the leading dims of A (parallel), n (parallel), then the reduction over K
    // split as (block, [nibble,] j).
    let lead: Vec<Dim> = a.dims()[..a.rank() - 1].to_vec();
    let a = pad_last(em, &a, nb * bs - k)?;
    let l = lead.len();
    let mut od = lead.clone();
    od.push(Dim::Known(n));
    let o = ty(DType::F32, od);
    let init = match node.input(5) {
        Some(_) => {
            let bias = em.input(id, 5)?;
            em.elementwise(&[&bias], &o, |_, x| Ok(x[0].clone()))?
        }
        None => em.filled(&o, "0.0")?,
    };
    let d = |i: usize| format!("d{i}");
    let lead_exprs: Vec<String> = (0..l).map(d).collect();
    let (nd, blk) = (l, l + 1);
    let mut iters = vec!["parallel"; l + 1];
    let mut out_e = lead_exprs.clone();
    out_e.push(d(nd));
    let r = if bits == 4 {
        // A viewed as [..., nb, bs/2, 2]: k = blk·bs + 2·j + nib.
        let mut ad = lead.clone();
        ad.extend([Dim::Known(nb), Dim::Known(bs / 2), Dim::Known(2)]);
        let a4 = expand_to(em, &a, &ty(DType::F32, ad))?;
        let (nib, j) = (l + 2, l + 3);
        let loops = l + 4;
        iters.extend(["reduction"; 3]);
        let mut ae = lead_exprs.clone();
        ae.extend([d(blk), d(j), d(nib)]);
        let maps = [
            (&a4, affine_map(loops, &ae)),
            (&bq, affine_map(loops, &[d(nd), d(blk), d(j)])),
            (&sc, affine_map(loops, &[d(nd), d(blk)])),
            (&zpv, affine_map(loops, &[d(nd), d(blk)])),
        ];
        em.generic(
            &maps,
            &o,
            affine_map(loops, &out_e),
            &iters,
            Init::Value(&init),
            |b, x| {
                let nb_i = b.index(nib);
                let nb_i = b.op(format!("arith.index_cast {nb_i} : index to i8"));
                let four = b.iconst(4, "i8");
                let sh = b.op(format!("arith.muli {nb_i}, {four} : i8"));
                let v = b.op(format!("arith.shrui {}, {sh} : i8", x[1]));
                let mask = b.iconst(15, "i8");
                let q = b.op(format!("arith.andi {v}, {mask} : i8"));
                Ok(dequantize_accumulate(b, &q, x))
            },
        )?
    } else {
        let mut ad = lead.clone();
        ad.extend([Dim::Known(nb), Dim::Known(bs)]);
        let a3 = expand_to(em, &a, &ty(DType::F32, ad))?;
        let j = l + 2;
        let loops = l + 3;
        iters.extend(["reduction"; 2]);
        let mut ae = lead_exprs.clone();
        ae.extend([d(blk), d(j)]);
        let maps = [
            (&a3, affine_map(loops, &ae)),
            (&bq, affine_map(loops, &[d(nd), d(blk), d(j)])),
            (&sc, affine_map(loops, &[d(nd), d(blk)])),
            (&zpv, affine_map(loops, &[d(nd), d(blk)])),
        ];
        em.generic(
            &maps,
            &o,
            affine_map(loops, &out_e),
            &iters,
            Init::Value(&init),
            |b, x| Ok(dequantize_accumulate(b, &x[1], x)),
        )?
    };
    expand_to(em, &r, &out)
}

/// MatMulNBits through the CPU kernel: codes, scales and zero points re-laid out for it
/// at compile time, the bias as a vector (zeros when absent).
fn matmul_nbits_cpu(
    em: &mut Emitter,
    id: NodeId,
    a: &Val,
    out: &TensorType,
    (k, n, bits, bs): (u64, u64, u64, u64),
    packed: &[u8],
    scales: &[f32],
) -> Result<Val, EmitError> {
    let nb = k.div_ceil(bs);
    let node = em.g.node(id);
    let wname =
        em.g.const_weight(node.input(1).ok_or_else(|| em.err("B is missing"))?)
            .map(|w| w.name.clone())
            .unwrap_or_default();
    let zp: Vec<f32> = zero_points(em, id, n, nb, bits, node.input(3).is_some())?
        .into_iter()
        .map(f32::from)
        .collect();
    let (codes, s, zs) = super::cpu_nbits::layout(packed, scales, &zp, n as usize, nb as usize);
    let per_block = bs * bits / 8;
    let codes = em.prepared(
        &format!("{wname}.codes_kn"),
        DType::U8,
        &[nb, per_block, n],
        codes,
    );
    let s = em.prepared(
        &format!("{wname}.scales_kn"),
        DType::F32,
        &[nb, n],
        bytemuck::cast_slice(&s).to_vec(),
    );
    let zs = em.prepared(
        &format!("{wname}.neg_zero_scale_kn"),
        DType::F32,
        &[nb, n],
        bytemuck::cast_slice(&zs).to_vec(),
    );
    let bias = nbits_bias(em, id, &wname, n)?;
    // The last block is zero-padded in B; A is padded to match (zeros add nothing).
    let a = pad_last(em, a, nb * bs - k)?;
    super::cpu_nbits::emit(em, &a, &codes, &s, &zs, &bias, n, bits, bs, out)
}

/// MatMulNBits through the fused GPU kernel: zero points as one byte per block, the
/// bias as a vector (zeros when absent).
fn matmul_nbits_gpu(
    em: &mut Emitter,
    id: NodeId,
    a: &Val,
    out: &TensorType,
    (k, n, bits, bs): (u64, u64, u64, u64),
    packed: &[u8],
    sc: Val,
) -> Result<Val, EmitError> {
    let nb = k / bs;
    let (wname, zp, bias) = nbits_gpu_parts(em, id, n, nb, bits)?;
    let zpv = em.prepared(&format!("{wname}.zero_points"), DType::U8, &[n, nb], zp);
    // The codes as little-endian 32-bit words, in the order the kernel's lanes load them.
    let words = em.prepared(
        &format!("{wname}.words"),
        DType::I32,
        &[n, super::gpu_nbits::repacked_row_words(k, bits)],
        super::gpu_nbits::repack_words(packed, n, k, bits),
    );
    super::gpu_nbits::emit(em, a, &words, &sc, &zpv, &bias, n, k, bits, bs, out)
}

/// MatMulNBits through the tensor-core GPU kernel (4-bit codes in blocks of 32): codes,
/// scales and zero points re-laid out in 16-row tiles for it at compile time, the bias as
/// a vector (zeros when absent).
fn matmul_nbits_gpu_tc(
    em: &mut Emitter,
    id: NodeId,
    a: &Val,
    out: &TensorType,
    (k, n): (u64, u64),
    packed: &[u8],
    scales: &[f32],
) -> Result<Val, EmitError> {
    let nb = k / 32;
    let (wname, zp, bias) = nbits_gpu_parts(em, id, n, nb, 4)?;
    let l = super::gpu_nbits_tc::repack(packed, scales, &zp, n, k);
    let codes = em.prepared(
        &format!("{wname}.tile_codes"),
        DType::I32,
        &[n * k / 8],
        l.codes,
    );
    let sc = em.prepared(
        &format!("{wname}.tile_scales"),
        DType::F32,
        &[n * nb],
        l.scales,
    );
    let zs = em.prepared(
        &format!("{wname}.tile_zero_points"),
        DType::I32,
        &[n * nb / 4],
        l.zeros,
    );
    super::gpu_nbits_tc::emit(em, a, &codes, &sc, &zs, &bias, n, k, out)
}

/// What both GPU kernels take besides the codes and scales: B's name (the prefix of the
/// prepared constants), the zero points as one byte per block `[N, nb]`, and the bias.
fn nbits_gpu_parts(
    em: &mut Emitter,
    id: NodeId,
    n: u64,
    nb: u64,
    bits: u64,
) -> Result<(String, Vec<u8>, Val), EmitError> {
    let node = em.g.node(id);
    let wname =
        em.g.const_weight(node.input(1).ok_or_else(|| em.err("B is missing"))?)
            .map(|w| w.name.clone())
            .unwrap_or_default();
    let has_zp = node.input(3).is_some();
    let zp = zero_points(em, id, n, nb, bits, has_zp)?;
    let bias = nbits_bias(em, id, &wname, n)?;
    Ok((wname, zp, bias))
}

/// MatMulNBits' bias as a vector for the fused kernels: input 5, or zeros when absent.
fn nbits_bias(em: &mut Emitter, id: NodeId, wname: &str, n: u64) -> Result<Val, EmitError> {
    if em.g.node(id).input(5).is_some() {
        return em.input(id, 5);
    }
    Ok(em.prepared(
        &format!("{wname}.bias"),
        DType::F32,
        &[n],
        vec![0u8; 4 * n as usize],
    ))
}

/// Zero points unpacked to one code per block, row-major `[N, nb]` (default 2^(bits−1)).
fn zero_points(
    em: &Emitter,
    id: NodeId,
    n: u64,
    nb: u64,
    bits: u64,
    given: bool,
) -> Result<Vec<u8>, EmitError> {
    let mut zp = vec![1u8 << (bits - 1); (n * nb) as usize];
    if given {
        let z = em
            .const_i64(id, 3)
            .ok_or_else(|| em.err("zero points must be a constant"))?;
        let per_row = (nb * bits).div_ceil(8) as usize;
        for r in 0..n as usize {
            for blk in 0..nb as usize {
                let byte = *z
                    .get(r * per_row + if bits == 4 { blk / 2 } else { blk })
                    .ok_or_else(|| em.err("zero points are shorter than N × blocks"))?
                    as u8;
                zp[r * nb as usize + blk] = if bits == 4 {
                    (byte >> ((blk % 2) * 4)) & 0xF
                } else {
                    byte
                };
            }
        }
    }
    Ok(zp)
}

/// The shared tail of both MatMulNBits bodies: `acc + a·(q − zero_point)·scale` for the
/// unsigned code `q` (i8) and block arguments `[a, packed, scale, zero_point, acc]`.
fn dequantize_accumulate(b: &mut super::builder::Body, q: &str, x: &[String]) -> String {
    let qf = b.op(format!("arith.uitofp {q} : i8 to f32"));
    let c = b.op(format!("arith.subf {qf}, {} : f32", x[3]));
    let wv = b.op(format!("arith.mulf {c}, {} : f32", x[2]));
    let p = b.op(format!("arith.mulf {}, {wv} : f32", x[0]));
    b.op(format!("arith.addf {}, {p} : f32", x[4]))
}

/// `a` with `extra` zeros appended along its last dim.
fn pad_last(em: &mut Emitter, a: &Val, extra: u64) -> Result<Val, EmitError> {
    if extra == 0 {
        return Ok(a.clone());
    }
    let r = a.rank();
    let mut dims = a.dims().to_vec();
    let last = dims[r - 1]
        .known()
        .ok_or_else(|| em.err("K must be static"))?;
    dims[r - 1] = Dim::Known(last + extra);
    let to = ty(a.ty.dtype, dims);
    let zero = em.op("arith.constant 0.0 : f32");
    let idx: Vec<String> = (0..r).map(|_| em.fresh()).collect();
    let decl: Vec<String> = idx.iter().map(|i| format!("{i}: index")).collect();
    let mut hi = vec!["0".to_string(); r];
    hi[r - 1] = extra.to_string();
    let lo = vec!["0"; r];
    let ssa = em.op(format!(
        "tensor.pad {} low[{}] high[{}] {{\n  ^bb0({}):\n    tensor.yield {zero} : f32\n  }} : {} to {}",
        a.ssa,
        lo.join(", "),
        hi.join(", "),
        decl.join(", "),
        a.mlir_type(),
        tensor_type(&to)
    ));
    Ok(Val { ssa, ty: to })
}

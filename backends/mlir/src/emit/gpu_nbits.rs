//! MatMulNBits on the GPU: a hand-scheduled weight-only kernel with dequantization fused
//! in registers, written as `gpu.launch` in a private helper function that the module's
//! `@main` calls (the generic linalg lowering would give one thread per output with
//! uncoalesced row reads).
//!
//! Decode-time matrix–vector products are memory-bound, so the schedule is about reading
//! the packed weights once, coalesced and wide:
//! - one warp per output feature n, eight warps per block;
//! - lane l takes quantization blocks l, l+32, …: consecutive lanes read consecutive
//!   16-byte chunks of the row (`vector.load` with 16-byte alignment → `ld.global.v4`);
//! - the codes are unpacked and shifted by the zero point in registers, multiplied with
//!   the activations (`vector.deinterleave` splits even/odd elements for 4-bit pairs),
//!   summed, scaled once per block;
//! - a butterfly of `gpu.shuffle xor` sums the warp; lane 0 adds the bias and stores.
//!
//! Rows of A (batch × sequence) are a loop inside the warp: the warp's weight row stays
//! in L1 across them, so DRAM sees each weight byte once for any number of rows.

use super::builder::{Emitter, Val};
use super::layout::{collapse_leading, expand_to};
use super::EmitError;
use compc_ir::{DType, Dim, Shape, TensorType};

/// Warps (output features) per block.
const WARPS: u64 = 8;

/// Whether the fused kernel handles this shape: 4- or 8-bit codes in quantization blocks
/// whose bytes are whole 16-byte chunks, and K made of whole blocks.
pub fn supported(k: u64, bits: u64, block_size: u64) -> bool {
    (bits == 4 || bits == 8) && (block_size * bits / 8) % 16 == 0 && k % block_size == 0
}

/// Emits `out[m, n] = Σ_k a[m, k]·(q[n, k] − z[n, k/bs])·s[n, k/bs] (+ bias[n])`.
///
/// `bq` is the packed weight `[N, nb, bs·bits/8]` (i8), `scales` f32 `[N, nb]`, `zero`
/// the zero point per block as i8 `[N, nb]`, `bias` f32 `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    em: &mut Emitter,
    a: &Val,
    bq: &Val,
    scales: &Val,
    zero: &Val,
    bias: &Val,
    n: u64,
    k: u64,
    bits: u64,
    block_size: u64,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let lead = a.rank() - 1;
    let a2 = collapse_leading(em, a, lead)?;
    let a2 = if lead == 0 {
        // A vector: one row.
        let mut dims = vec![Dim::Known(1)];
        dims.extend_from_slice(a.dims());
        expand_to(em, &a2, &TensorType::new(DType::F32, Shape::Ranked(dims)))?
    } else {
        a2
    };
    let m_dim = a2.dims()[0].clone();
    let nb = k / block_size;
    let per_block = block_size * bits / 8;
    let name = format!("compc_nbits{bits}_n{n}_k{k}_bs{block_size}");
    let m_ty = match m_dim.known() {
        Some(m) => m.to_string(),
        None => "?".into(),
    };
    let a_ty = format!("tensor<{m_ty}x{k}xf32>");
    let o_ty = format!("tensor<{m_ty}x{n}xf32>");
    let call_name = format!("{name}_{}", if m_ty == "?" { "dyn" } else { &m_ty });
    em.add_helper(call_name.clone(), || {
        helper(&call_name, &m_ty, n, k, nb, per_block, bits, block_size)
    });
    // Destination-passing: @main allocates the result and views its tensors as buffers,
    // so bufferization adds no copy around the kernel.
    let mut views = Vec::new();
    for v in [&a2, bq, scales, zero, bias] {
        let t = v.mlir_type();
        let m = t.replacen("tensor<", "memref<", 1);
        let ssa = em.op(format!(
            "bufferization.to_buffer {} read_only : {t} to {m}",
            v.ssa
        ));
        views.push((ssa, m));
    }
    let o_mem = o_ty.replacen("tensor<", "memref<", 1);
    let alloc = if m_ty == "?" {
        let c0 = em.cidx(0);
        let m = em.op(format!("tensor.dim {}, {c0} : {a_ty}", a2.ssa));
        em.op(format!("memref.alloc({m}) : {o_mem}"))
    } else {
        em.op(format!("memref.alloc() : {o_mem}"))
    };
    let args: Vec<&str> = views.iter().map(|(s, _)| s.as_str()).collect();
    let tys: Vec<&str> = views.iter().map(|(_, t)| t.as_str()).collect();
    em.op_void(format!(
        "func.call @{call_name}({}, {alloc}) : ({}, {o_mem}) -> ()",
        args.join(", "),
        tys.join(", ")
    ));
    let ssa = em.op(format!(
        "bufferization.to_tensor {alloc} restrict writable : {o_mem} to {o_ty}"
    ));
    let mut od = vec![m_dim];
    od.push(Dim::Known(n));
    let r = Val {
        ssa,
        ty: TensorType::new(DType::F32, Shape::Ranked(od)),
    };
    expand_to(em, &r, out)
}

/// The helper function: one `gpu.launch` over buffers, the result written into `%om`.
#[allow(clippy::too_many_arguments)]
fn helper(
    name: &str,
    m_ty: &str,
    n: u64,
    k: u64,
    nb: u64,
    per_block: u64,
    bits: u64,
    bs: u64,
) -> String {
    let a_t = format!("{m_ty}x{k}xf32");
    let b_t = format!("{n}x{nb}x{per_block}xi8");
    let s_t = format!("{n}x{nb}xf32");
    let z_t = format!("{n}x{nb}xi8");
    let o_t = format!("{m_ty}x{n}xf32");
    let grid = n.div_ceil(WARPS);
    let chunks = per_block / 16;
    // Elements of A per 16-byte chunk of codes.
    let per_chunk = 16 * 8 / bits;
    let x_align = if k % 4 == 0 { 16 } else { 4 };
    let dot = if bits == 4 {
        format!(
            r#"            %lo = arith.andi %v, %mask : vector<16xi8>
            %hi = arith.shrui %v, %four : vector<16xi8>
            %lof = arith.uitofp %lo : vector<16xi8> to vector<16xf32>
            %hif = arith.uitofp %hi : vector<16xi8> to vector<16xf32>
            %lc = arith.subf %lof, %zv : vector<16xf32>
            %hc = arith.subf %hif, %zv : vector<16xf32>
            %xv = vector.load %am[%mi, %kb] {{alignment = {x_align}}} : memref<{a_t}>, vector<32xf32>
            %xe, %xo = vector.deinterleave %xv : vector<32xf32> -> vector<16xf32>
            %d1 = arith.mulf %lc, %xe : vector<16xf32>
            %d2 = vector.fma %hc, %xo, %d1 : vector<16xf32>"#
        )
    } else {
        format!(
            r#"            %qf = arith.uitofp %v : vector<16xi8> to vector<16xf32>
            %qc = arith.subf %qf, %zv : vector<16xf32>
            %xv = vector.load %am[%mi, %kb] {{alignment = {x_align}}} : memref<{a_t}>, vector<16xf32>
            %d2 = arith.mulf %qc, %xv : vector<16xf32>"#
        )
    };
    let shuffles: String = [16, 8, 4, 2, 1]
        .iter()
        .enumerate()
        .map(|(i, off)| {
            let prev = if i == 0 {
                "%acc".to_string()
            } else {
                format!("%red{}", i - 1)
            };
            format!(
                "        %off{i} = arith.constant {off} : i32\n        %sh{i}, %ok{i} = gpu.shuffle xor {prev}, %off{i}, %width : f32\n        %red{i} = arith.addf {prev}, %sh{i} : f32\n"
            )
        })
        .collect();
    format!(
        r#"func.func private @{name}(%am: memref<{a_t}>, %bm: memref<{b_t}>, %sm: memref<{s_t}>, %zm: memref<{z_t}>, %biasm: memref<{n}xf32>, %om: memref<{o_t}>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %am, %c0 : memref<{a_t}>
  %grid = arith.constant {grid} : index
  %threads = arith.constant {threads} : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %threads, %sy = %c1, %sz = %c1) {{
    %k0 = arith.constant 0 : index
    %k1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %warps = arith.constant {WARPS} : index
    %cn = arith.constant {n} : index
    %cnb = arith.constant {nb} : index
    %cchunks = arith.constant {chunks} : index
    %c16 = arith.constant 16 : index
    %cbs = arith.constant {bs} : index
    %cpc = arith.constant {per_chunk} : index
    %zero = arith.constant 0.0 : f32
    %mask = arith.constant dense<15> : vector<16xi8>
    %four = arith.constant dense<4> : vector<16xi8>
    %width = arith.constant 32 : i32
    %warp = arith.divui %tx, %c32 : index
    %lane = arith.remui %tx, %c32 : index
    %row0 = arith.muli %bx, %warps : index
    %row = arith.addi %row0, %warp : index
    %inside = arith.cmpi ult, %row, %cn : index
    scf.if %inside {{
      scf.for %mi = %k0 to %m step %k1 {{
        %acc = scf.for %blk = %lane to %cnb step %c32 iter_args(%acc0 = %zero) -> (f32) {{
          %sc = memref.load %sm[%row, %blk] : memref<{s_t}>
          %zq = memref.load %zm[%row, %blk] : memref<{z_t}>
          %zf = arith.uitofp %zq : i8 to f32
          %zv = vector.broadcast %zf : f32 to vector<16xf32>
          %kblk = arith.muli %blk, %cbs : index
          %part = scf.for %ch = %k0 to %cchunks step %k1 iter_args(%p0 = %zero) -> (f32) {{
            %boff = arith.muli %ch, %c16 : index
            %v = vector.load %bm[%row, %blk, %boff] {{alignment = 16}} : memref<{b_t}>, vector<16xi8>
            %koff = arith.muli %ch, %cpc : index
            %kb = arith.addi %kblk, %koff : index
{dot}
            %r = vector.reduction <add>, %d2 : vector<16xf32> into f32
            %p1 = arith.addf %p0, %r : f32
            scf.yield %p1 : f32
          }}
          %scaled = arith.mulf %part, %sc : f32
          %acc1 = arith.addf %acc0, %scaled : f32
          scf.yield %acc1 : f32
        }}
{shuffles}        %first = arith.cmpi eq, %lane, %k0 : index
        scf.if %first {{
          %bv = memref.load %biasm[%row] : memref<{n}xf32>
          %res = arith.addf %red4, %bv : f32
          memref.store %res, %om[%mi, %row] : memref<{o_t}>
        }}
      }}
    }}
    gpu.terminator
  }}
  return
}}
"#,
        threads = WARPS * 32,
    )
}

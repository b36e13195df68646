//! MatMulNBits on the GPU: a hand-scheduled weight-only kernel with dequantization fused
//! in registers, written as `gpu.launch` in a private helper function that the module's
//! `@main` calls (the generic linalg lowering would give one thread per output with
//! uncoalesced row reads).
//!
//! Decode-time matrix–vector products are memory-bound, so the schedule is about reading
//! the packed weights once with wide coalesced loads, many bytes in flight, and few
//! instructions per code (at batch 1 the unpacking costs about as much issue time as the
//! DRAM stream takes):
//! - a block of [`WARPS`] (or [`FEW_WARPS`], or [`BATCH_WARPS`] for the batched pass)
//!   warps computes [`ROWS`] output features; the warps split K into contiguous ranges
//!   of 128-word groups and add their partial sums through shared memory at the end
//!   (more warps per row keep more loads in flight than one warp per row could);
//! - the codes are repacked at compile time ([`repack_words`]) so that one 16-byte load
//!   per lane gives it words l, l+32, l+64, l+96 of a group: each warp-wide load is 512
//!   contiguous bytes, and the activations those words need are read coalesced too;
//! - each lane loads one scale and one zero point of the group's blocks, coalesced, and
//!   the lanes that need them get them by `gpu.shuffle idx` (a block's words sit on
//!   neighbouring lanes);
//! - a word is unpacked with one vector shift and mask (`vector<8xi32>`) and turned into
//!   floats without a conversion instruction: OR-ing a code into the mantissa of 2^23
//!   gives the float 2^23 + q exactly, and subtracting 2^23 + zero point leaves q − z;
//!   that is multiplied with the matching activations and summed, and the block scale is
//!   applied to the sum;
//! - a butterfly of `gpu.shuffle xor` sums each warp, shared memory sums the warps.
//!
//! On sm_90 and newer the kernel also takes part in programmatic dependent launch: it lets
//! the next kernel start early (`griddepcontrol.launch_dependents`), and it issues its
//! own first weight loads before waiting for the kernel before it
//! (`griddepcontrol.wait`), so the weight stream of one layer overlaps the tail of the
//! previous one. The weights never depend on an earlier kernel; the activations and the
//! output are touched only after the wait. The runtime launches kernels whose name starts
//! with [`GRID_WAIT_PREFIX`] with the matching launch attribute.
//!
//! Rows of A (batch × sequence) are a loop inside the block, [`BATCH`] rows per pass: a
//! pass streams the block's weights once, unpacks each word once and multiplies it with
//! every row of the pass. For 4-bit codes the batched pass runs on tensor cores instead
//! (`gpu_nbits_mma`), reading the same repacked words. Whole batches and the remaining
//! rows (one per pass) are two kernels, launched only when they have rows, so the
//! batch-1 kernel keeps its small register footprint.
//!
//! 4-bit codes in blocks of 32 whose shape tiles (N a multiple of 16, K of 128) take
//! `gpu_nbits_tc` instead, on tensor cores at every batch size.

use super::builder::{Emitter, Val};
use super::gpu_nbits_mma;
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;

/// Warps per block of the one-row kernel; they split K.
const WARPS: u64 = 4;
/// Warps per block of the batched kernel for 8-bit codes (4-bit ones take the tensor-core
/// pass of `gpu_nbits_mma`): one, which walks all of K itself. Its 8 rows of A times
/// [`ROWS`] features need 32 accumulators and 8 activation vectors per word, so it is at
/// the register limit either way; with 4 warps splitting K it also spilled, and (measured
/// while int4 batches still used this pass) the 8-layer int4 chains at batch 8 took
/// 0.159 ms (4096×4096) and 0.381 ms (11008×4096) on an H100, against 0.123 and 0.303 ms
/// with one warp (2 warps: 0.139 / 0.358; 3: 0.214 / 0.486).
const BATCH_WARPS: u64 = 1;
/// Warps per block of the one-row kernel when K is at most [`WARPS`] groups and N at most
/// [`FEW_ROWS`]: each warp then takes two groups. Measured on an H100, 8 chained
/// 4096×4096 int4 layers went from 45–46% to 55–56% of copy bandwidth with it, while the
/// 4096→11008 layers of the other chain were slower with it (64% against 66%); the
/// reason is not established (see the issue notes), so it is kept to the shapes measured.
const FEW_WARPS: u64 = 2;
/// Largest N that gets [`FEW_WARPS`].
const FEW_ROWS: u64 = 4096;
/// Output features per block.
const ROWS: u64 = 4;
/// Rows of A that share one pass over the weights (a decode batch); the rows beyond a
/// multiple of it take one pass each.
const BATCH: u64 = 8;
/// 32-bit words per group: one 16-byte load for each of the 32 lanes.
const GROUP_WORDS: u64 = 128;

/// Name prefix of kernels that wait on the previous kernel with `griddepcontrol.wait`:
/// the runtime launches them with programmatic stream serialization.
use compc_runtime::native::gpu::GRID_WAIT_PREFIX;

/// 32-bit words per quantization block.
fn block_words(bits: u64, block_size: u64) -> u64 {
    block_size * bits / 32
}

/// Whether the fused kernel handles this shape: 4- or 8-bit codes, K made of whole
/// quantization blocks, and blocks of 4 to 128 whole words that tile a 128-word group (so
/// a group's blocks fit one per lane for the scale shuffle).
pub fn supported(k: u64, bits: u64, block_size: u64) -> bool {
    let bw = block_words(bits, block_size);
    (bits == 4 || bits == 8)
        && block_size > 0
        && k.is_multiple_of(block_size)
        && (block_size * bits).is_multiple_of(32)
        && bw >= 4
        && GROUP_WORDS.is_multiple_of(bw)
}

/// Packed codes `[N, K·bits/8]` (bytes) → the kernel's layout `[N, G·128]` i32 words, G
/// = ⌈words/128⌉: within group g, lane l's four words `4l..4l+3` are the row's words
/// `128g + l + 32j`, j = 0..3; words past the row's end are zero (and masked).
pub fn repack_words(packed: &[u8], n: u64, k: u64, bits: u64) -> Vec<u8> {
    let words = (k * bits / 32) as usize;
    let groups = words.div_ceil(GROUP_WORDS as usize);
    let stride = groups * GROUP_WORDS as usize;
    let mut out = vec![0u8; n as usize * stride * 4];
    for row in 0..n as usize {
        let src = &packed[row * words * 4..(row + 1) * words * 4];
        let dst = &mut out[row * stride * 4..(row + 1) * stride * 4];
        for g in 0..groups {
            for lane in 0..32 {
                for j in 0..4 {
                    let w = g * 128 + lane + 32 * j;
                    if w < words {
                        let d = (g * 128 + 4 * lane + j) * 4;
                        dst[d..d + 4].copy_from_slice(&src[w * 4..w * 4 + 4]);
                    }
                }
            }
        }
    }
    out
}

/// Words per row in the repacked layout.
pub fn repacked_row_words(k: u64, bits: u64) -> u64 {
    (k * bits / 32).div_ceil(GROUP_WORDS) * GROUP_WORDS
}

/// 2^23: OR-ing a code q (below 2^23) into its mantissa gives the float 2^23 + q exactly.
const MAGIC: f32 = 8_388_608.0;

/// How a 32-bit word of codes becomes floats without a conversion instruction: code i is
/// `(word >> shifts[i]) & mask`, OR-ed into the bits of [`MAGIC`]; subtracting 2^23 + z
/// from that float leaves q − z exactly.
///
/// (A variant that ORs each code into a float 2^(23 − bit offset) in place, one shift per
/// word instead of one per code, has fewer instructions but measured slower on the
/// 11008-wide layers and faster on 4096×4096 ones; see the issue notes.)
struct Unpack {
    shifts: Vec<u32>,
    mask: u32,
}

impl Unpack {
    fn new(bits: u64) -> Unpack {
        let bits = bits as u32;
        Unpack {
            shifts: (0..32 / bits).map(|i| i * bits).collect(),
            mask: (1u32 << bits) - 1,
        }
    }

    /// Code `i` of `word` minus the zero point `z`, the way the kernel computes it.
    #[cfg(test)]
    fn centered(&self, word: u32, i: usize, z: f32) -> f32 {
        let q = (word >> self.shifts[i]) & self.mask;
        f32::from_bits(q | MAGIC.to_bits()) - (z + MAGIC)
    }
}

/// Emits `out[m, n] = Σ_k a[m, k]·(q[n, k] − z[n, k/bs])·s[n, k/bs] (+ bias[n])`.
///
/// `bq` is the packed weight as 32-bit words in the layout of [`repack_words`] (i32,
/// little-endian: code e of row word w is element w·32/bits + e, at bit e·bits), `scales`
/// f32 `[N, nb]`, `zero` the zero point per block as i8 `[N, nb]`, `bias` f32 `[N]`.
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
    let a2 = kernel_call::rows(em, a)?;
    let (m_ty, suffix) = kernel_call::m_text(&a2);
    let nb = k / block_size;
    let grid_wait = em.options().grid_wait;
    let prefix = if grid_wait {
        GRID_WAIT_PREFIX
    } else {
        "compc_"
    };
    let name = format!("{prefix}nbits{bits}_n{n}_k{k}_bs{block_size}_{suffix}");
    em.add_helper(name.clone(), || {
        helper(&name, &m_ty, n, k, nb, bits, block_size, grid_wait)
    });
    kernel_call::call(em, &name, &a2, &[bq, scales, zero, bias], n, out)
}

/// The helper function: one `gpu.launch` over buffers, the result written into `%om`.
/// It is written on buffers already, and it uses ops that bufferization's deallocation
/// pass rejects (workgroup memory, `gpu.barrier`, `nvvm.griddepcontrol`), so the GPU
/// lowering sets it aside while it bufferizes the rest (`gpu::hand_kernels`).
#[allow(clippy::too_many_arguments)]
fn helper(
    name: &str,
    m_ty: &str,
    n: u64,
    k: u64,
    nb: u64,
    bits: u64,
    bs: u64,
    grid_wait: bool,
) -> String {
    let e = 32 / bits; // codes per word
    let words = k / e;
    let groups = words.div_ceil(GROUP_WORDS);
    let warps = |mb: u64| {
        if mb > 1 {
            BATCH_WARPS
        } else if groups <= WARPS && n <= FEW_ROWS {
            groups.min(FEW_WARPS)
        } else {
            groups.min(WARPS)
        }
    };
    let bw = block_words(bits, bs);
    let a_t = format!("{m_ty}x{k}xf32");
    let b_t = format!("{n}x{}xi32", groups * GROUP_WORDS);
    let s_t = format!("{n}x{nb}xf32");
    let z_t = format!("{n}x{nb}xi8");
    let o_t = format!("{m_ty}x{n}xf32");
    let red_t = |mb: u64| {
        format!(
            "memref<{}xf32, #gpu.address_space<workgroup>>",
            warps(mb) * ROWS * mb
        )
    };
    let grid = n.div_ceil(ROWS);
    let unpack = Unpack::new(bits);
    let vi = format!("vector<{e}xi32>");
    let (launch_dependents, wait) = if grid_wait {
        (
            "    nvvm.griddepcontrol launch_dependents\n".to_string(),
            "        nvvm.griddepcontrol wait\n".to_string(),
        )
    } else {
        (String::new(), String::new())
    };
    let chunk = |mb: u64| -> String {
        chunk_loop(&ChunkText {
            mb,
            a_t: &a_t,
            b_t: &b_t,
            s_t: &s_t,
            z_t: &z_t,
            o_t: &o_t,
            red_t: &red_t(mb),
            n,
            e,
            wait: &wait,
        })
    };
    let mut rows = String::new();
    for r in 0..ROWS {
        rows += &format!(
            r#"    %rraw{r} = arith.addi %rowbase, %roff{r} : index
    %rin{r} = arith.cmpi ult, %rraw{r}, %cn : index
    %row{r} = arith.select %rin{r}, %rraw{r}, %k0 : index
"#
        );
    }
    // One launch per kind of pass: whole batches of BATCH rows, then the remaining rows
    // one at a time. They are separate kernels so that each gets its own register
    // allocation (the batched one needs many more), and the host skips a launch that
    // would have no rows.
    let launch = |mb: u64| -> String {
        format!(
            r#"    %threads{mb} = arith.constant {threads} : index
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %threads{mb}, %sy = %c1, %sz = %c1) workgroup(%red : {red_t}) {{
{launch_dependents}    %k0 = arith.constant 0 : index
    %k1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %c4 = arith.constant 4 : index
    %cgw = arith.constant {GROUP_WORDS} : index
    %cgroups = arith.constant {groups} : index
    %cperwarp = arith.constant {per_warp} : index
    %cwords = arith.constant {words} : index
    %ce = arith.constant {e} : index
    %cbw = arith.constant {bw} : index
    %cbpg = arith.constant {bpg} : index
    %cnb = arith.constant {nb} : index
    %cn = arith.constant {n} : index
    %crows = arith.constant {ROWS} : index
    %cwarps = arith.constant {warps} : index
    %cmb{mb} = arith.constant {mb} : index
{consts}    %zero = arith.constant 0.0 : f32
    %shifts = arith.constant dense<[{shifts}]> : {vi}
    %maskv = arith.constant dense<{mask}> : {vi}
    %magicv = arith.constant dense<{magic_bits}> : {vi}
    %magicf = arith.constant {magic:?} : f32
    %width = arith.constant 32 : i32
{offs}    %warp = arith.divui %tx, %c32 : index
    %lane = arith.remui %tx, %c32 : index
    %rowbase = arith.muli %bx, %crows : index
{rows}    %first = arith.cmpi eq, %lane, %k0 : index
    %gbeg = arith.muli %warp, %cperwarp : index
    %gendraw = arith.addi %gbeg, %cperwarp : index
    %gend = arith.minui %gendraw, %cgroups : index
    %lane4 = arith.muli %lane, %c4 : index
    %lanebin = arith.cmpi ult, %lane, %cbpg : index
{srcl}{bounds}{chunk}    gpu.terminator
    }}
"#,
            bpg = GROUP_WORDS / bw,
            red_t = red_t(mb),
            warps = warps(mb),
            per_warp = groups.div_ceil(warps(mb)),
            threads = warps(mb) * 32,
            shifts = unpack
                .shifts
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            mask = unpack.mask,
            magic_bits = MAGIC.to_bits(),
            magic = MAGIC,
            bounds = if mb == 1 {
                "    %lo1 = arith.addi %mfull, %k0 : index\n    %hi1 = arith.addi %m, %k0 : index\n"
                    .to_string()
            } else {
                format!("    %lo{mb} = arith.constant 0 : index\n    %hi{mb} = arith.addi %mfull, %k0 : index\n")
            },
            chunk = chunk(mb),
            consts = (0..4)
                .map(|j| format!("    %joff{j} = arith.constant {} : index\n", 32 * j))
                .chain((0..ROWS).map(|r| format!("    %roff{r} = arith.constant {r} : index\n")))
                .chain((0..mb).map(|b| format!("    %boff{b} = arith.constant {b} : index\n")))
                .collect::<String>(),
            // The lane that holds the scale of word slot j: (lane + 32j) / words per block.
            srcl = (0..4)
                .map(|j| format!(
                    "    %lanej{j} = arith.addi %lane, %joff{j} : index\n    %srcl{j} = arith.divui %lanej{j}, %cbw : index\n"
                ))
                .collect::<String>(),
            offs = [16, 8, 4, 2, 1]
                .iter()
                .enumerate()
                .map(|(i, o)| format!("    %off{i} = arith.constant {o} : i32\n"))
                .collect::<String>(),
        )
    };
    // Whole batches of 4-bit codes go through tensor cores (`gpu_nbits_mma`), on the same
    // repacked weights; other widths keep the batched pass above.
    let launch_full = if gpu_nbits_mma::applies(bits, groups) {
        gpu_nbits_mma::launch(&gpu_nbits_mma::MmaLaunch {
            a_t: &a_t,
            b_t: &b_t,
            s_t: &s_t,
            z_t: &z_t,
            o_t: &o_t,
            n,
            words,
            groups,
            block_words: bw,
            launch_dependents: &launch_dependents,
            wait: &wait,
        })
    } else {
        launch(BATCH)
    };
    format!(
        r#"func.func private @{name}(%am: memref<{a_t}>, %bm: memref<{b_t}>, %sm: memref<{s_t}>, %zm: memref<{z_t}>, %biasm: memref<{n}xf32>, %om: memref<{o_t}>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %am, %c0 : memref<{a_t}>
  %grid = arith.constant {grid} : index
  %cbatch = arith.constant {BATCH} : index
  %mtail = arith.remui %m, %cbatch : index
  %mfull = arith.subi %m, %mtail : index
  %hasfull = arith.cmpi ugt, %mfull, %c0 : index
  %hastail = arith.cmpi ugt, %mtail, %c0 : index
  scf.if %hasfull {{
{launch_full}  }}
  scf.if %hastail {{
{launch_one}  }}
  return
}}
"#,
        launch_one = launch(1),
    )
}

/// What [`chunk_loop`] needs of the helper.
struct ChunkText<'a> {
    /// Rows of A per pass over the weights.
    mb: u64,
    a_t: &'a str,
    b_t: &'a str,
    s_t: &'a str,
    z_t: &'a str,
    o_t: &'a str,
    red_t: &'a str,
    n: u64,
    /// Codes per 32-bit word.
    e: u64,
    /// `griddepcontrol.wait`, or nothing.
    wait: &'a str,
}

/// The loop over A's rows `mb` at a time, from `%lo{mb}` to `%hi{mb}`: each pass streams
/// the block's weights once, dequantizes each word once, and multiplies it with `mb`
/// rows of activations (so at batch 8 the weights are not read 8 times).
fn chunk_loop(c: &ChunkText) -> String {
    let ChunkText {
        mb,
        a_t,
        b_t,
        s_t,
        z_t,
        o_t,
        red_t,
        n,
        e,
        wait,
    } = *c;
    let vi = format!("vector<{e}xi32>");
    let vf = format!("vector<{e}xf32>");
    let accs = (ROWS * mb) as usize;
    // One group per iteration: first every weight load of the group (a 16-byte word load,
    // a scale and a zero point per row), then the activations and the arithmetic.
    let mut body = String::new();
    for r in 0..ROWS {
        body += &format!(
            r#"        %cw{r} = vector.load %bm[%row{r}, %woff] {{alignment = 16}} : memref<{b_t}>, vector<4xi32>
        %s{r} = memref.load %sm[%row{r}, %blkc] : memref<{s_t}>
        %zq{r} = memref.load %zm[%row{r}, %blkc] : memref<{z_t}>
"#
        );
    }
    body += wait;
    for r in 0..ROWS {
        body += &format!(
            r#"        %zf{r} = arith.uitofp %zq{r} : i8 to f32
        %zmag{r} = arith.addf %zf{r}, %magicf : f32
        %sv{r} = arith.select %blkin, %s{r}, %zero : f32
"#
        );
    }
    for j in 0..4u64 {
        body += &format!(
            r#"        %w{j} = arith.addi %gw, %lanej{j} : index
        %in{j} = arith.cmpi ult, %w{j}, %cwords : index
        %wc{j} = arith.select %in{j}, %w{j}, %k0 : index
        %kx{j} = arith.muli %wc{j}, %ce : index
        %src{j} = arith.index_cast %srcl{j} : index to i32
"#
        );
        for b in 0..mb {
            body += &format!(
                "        %x{j}_{b} = vector.load %am[%mr{b}, %kx{j}] {{alignment = 16}} : memref<{a_t}>, {vf}\n"
            );
            for i in 0..e {
                body += &format!(
                    "        %xe{j}_{b}_{i} = vector.extract %x{j}_{b}[{i}] : f32 from {vf}\n"
                );
            }
        }
        for r in 0..ROWS {
            body += &format!(
                r#"        %sj{r}_{j}, %oks{r}_{j} = gpu.shuffle idx %sv{r}, %src{j}, %width : f32
        %zj{r}_{j}, %okz{r}_{j} = gpu.shuffle idx %zmag{r}, %src{j}, %width : f32
        %wd{r}_{j} = vector.extract %cw{r}[{j}] : i32 from vector<4xi32>
        %wv{r}_{j} = vector.broadcast %wd{r}_{j} : i32 to {vi}
        %sh{r}_{j} = arith.shrui %wv{r}_{j}, %shifts : {vi}
        %q{r}_{j} = arith.andi %sh{r}_{j}, %maskv : {vi}
        %qm{r}_{j} = arith.ori %q{r}_{j}, %magicv : {vi}
        %qf{r}_{j} = arith.bitcast %qm{r}_{j} : {vi} to {vf}
        %zv{r}_{j} = vector.broadcast %zj{r}_{j} : f32 to {vf}
        %qc{r}_{j} = arith.subf %qf{r}_{j}, %zv{r}_{j} : {vf}
        %sz{r}_{j} = arith.select %in{j}, %sj{r}_{j}, %zero : f32
"#
            );
            for i in 0..e {
                body += &format!(
                    "        %qe{r}_{j}_{i} = vector.extract %qc{r}_{j}[{i}] : f32 from {vf}\n"
                );
            }
            // Σ_e (q_e − z)·x_e as a chain of multiply-adds, then the block scale: with
            // the `contract` flags LLVM fuses each multiply and add into one
            // `fma.rn.f32` (without them NVPTX emits `mul.rn` and `add.rn`).
            for b in 0..mb {
                body += &format!(
                    "        %p{r}_{j}_{b}_0 = arith.mulf %qe{r}_{j}_0, %xe{j}_{b}_0 fastmath<contract> : f32\n"
                );
                for i in 1..e {
                    body += &format!(
                        "        %pm{r}_{j}_{b}_{i} = arith.mulf %qe{r}_{j}_{i}, %xe{j}_{b}_{i} fastmath<contract> : f32\n        %p{r}_{j}_{b}_{i} = arith.addf %p{r}_{j}_{b}_{im}, %pm{r}_{j}_{b}_{i} fastmath<contract> : f32\n",
                        im = i - 1
                    );
                }
                body += &format!(
                    "        %m{r}_{j}_{b} = arith.mulf %p{r}_{j}_{b}_{last}, %sz{r}_{j} fastmath<contract> : f32\n",
                    last = e - 1
                );
            }
        }
    }
    let mut yields = Vec::new();
    let mut inits = Vec::new();
    for r in 0..ROWS {
        for b in 0..mb {
            let mut prev = format!("%acc{r}_{b}");
            inits.push(format!("%acc{r}_{b} = %zero"));
            for j in 0..4 {
                body += &format!(
                    "        %t{r}_{b}_{j} = arith.addf {prev}, %m{r}_{j}_{b} fastmath<contract> : f32\n"
                );
                prev = format!("%t{r}_{b}_{j}");
            }
            yields.push(prev);
        }
    }
    let f32s = vec!["f32"; accs].join(", ");
    // Each warp's partial sums: butterfly within the warp, lane 0 writes them to shared
    // memory; after a barrier, thread t < ROWS·mb adds the warps' sums for row t / mb of
    // the weights and row t mod mb of A, and the bias.
    let mut tail = String::new();
    for r in 0..ROWS {
        for b in 0..mb {
            let a = r * mb + b;
            let mut prev = format!("%parts#{a}");
            for i in 0..5 {
                tail += &format!(
                    "      %xs{a}_{i}, %ok{a}_{i} = gpu.shuffle xor {prev}, %off{i}, %width : f32\n      %red{a}_{i} = arith.addf {prev}, %xs{a}_{i} : f32\n"
                );
                prev = format!("%red{a}_{i}");
            }
            tail += &format!(
                r#"      scf.if %first {{
        %soff{a} = arith.constant {a} : index
        %slot{a} = arith.addi %warpslot, %soff{a} : index
        memref.store {prev}, %red[%slot{a}] : {red_t}
      }}
"#
            );
        }
    }
    let rows_of_a = (0..mb)
        .map(|b| format!("      %mr{b} = arith.addi %mc, %boff{b} : index\n"))
        .collect::<String>();
    format!(
        r#"    scf.for %mc = %lo{mb} to %hi{mb} step %cmb{mb} {{
      %cslots = arith.constant {slots} : index
      %warpslot = arith.muli %warp, %cslots : index
{rows_of_a}      %parts:{accs} = scf.for %g = %gbeg to %gend step %k1 iter_args({inits}) -> ({f32s}) {{
        %gw = arith.muli %g, %cgw : index
        %woff = arith.addi %gw, %lane4 : index
        %gblk = arith.muli %g, %cbpg : index
        %blk = arith.addi %gblk, %lane : index
        %blkok = arith.cmpi ult, %blk, %cnb : index
        %blkin = arith.andi %lanebin, %blkok : i1
        %blkc = arith.select %blkin, %blk, %k0 : index
{body}        scf.yield {yields} : {f32s}
      }}
{tail}      gpu.barrier
      %isout = arith.cmpi ult, %tx, %cslots : index
      scf.if %isout {{
        %ofeat = arith.divui %tx, %cmb{mb} : index
        %oa = arith.remui %tx, %cmb{mb} : index
        %orow = arith.addi %rowbase, %ofeat : index
        %om_row = arith.addi %mc, %oa : index
        %orowok = arith.cmpi ult, %orow, %cn : index
        scf.if %orowok {{
          %bv = memref.load %biasm[%orow] : memref<{n}xf32>
          %tot = scf.for %wi = %k0 to %cwarps step %k1 iter_args(%tacc = %bv) -> (f32) {{
            %wslot = arith.muli %wi, %cslots : index
            %slot = arith.addi %wslot, %tx : index
            %pv = memref.load %red[%slot] : {red_t}
            %tn = arith.addf %tacc, %pv : f32
            scf.yield %tn : f32
          }}
          memref.store %tot, %om[%om_row, %orow] : memref<{o_t}>
        }}
      }}
      gpu.barrier
    }}
"#,
        slots = ROWS * mb,
        yields = yields.join(", "),
        inits = inits.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacked_lanes_hold_words_l_plus_32j_of_their_group() {
        // K = 1280 int4 codes: 160 words per row, so the second group is partly padding.
        let (n, k, bits) = (3u64, 1280u64, 4u64);
        let words = (k * bits / 32) as usize;
        let packed: Vec<u8> = (0..n as usize * words * 4)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        let out = repack_words(&packed, n, k, bits);
        let stride = repacked_row_words(k, bits) as usize;
        assert_eq!(stride, 256);
        assert_eq!(out.len(), n as usize * stride * 4);
        let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        for row in 0..n as usize {
            for g in 0..2 {
                for lane in 0..32 {
                    for j in 0..4 {
                        let got = word(&out, row * stride + g * 128 + 4 * lane + j);
                        let w = g * 128 + lane + 32 * j;
                        let want = if w < words {
                            word(&packed, row * words + w)
                        } else {
                            0
                        };
                        assert_eq!(got, want, "row {row} group {g} lane {lane} slot {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_code_of_a_word_unpacks_to_its_value_minus_the_zero_point() {
        for bits in [4u32, 8] {
            let unpack = Unpack::new(bits as u64);
            let mask = (1u32 << bits) - 1;
            for word in [
                0u32,
                u32::MAX,
                0x89ab_cdef,
                0x1234_5678,
                0xf0f0_0f0f,
                0x8000_0001,
            ] {
                for i in 0..(32 / bits) as usize {
                    let q = (word >> (bits as usize * i)) & mask;
                    for z in [0u32, 1, 8, mask] {
                        assert_eq!(
                            unpack.centered(word, i, z as f32),
                            q as f32 - z as f32,
                            "{bits}-bit word {word:#x} code {i} zero point {z}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_scale_of_every_word_slot_is_on_a_lane_of_the_group() {
        // Lane m loads the scale of the group's block m; the word of slot j on lane l is
        // in block (l + 32j) / block_words, which must be a lane.
        for (bits, bs) in [(4, 32), (4, 64), (4, 128), (8, 16), (8, 32), (8, 128)] {
            assert!(supported(4096, bits, bs), "{bits}-bit, block {bs}");
            let bw = block_words(bits, bs);
            for lane in 0..32 {
                for j in 0..4 {
                    let w = lane + 32 * j;
                    assert!(w / bw < 32 && w / bw < GROUP_WORDS / bw);
                }
            }
        }
        assert!(
            !supported(4096, 4, 16),
            "2-word blocks do not fit one per lane"
        );
        assert!(!supported(4096, 3, 32));
    }
}

//! MatMulNBits on the GPU for 4-bit codes in blocks of 32, on tensor cores at every batch
//! size, with the weights re-laid out at compile time in 16-row tiles ([`repack`]).
//!
//! At batch 1 the unpacking, not the DRAM stream, limits the CUDA-core kernel of
//! [`super::gpu_nbits`]: about four instructions per code. Here a lane turns a 32-bit word
//! of codes into the four f16x2 registers of one `mma.sync.m16n8k16` A fragment with four
//! mask-and-OR (`lop3`) and four f16x2 subtractions (1.25 instructions per code with the
//! mma), the zero point subtracted exactly in f16:
//! - `0x6400 | q` is the half 1024 + q, so (1024 + q) − (1024 + z) = q − z;
//! - the odd codes sit 4 bits higher: (1024 + 16q)/16 − (64 + z) = q − z in one f16x2
//!   multiply-add.
//!
//! The trick that makes one mma useful at batch 1: a super-step is 128 values of K, four
//! quantization blocks of 32, for one 16-row tile, eight mmas. Each mma's 16 values of K
//! are four of each block (K index `ss·128 + (kk/4)·32 + 4m + kk mod 4` for mma m and
//! mma column kk), and B's eight columns are (block j, part p): the activation's f16 high
//! part (p = 0) or the f16 rounding of the rest (p = 1) where kk is in block j, zero
//! elsewhere. D[r][2j] + D[r][2j+1] is then row r's dot product with block j after eight
//! mmas, and one f32 multiply-add per block applies its scale. Keeping both f16 parts
//! keeps about 22 bits of each activation.
//!
//! Layout per unit u = tile·S + ss (S = K/128), lane l = 4·gid + tig:
//! - codes: 256 words at `256u`; lane l's word for mma m (0..8) is at
//!   `256u + 128·(m/4) + 4l + m mod 4`, so a warp's two 16-byte loads are 512 contiguous
//!   bytes each; code i of the word is (row, kk) = (gid, 2tig), (gid+8, 2tig),
//!   (gid, 2tig+8), (gid+8, 2tig+8) for i = 0..4, and the same with kk + 1 for i = 4..8;
//! - scales: 64 floats at `64u`; lane l's pair at `64u + 2l` is (row gid, row gid + 8) of
//!   block tig;
//! - zero points: 16 words at `16u`; word `2·gid + b` holds the bytes (row gid, block b),
//!   (gid + 8, b), (gid, b + 2), (gid + 8, b + 2), the four a lane with tig / 2 = b needs.
//!
//! Only lanes whose gid / 2 is tig / 2 (B's first register) or 2 + tig / 2 (its second)
//! hold activations. Each warp converts a super-step's 128 activations (per row of A) once,
//! one 16-byte load and one 16-byte shared-memory store per lane, into its own slots in
//! B-fragment order, and every lane then reads its fragments with one 4-byte load per mma
//! (loading and converting them per lane from global memory cost more than the mmas).
//!
//! Blocks take two tiles (the tiles share the fragments). The one-row kernel has 16 warps
//! splitting K, one super-step at a time, the first one's loads issued before
//! `griddepcontrol.wait`; the batched kernel (8 rows of A per pass over the weights) has 8
//! warps, unpacks each word once and runs one mma per row.
//!
//! At batch 1 each word's unpacking and its mma are one inline PTX block
//! ([`word_mma_ptx`]; the batched kernel unpacks each word in one block too,
//! [`word_unpack_ptx`]), so they stay interleaved, and a warp's activations travel with its
//! chunk of weights ([`Schedule::carries_x`]), so they are not queued behind them. Every
//! thread loads the bias of its output row before the arithmetic: loaded after the
//! reduction, it put a DRAM round trip at the end of every layer.
//!
//! Measured on an H100 with the bench's 8-layer int4 chains (`benches/native_gpu.rs`):
//! batch 1 reads the weights at 70.1–70.3% of copy bandwidth on 4096×4096 (55.0–55.2%
//! with the CUDA-core kernel) and 77.4–77.7% on 4096→11008→4096 (66.4–66.6%); batch 8
//! takes 0.083 ms (0.111) and 0.207 ms (0.282).

use super::builder::{Emitter, Val};
use super::gpu_nbits_mma::{HALF_1024_PAIR, HIGH_CODES, LOW_CODES};
use super::kernel_call;
use super::EmitError;
use compc_ir::TensorType;
use compc_runtime::native::gpu::GRID_WAIT_PREFIX;

/// Output features per mma tile.
const TILE: u64 = 16;
/// Values of K per super-step: four blocks of [`BLOCK`].
const STEP: u64 = 128;
/// The quantization block size this layout is for.
const BLOCK: u64 = 32;
/// Warps of the one-row kernel (each takes super-steps `warp, warp + W, …`). With 32 the
/// kernel is held to 64 registers and spills (about 120 are live); 16 measured best.
const ONE_ROW_WARPS: u64 = 16;
/// Warps of the batched kernel.
const BATCH_WARPS: u64 = 8;
/// Tiles per block (when N has an even number of tiles): the tiles share the activation
/// fragments. One tile per block doubles the blocks, and at about 120 registers they
/// no longer fit in one wave.
const TILES: u64 = 2;
/// Rows of A per pass of the batched kernel.
const BATCH: u64 = 8;
/// Two halves of −64.0; OR-ing 16·z into one gives −(64 + z).
const HALF_MINUS_64_PAIR: u32 = 0xD400_D400;

/// f16 1/16 (0x2C00) in both halves: the multiplier of the codes that sit 4 bits higher.
const HALF_SIXTEENTH_PAIR: u32 = 0x2C00_2C00;

/// PTX that unpacks the word of codes `w` into the four f16x2 registers `a` of an A
/// fragment, the zero points `hz` subtracted exactly in f16 (the arithmetic the module
/// documentation describes); it uses the scratch registers `w8` and `s16`, which the caller declares.
fn unpack_ptx(w: &str, hz: [&str; 4], a: [&str; 4]) -> String {
    let ([a0, a1, a2, a3], [z0, z1, z2, z3]) = (a, hz);
    format!(
        "shr.b32 w8, {w}, 8; \
         lop3.b32 {a0}, {w}, {lo:#010X}, {magic:#010X}, 0xEA; \
         lop3.b32 {a1}, {w}, {hi:#010X}, {magic:#010X}, 0xEA; \
         lop3.b32 {a2}, w8, {lo:#010X}, {magic:#010X}, 0xEA; \
         lop3.b32 {a3}, w8, {hi:#010X}, {magic:#010X}, 0xEA; \
         mov.b32 s16, {sixteenth:#010X}; \
         sub.f16x2 {a0}, {a0}, {z0}; fma.rn.f16x2 {a1}, {a1}, s16, {z1}; \
         sub.f16x2 {a2}, {a2}, {z2}; fma.rn.f16x2 {a3}, {a3}, s16, {z3}; ",
        lo = LOW_CODES,
        hi = HIGH_CODES,
        magic = HALF_1024_PAIR,
        sixteenth = HALF_SIXTEENTH_PAIR,
    )
}

/// The PTX of one word of codes to one mma at batch 1: [`unpack_ptx`] and the mma, as one
/// side-effecting `llvm.inline_asm`. Operands: D (0–3), the word (4), the four zero-point
/// pairs (5–8), B (9, 10), C (11–14).
///
/// Why one block: given the unpacking as separate ops, LLVM hoists a whole super-step's
/// unpacking (both tiles) above its mmas. Kept next to its mma, each word's arithmetic
/// interleaves with the tensor-core chain: on an H100, the 8-layer 4096×4096 chain went
/// from 64.0–64.4% to 67.3–67.5% of copy bandwidth and the 4096→11008→4096 chain from
/// 68.2–68.5% to 71.7–72.0% (ptxas still gives the kernel about 128 registers).
fn word_mma_ptx() -> String {
    format!(
        "{{ .reg .b32 a0, a1, a2, a3, w8, s16; {}\
         mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 \
         {{$0, $1, $2, $3}}, {{a0, a1, a2, a3}}, {{$9, $10}}, {{$11, $12, $13, $14}}; }}",
        unpack_ptx("$4", ["$5", "$6", "$7", "$8"], ["a0", "a1", "a2", "a3"])
    )
}

/// The PTX of one word of codes to an A fragment, for the batched kernel (which runs one
/// mma per row of A on it): [`unpack_ptx`] as one side-effecting `llvm.inline_asm`, so the
/// words are unpacked in order next to their mmas. Operands: the fragment (0–3), the
/// word (4), the four zero-point pairs (5–8). At batch 8 on an H100: 0.0856 → 0.0833 ms
/// on the 4096×4096 chain, 0.2164 → 0.2074 ms on 4096→11008→4096.
fn word_unpack_ptx() -> String {
    format!(
        "{{ .reg .b32 w8, s16; {}}}",
        unpack_ptx("$4", ["$5", "$6", "$7", "$8"], ["$0", "$1", "$2", "$3"])
    )
}

/// Whether this kernel takes the shape: 4-bit codes in blocks of 32, whole tiles of N and
/// whole super-steps of K.
pub fn applies(n: u64, k: u64, bits: u64, block_size: u64) -> bool {
    bits == 4
        && block_size == BLOCK
        && n > 0
        && k > 0
        && n.is_multiple_of(TILE)
        && k.is_multiple_of(STEP)
}

/// The weights in the kernel's layout (little-endian bytes): codes as i32 words, scales
/// as f32, zero points as i32 words of four bytes.
pub struct TileLayout {
    pub codes: Vec<u8>,
    pub scales: Vec<u8>,
    pub zeros: Vec<u8>,
}

/// Re-lays out MatMulNBits' packed codes `[N, K/2]` (code k of a row at bits 4·(k mod 2)
/// of byte k/2), scales `[N, K/32]` and zero points `[N, K/32]` (one byte each) for the
/// kernel. The caller checks [`applies`].
pub fn repack(packed: &[u8], scales: &[f32], zeros: &[u8], n: u64, k: u64) -> TileLayout {
    let (n, k) = (n as usize, k as usize);
    let (s_count, tiles, nb) = (k / STEP as usize, n / TILE as usize, k / BLOCK as usize);
    let code = |r: usize, kk: usize| -> u32 {
        ((packed[r * k / 2 + kk / 2] >> (4 * (kk % 2))) & 15) as u32
    };
    let mut codes = vec![0u32; n * k / 8];
    let mut sc = vec![0f32; n * nb];
    let mut zw = vec![0u32; n * nb / 4];
    for t in 0..tiles {
        for ss in 0..s_count {
            let u = t * s_count + ss;
            for lane in 0..32 {
                let (g, q) = (lane / 4, lane % 4);
                let r = t * 16 + g;
                for m in 0..8 {
                    let kof = |kk: usize| ss * 128 + (kk / 4) * 32 + 4 * m + kk % 4;
                    let nib = [
                        code(r, kof(2 * q)),
                        code(r + 8, kof(2 * q)),
                        code(r, kof(2 * q + 8)),
                        code(r + 8, kof(2 * q + 8)),
                        code(r, kof(2 * q + 1)),
                        code(r + 8, kof(2 * q + 1)),
                        code(r, kof(2 * q + 9)),
                        code(r + 8, kof(2 * q + 9)),
                    ];
                    let w = nib
                        .iter()
                        .enumerate()
                        .fold(0u32, |w, (i, c)| w | c << (4 * i));
                    codes[256 * u + 128 * (m / 4) + 4 * lane + m % 4] = w;
                }
                sc[64 * u + 2 * lane] = scales[r * nb + ss * 4 + q];
                sc[64 * u + 2 * lane + 1] = scales[(r + 8) * nb + ss * 4 + q];
            }
            for g in 0..8 {
                let r = t * 16 + g;
                for b in 0..2 {
                    let z = |row: usize, blk: usize| zeros[row * nb + ss * 4 + blk] as u32;
                    zw[16 * u + 2 * g + b] =
                        z(r, b) | z(r + 8, b) << 8 | z(r, b + 2) << 16 | z(r + 8, b + 2) << 24;
                }
            }
        }
    }
    TileLayout {
        codes: bytemuck::cast_slice(&codes).to_vec(),
        scales: bytemuck::cast_slice(&sc).to_vec(),
        zeros: bytemuck::cast_slice(&zw).to_vec(),
    }
}

/// Emits `out[m, n] = Σ_k a[m, k]·(q[n, k] − z[n, k/32])·s[n, k/32] (+ bias[n])` from the
/// buffers of [`repack`] (`codes` i32 `[N·K/8]`, `scales` f32 `[N·K/32]`, `zeros` i32
/// `[N·K/128]`) and `bias` f32 `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    em: &mut Emitter,
    a: &Val,
    codes: &Val,
    scales: &Val,
    zeros: &Val,
    bias: &Val,
    n: u64,
    k: u64,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let a2 = kernel_call::rows(em, a)?;
    let (m_ty, suffix) = kernel_call::m_text(&a2);
    let grid_wait = em.options().grid_wait;
    let prefix = if grid_wait {
        GRID_WAIT_PREFIX
    } else {
        "compc_"
    };
    let name = format!("{prefix}nbits4tc_n{n}_k{k}_{suffix}");
    em.add_helper(name.clone(), || helper(&name, &m_ty, n, k, grid_wait));
    kernel_call::call(em, &name, &a2, &[codes, scales, zeros, bias], n, out)
}

/// Names and types the kernel text shares.
struct Dims {
    n: u64,
    /// Super-steps per row.
    steps: u64,
    a_t: String,
    b_t: String,
    s_t: String,
    z_t: String,
    o_t: String,
}

/// One kernel's schedule: rows of A per pass, tiles per block, warps per block.
#[derive(Clone, Copy)]
struct Schedule {
    mb: u64,
    tiles: u64,
    warps: u64,
}

impl Schedule {
    fn one_row(sh: &Dims) -> Schedule {
        Schedule {
            mb: 1,
            tiles: tiles_for(sh),
            warps: ONE_ROW_WARPS.min(sh.steps),
        }
    }

    fn batched(sh: &Dims) -> Schedule {
        Schedule {
            mb: BATCH,
            tiles: tiles_for(sh),
            warps: BATCH_WARPS.min(sh.steps),
        }
    }

    /// Whether a warp loads its next super-step before the arithmetic of the current one:
    /// measured faster when a warp walks many super-steps (K = 11008: 67.7% against 65.8%
    /// of copy bandwidth on the 11008 chain, when first measured). When a warp walks two
    /// (K = 4096) it was slower at first (56.1% against 58.2% on 4096×4096) and, with
    /// the activations carried and the bias loaded early, no faster (70.8–71.2% against
    /// 70.8%), so those warps keep the plain loop.
    fn pipelined(&self, sh: &Dims) -> bool {
        self.mb == 1 && sh.steps > 2 * self.warps
    }

    /// Whether the warp's activations for a super-step travel with its chunk of weights:
    /// loaded right after `griddepcontrol.wait` for the first super-step, and for the
    /// next one just before that step's weights. The activations are the first thing the
    /// arithmetic needs, and a load issued behind a super-step of weights returns after
    /// them. Measured at batch 1 on an H100, 8-layer chains: 4096→11008→4096 from
    /// 71.7–72.0% to 75.5–75.9% of copy bandwidth; 4096×4096 unchanged (67.3–68.0%
    /// against 67.8–68.1%).
    fn carries_x(&self) -> bool {
        self.mb == 1
    }

    /// Partial sums in shared memory: one per warp, block row and row of A.
    fn red_len(&self) -> u64 {
        self.warps * TILE * self.tiles * self.mb
    }

    /// i32 slots of the warps' activation fragments in shared memory.
    fn xs_len(&self) -> u64 {
        self.warps * 128 * self.mb
    }

    /// The mma chains per (tile, row of A): two at batch 1, to halve the chain of
    /// dependent mmas, one when the rows of the pass interleave anyway.
    fn chains(&self) -> u64 {
        if self.mb == 1 {
            2
        } else {
            1
        }
    }
}

/// [`TILES`] when N's tiles pair up, else one.
fn tiles_for(sh: &Dims) -> u64 {
    if (sh.n / TILE).is_multiple_of(TILES) {
        TILES
    } else {
        1
    }
}

/// The helper function: whole batches of [`BATCH`] rows through the batched kernel, the
/// remaining rows one per pass through the one-row kernel (each launched only when it has
/// rows, and each with its own register allocation).
fn helper(name: &str, m_ty: &str, n: u64, k: u64, grid_wait: bool) -> String {
    let nb = k / BLOCK;
    let sh = Dims {
        n,
        steps: k / STEP,
        a_t: format!("{m_ty}x{k}xf32"),
        b_t: format!("{}xi32", n * k / 8),
        s_t: format!("{}xf32", n * nb),
        z_t: format!("{}xi32", n * nb / 4),
        o_t: format!("{m_ty}x{n}xf32"),
    };
    let (ld, wait) = if grid_wait {
        (
            "      nvvm.griddepcontrol launch_dependents\n",
            "        nvvm.griddepcontrol wait\n",
        )
    } else {
        ("", "")
    };
    let full = launch(&sh, Schedule::batched(&sh), "%c0", "%mfull", ld, wait);
    let tail = launch(&sh, Schedule::one_row(&sh), "%mfull", "%m", ld, wait);
    let Dims {
        a_t,
        b_t,
        s_t,
        z_t,
        o_t,
        ..
    } = &sh;
    format!(
        r#"func.func private @{name}(%am: memref<{a_t}>, %bm: memref<{b_t}>, %sm: memref<{s_t}>, %zm: memref<{z_t}>, %biasm: memref<{n}xf32>, %om: memref<{o_t}>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %am, %c0 : memref<{a_t}>
  %cbatch = arith.constant {BATCH} : index
  %mtail = arith.remui %m, %cbatch : index
  %mfull = arith.subi %m, %mtail : index
  %hasfull = arith.cmpi ugt, %mfull, %c0 : index
  %hastail = arith.cmpi ugt, %mtail, %c0 : index
  scf.if %hasfull {{
{full}  }}
  scf.if %hastail {{
{tail}  }}
  return
}}
"#
    )
}

/// The `gpu.launch` of one schedule over rows `lo..hi` of A.
fn launch(sh: &Dims, s: Schedule, lo: &str, hi: &str, ld: &str, wait: &str) -> String {
    let Schedule { mb, tiles, warps } = s;
    let red_t = format!("memref<{}xf32, #gpu.address_space<workgroup>>", s.red_len());
    let grid = sh.n / TILE / tiles;
    let pipe = s.pipelined(sh);
    let first = loads(sh, s, "f", "%warp");
    let (first_x, next) = if s.carries_x() {
        (
            x_load(sh, "f", "%warp"),
            x_load(sh, "n", "%nss") + &loads(sh, s, "n", "%nss"),
        )
    } else {
        (String::new(), loads(sh, s, "n", "%nss"))
    };
    let acc_names: Vec<String> = acc_ids(s)
        .map(|(t, b, h)| format!("%acc{t}_{b}_{h}"))
        .collect();
    let mut chunk_names: Vec<String> = (0..tiles)
        .flat_map(|t| {
            [
                format!("%cw{t}_0"),
                format!("%cw{t}_1"),
                format!("%sc{t}"),
                format!("%zw{t}"),
            ]
        })
        .collect();
    let mut chunk_types: Vec<&str> = (0..tiles)
        .flat_map(|_| ["vector<4xi32>", "vector<4xi32>", "vector<2xf32>", "i32"])
        .collect();
    if s.carries_x() {
        chunk_names.push("%xv".to_string());
        chunk_types.push("vector<4xf32>");
    }
    let first_names: Vec<String> = chunk_names
        .iter()
        .map(|c| c.replacen('%', "%f", 1))
        .collect();
    let next_names: Vec<String> = chunk_names
        .iter()
        .map(|c| c.replacen('%', "%n", 1))
        .collect();
    let iter_args = acc_names
        .iter()
        .map(|a| format!("{a} = %zero"))
        .chain(
            chunk_names
                .iter()
                .zip(&first_names)
                .map(|(c, f)| format!("{c} = {f}")),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let acc_types = vec!["f32"; acc_names.len()];
    let all_types = acc_types
        .iter()
        .copied()
        .chain(chunk_types.iter().copied())
        .collect::<Vec<_>>()
        .join(", ");
    let new_accs: Vec<String> = acc_ids(s)
        .map(|(t, b, h)| format!("%nacc{t}_{b}_{h}"))
        .collect();
    let nacc = acc_names.len();
    let nchunk = chunk_names.len();
    let Dims {
        a_t, o_t, n, steps, ..
    } = sh;
    format!(
        r#"    %grid{mb} = arith.constant {grid} : index
    %threads{mb} = arith.constant {threads} : index
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid{mb}, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %threads{mb}, %sy = %c1, %sz = %c1) workgroup(%red : {red_t}, %xs : memref<{xs_len}xi32, #gpu.address_space<workgroup>>) {{
{ld}      %k0 = arith.constant 0 : index
      %k1 = arith.constant 1 : index
      %k2 = arith.constant 2 : index
      %k4 = arith.constant 4 : index
      %c8i = arith.constant 8 : index
      %k16 = arith.constant 16 : index
      %k32 = arith.constant 32 : index
      %k64 = arith.constant 64 : index
      %k128 = arith.constant 128 : index
      %k256 = arith.constant 256 : index
      %cS = arith.constant {steps} : index
      %cW = arith.constant {warps} : index
      %cT = arith.constant {tiles} : index
      %cmb = arith.constant {mb} : index
      %cout = arith.constant {outs} : index
      %crows = arith.constant {rows_per_block} : index
      %zero = arith.constant 0.0 : f32
      %zh2 = arith.constant dense<0.0> : vector<2xf16>
      %width = arith.constant 32 : i32
      %x1 = arith.constant 1 : i32
      %x2 = arith.constant 2 : i32
      %magic = arith.constant {magic} : i32
      %mneg = arith.constant {mneg} : i32
      %i0 = arith.constant 0 : i32
      %i4 = arith.constant 4 : i32
      %i8 = arith.constant 8 : i32
      %i16 = arith.constant 16 : i32
      %i24 = arith.constant 24 : i32
      %i255 = arith.constant 255 : i32
      %warp = arith.divui %tx, %k32 : index
      %lane = arith.remui %tx, %k32 : index
      %gid = arith.divui %lane, %k4 : index
      %tig = arith.remui %lane, %k4 : index
      %grp = arith.divui %gid, %k2 : index
      %tq = arith.divui %tig, %k2 : index
      %t2 = arith.remui %tig, %k2 : index
      %par = arith.remui %gid, %k2 : index
      %act0 = arith.cmpi eq, %grp, %tq : index
      %tq2 = arith.addi %tq, %k2 : index
      %act1 = arith.cmpi eq, %grp, %tq2 : index
      %islo = arith.cmpi eq, %par, %k1 : index
      %lead = arith.cmpi eq, %tig, %k0 : index
      %t2x2 = arith.muli %t2, %k2 : index
      %gid2 = arith.muli %gid, %k2 : index
      %zoff = arith.addi %gid2, %tq : index
      %lane4 = arith.muli %lane, %k4 : index
      %lane2 = arith.muli %lane, %k2 : index
      %tile0 = arith.muli %bx, %cT : index
      %row0 = arith.muli %tile0, %k16 : index
      %wrows = arith.muli %warp, %crows : index
      %fullmask = arith.constant -1 : i32
      %cxw = arith.constant {xs_warp} : index
      %xwbase = arith.muli %warp, %cxw : index
      %lm8 = arith.remui %lane, %c8i : index
      %ld8 = arith.divui %lane, %c8i : index
      %lm32 = arith.muli %lm8, %k16 : index
      %ld4 = arith.muli %ld8, %k4 : index
      %xwo = arith.addi %lm32, %ld4 : index
      %xwrite = arith.addi %xwbase, %xwo : index
      %grp4 = arith.muli %grp, %k4 : index
      %xro = arith.addi %grp4, %t2x2 : index
      %xro2 = arith.addi %xro, %par : index
      %xread = arith.addi %xwbase, %xro2 : index
      scf.for %mc = {lo} to {hi} step %cmb {{
{first}{wait}{first_x}        // This thread's first output row's bias, loaded now so that its latency overlaps
        // the arithmetic instead of following the reduction.
        %bin = arith.cmpi ult, %tx, %cout : index
        %bq = arith.divui %tx, %cmb : index
        %brr = arith.select %bin, %bq, %k0 : index
        %brow = arith.addi %row0, %brr : index
        %bpre = memref.load %biasm[%brow] : memref<{n}xf32>
        %res:{nres} = scf.for %ss = %warp to %cS step %cW iter_args({iter_args}) -> ({all_types}) {{
{pre}          %nss = arith.addi %ss, %cW : index
          %more = arith.cmpi ult, %nss, %cS : index
          %nx:{nchunk} = scf.if %more -> ({chunk_types}) {{
{next}            scf.yield {next_names} : {chunk_types}
          }} else {{
            scf.yield {chunk_names} : {chunk_types}
          }}
{post}          scf.yield {new_accs}, {nx} : {all_types}
        }}
{reduce}        gpu.barrier
        scf.for %oi = %tx to %cout step %threads{mb} {{
          %orr = arith.divui %oi, %cmb : index
          %ob = arith.remui %oi, %cmb : index
          %orow = arith.addi %row0, %orr : index
          %ofirst = arith.cmpi eq, %oi, %tx : index
          %bv = scf.if %ofirst -> (f32) {{
            scf.yield %bpre : f32
          }} else {{
            %bl = memref.load %biasm[%orow] : memref<{n}xf32>
            scf.yield %bl : f32
          }}
          %tot = scf.for %wi = %k0 to %cW step %k1 iter_args(%tacc = %bv) -> (f32) {{
            %wr = arith.muli %wi, %crows : index
            %wrr = arith.addi %wr, %orr : index
            %wslot = arith.muli %wrr, %cmb : index
            %slot = arith.addi %wslot, %ob : index
            %pv = memref.load %red[%slot] : {red_t}
            %tn = arith.addf %tacc, %pv : f32
            scf.yield %tn : f32
          }}
          %om_row = arith.addi %mc, %ob : index
          memref.store %tot, %om[%om_row, %orow] : memref<{o_t}>
        }}
        gpu.barrier
      }}
      gpu.terminator
    }}
"#,
        threads = warps * 32,
        xs_len = s.xs_len(),
        xs_warp = 128 * mb,
        outs = TILE * tiles * mb,
        rows_per_block = TILE * tiles,
        magic = HALF_1024_PAIR as i32,
        mneg = HALF_MINUS_64_PAIR as i32,
        nres = nacc + nchunk,
        chunk_types = chunk_types.join(", "),
        chunk_names = chunk_names.join(", "),
        next_names = next_names.join(", "),
        new_accs = new_accs.join(", "),
        nx = (0..nchunk)
            .map(|i| format!("%nx#{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        pre = if pipe { String::new() } else { compute(a_t, s) },
        post = if pipe { compute(a_t, s) } else { String::new() },
        reduce = reduce(s, &red_t),
    )
}

/// (tile, row of A, half) of every accumulator: half 0 is row gid of the tile, half 1 row
/// gid + 8.
fn acc_ids(s: Schedule) -> impl Iterator<Item = (u64, u64, u64)> {
    (0..s.tiles).flat_map(move |t| (0..s.mb).flat_map(move |b| (0..2).map(move |h| (t, b, h))))
}

/// The weight loads of super-step `ss` for every tile, as `%{p}cw{t}_0`, `%{p}cw{t}_1`
/// (the lane's eight words), `%{p}sc{t}` (its two scales) and `%{p}zw{t}` (its four zero
/// points).
fn loads(sh: &Dims, s: Schedule, p: &str, ss: &str) -> String {
    let Dims { b_t, s_t, z_t, .. } = sh;
    let mut out = String::new();
    for t in 0..s.tiles {
        out += &format!(
            r#"          %{p}ct{t} = arith.constant {t} : index
          %{p}tt{t} = arith.addi %tile0, %{p}ct{t} : index
          %{p}ts{t} = arith.muli %{p}tt{t}, %cS : index
          %{p}u{t} = arith.addi %{p}ts{t}, {ss} : index
          %{p}ub{t} = arith.muli %{p}u{t}, %k256 : index
          %{p}i0_{t} = arith.addi %{p}ub{t}, %lane4 : index
          %{p}i1_{t} = arith.addi %{p}i0_{t}, %k128 : index
          %{p}cw{t}_0 = vector.load %bm[%{p}i0_{t}] {{alignment = 16}} : memref<{b_t}>, vector<4xi32>
          %{p}cw{t}_1 = vector.load %bm[%{p}i1_{t}] {{alignment = 16}} : memref<{b_t}>, vector<4xi32>
          %{p}us{t} = arith.muli %{p}u{t}, %k64 : index
          %{p}si{t} = arith.addi %{p}us{t}, %lane2 : index
          %{p}sc{t} = vector.load %sm[%{p}si{t}] {{alignment = 8}} : memref<{s_t}>, vector<2xf32>
          %{p}uz{t} = arith.muli %{p}u{t}, %k16 : index
          %{p}zi{t} = arith.addi %{p}uz{t}, %zoff : index
          %{p}zw{t} = memref.load %zm[%{p}zi{t}] : memref<{z_t}>
"#
        );
    }
    out
}

/// The warp's activations of super-step `ss` for the row `%mc` (lane l: values 4l..4l+3),
/// as `%{p}xv`.
fn x_load(sh: &Dims, p: &str, ss: &str) -> String {
    let a_t = &sh.a_t;
    format!(
        r#"          %{p}xk = arith.muli {ss}, %k128 : index
          %{p}xo = arith.addi %{p}xk, %lane4 : index
          %{p}xv = vector.load %am[%mc, %{p}xo] {{alignment = 16}} : memref<{a_t}>, vector<4xf32>
"#
    )
}

/// One super-step `%ss` of the chunk in `%cw…`, `%sc…`, `%zw…`: B fragments per row of
/// A, then per tile the zero points as f16 pairs, the words unpacked, the mmas, and the
/// scales applied (results `%nacc…`).
fn compute(a_t: &str, s: Schedule) -> String {
    let mut out = String::new();
    if !s.carries_x() {
        out += "          %ssk = arith.muli %ss, %k128 : index\n          %xfill = arith.addi %ssk, %lane4 : index\n";
    }
    for b in 0..s.mb {
        out += &format!(
            "          %cb{b} = arith.constant {b} : index\n          %arow{b} = arith.addi %mc, %cb{b} : index\n"
        );
    }
    // B: lane (gid, tig) holds column gid (block gid/2, part gid mod 2) at mma rows 2tig,
    // 2tig + 1 (first register) and 2tig + 8, 2tig + 9 (second); only one of them lies in
    // the column's block, and which is `act0` / `act1`.
    //
    // The warp converts the super-step's activations once (lane l: values 4l..4l+3,
    // that is block l/8, mma l mod 8, both column pairs) into its shared-memory
    // slots `((b·8 + m)·4 + block)·4 + 2·pair + part`, then every lane reads the
    // fragments it needs.
    out += "          nvvm.bar.warp.sync %fullmask : i32\n";
    for b in 0..s.mb {
        // The one-row kernel's activations arrive with the chunk (`%xv`, see
        // [`Schedule::carries_x`]); the batched kernel loads its rows here.
        let xq = if s.carries_x() {
            "%xv".to_string()
        } else {
            out += &format!(
                "          %xq{b} = vector.load %am[%arow{b}, %xfill] {{alignment = 16}} : memref<{a_t}>, vector<4xf32>\n"
            );
            format!("%xq{b}")
        };
        out += &format!(
            r#"          %xqh{b} = arith.truncf {xq} : vector<4xf32> to vector<4xf16>
          %xqhf{b} = arith.extf %xqh{b} : vector<4xf16> to vector<4xf32>
          %xqd{b} = arith.subf {xq}, %xqhf{b} : vector<4xf32>
          %xql{b} = arith.truncf %xqd{b} : vector<4xf32> to vector<4xf16>
          %xqs{b} = vector.shuffle %xqh{b}, %xql{b} [0, 1, 4, 5, 2, 3, 6, 7] : vector<4xf16>, vector<4xf16>
          %xqi{b} = vector.bitcast %xqs{b} : vector<8xf16> to vector<4xi32>
          %xwb{b} = arith.constant {wb} : index
          %xw{b} = arith.addi %xwrite, %xwb{b} : index
          vector.store %xqi{b}, %xs[%xw{b}] : memref<{xs_len}xi32, #gpu.address_space<workgroup>>, vector<4xi32>
"#,
            wb = 128 * b,
            xs_len = s.xs_len()
        );
    }
    out += "          nvvm.bar.warp.sync %fullmask : i32\n";
    for m in 0..8 {
        for b in 0..s.mb {
            let v = format!("{b}_{m}");
            out += &format!(
                r#"          %xrb{v} = arith.constant {o} : index
          %xr{v} = arith.addi %xread, %xrb{v} : index
          %xi{v} = memref.load %xs[%xr{v}] : memref<{xs_len}xi32, #gpu.address_space<workgroup>>
"#,
                o = 128 * b + 16 * m,
                xs_len = s.xs_len()
            );
            out += &if s.mb == 1 {
                format!(
                    "          %bi0_{v} = arith.select %act0, %xi{v}, %i0 : i32\n          %bi1_{v} = arith.select %act1, %xi{v}, %i0 : i32\n"
                )
            } else {
                format!(
                    r#"          %xiv{v} = vector.broadcast %xi{v} : i32 to vector<1xi32>
          %xp{v} = vector.bitcast %xiv{v} : vector<1xi32> to vector<2xf16>
          %bb0_{v} = arith.select %act0, %xp{v}, %zh2 : vector<2xf16>
          %bb1_{v} = arith.select %act1, %xp{v}, %zh2 : vector<2xf16>
"#
                )
            };
        }
    }
    // The inline PTX of a word, the same text for every word.
    let (word_mma, word_unpack) = (word_mma_ptx(), word_unpack_ptx());
    let ext = |d: &str| -> (String, [String; 4]) {
        let mut txt = String::new();
        let mut v: [String; 4] = Default::default();
        for (i, slot) in v.iter_mut().enumerate() {
            txt += &format!(
                "          {d}_{i} = llvm.extractvalue {d}[{i}] : !llvm.struct<(f32, f32, f32, f32)>\n"
            );
            *slot = format!("{d}_{i}");
        }
        (txt, v)
    };
    for t in 0..s.tiles {
        // Zero-point pairs: byte j of the word for A register j; registers 0 and 2 as the
        // halves 1024 + z, registers 1 and 3 as −(64 + z).
        for j in 0..4u64 {
            let shift = if j == 0 {
                format!("          %zb{t}_{j} = arith.andi %zw{t}, %i255 : i32\n")
            } else {
                format!(
                    "          %zs{t}_{j} = arith.shrui %zw{t}, %i{sh} : i32\n          %zb{t}_{j} = arith.andi %zs{t}_{j}, %i255 : i32\n",
                    sh = 8 * j
                )
            };
            out += &shift;
            let (src, base) = if j % 2 == 0 {
                (format!("%zb{t}_{j}"), "%magic")
            } else {
                out += &format!("          %z16{t}_{j} = arith.shli %zb{t}_{j}, %i4 : i32\n");
                (format!("%z16{t}_{j}"), "%mneg")
            };
            out += &format!(
                r#"          %zhi{t}_{j} = arith.shli {src}, %i16 : i32
          %zpr{t}_{j} = arith.ori {src}, %zhi{t}_{j} : i32
          %zbits{t}_{j} = arith.ori %zpr{t}_{j}, {base} : i32
"#
            );
        }
        let mut d: Vec<Vec<[String; 4]>> = vec![Vec::new(); (s.mb * s.chains()) as usize];
        for m in 0..8u64 {
            let tm = format!("{t}_{m}");
            out += &format!(
                "          %w{tm} = vector.extract %cw{t}_{h}[{j}] : i32 from vector<4xi32>\n",
                h = m / 4,
                j = m % 4
            );
            if s.mb == 1 {
                let chain = (m % s.chains()) as usize;
                let c = chain_tail(&d[chain]);
                let dn = format!("%d{tm}_0");
                out += &format!(
                    "          {dn} = llvm.inline_asm has_side_effects \"{ptx}\", \"=f,=f,=f,=f,r,r,r,r,r,r,r,f,f,f,f\" %w{tm}, %zbits{t}_0, %zbits{t}_1, %zbits{t}_2, %zbits{t}_3, %bi0_0_{m}, %bi1_0_{m}, {} : (i32, i32, i32, i32, i32, i32, i32, f32, f32, f32, f32) -> !llvm.struct<(f32, f32, f32, f32)>\n",
                    c.join(", "),
                    ptx = word_mma
                );
                let (txt, v) = ext(&dn);
                out += &txt;
                d[chain].push(v);
                continue;
            }
            out += &format!(
                "          %ua{tm} = llvm.inline_asm has_side_effects \"{word_unpack}\", \"=r,=r,=r,=r,r,r,r,r,r\" %w{tm}, %zbits{t}_0, %zbits{t}_1, %zbits{t}_2, %zbits{t}_3 : (i32, i32, i32, i32, i32) -> !llvm.struct<(i32, i32, i32, i32)>\n"
            );
            for j in 0..4 {
                out += &format!(
                    r#"          %ue{tm}_{j} = llvm.extractvalue %ua{tm}[{j}] : !llvm.struct<(i32, i32, i32, i32)>
          %uv{tm}_{j} = vector.broadcast %ue{tm}_{j} : i32 to vector<1xi32>
          %a{tm}_{j} = vector.bitcast %uv{tm}_{j} : vector<1xi32> to vector<2xf16>
"#
                );
            }
            let a = (0..4)
                .map(|j| format!("%a{tm}_{j}"))
                .collect::<Vec<_>>()
                .join(", ");
            for b in 0..s.mb {
                let chain = (b * s.chains() + m % s.chains()) as usize;
                let c = chain_tail(&d[chain]);
                let dn = format!("%d{tm}_{b}");
                out += &format!(
                    "          {dn} = nvvm.mma.sync A[{a}] B[%bb0_{b}_{m}, %bb1_{b}_{m}] C[{}] {{layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>\n",
                    c.join(", ")
                );
                let (txt, v) = ext(&dn);
                out += &txt;
                d[chain].push(v);
            }
        }
        // acc += scale · (high part + low part), per row half, summed over the chains.
        out += &format!(
            "          %s{t}_0 = vector.extract %sc{t}[0] : f32 from vector<2xf32>\n          %s{t}_1 = vector.extract %sc{t}[1] : f32 from vector<2xf32>\n"
        );
        for b in 0..s.mb {
            for h in 0..2u64 {
                let tb = format!("{t}_{b}_{h}");
                let mut terms = Vec::new();
                for c in 0..s.chains() {
                    let last = d[(b * s.chains() + c) as usize]
                        .last()
                        .expect("eight mmas per chain");
                    terms.push(last[2 * h as usize].clone());
                    terms.push(last[2 * h as usize + 1].clone());
                }
                let mut prev = terms[0].clone();
                for (i, term) in terms.iter().enumerate().skip(1) {
                    out += &format!("          %ps{tb}_{i} = arith.addf {prev}, {term} : f32\n");
                    prev = format!("%ps{tb}_{i}");
                }
                out += &format!(
                    "          %sp{tb} = arith.mulf %s{t}_{h}, {prev} fastmath<contract> : f32\n          %nacc{tb} = arith.addf %acc{tb}, %sp{tb} fastmath<contract> : f32\n"
                );
            }
        }
    }
    out
}

/// The accumulator an mma chain has reached (its last mma's four results), or zeros
/// before its first mma.
fn chain_tail(chain: &[[String; 4]]) -> [String; 4] {
    chain
        .last()
        .cloned()
        .unwrap_or_else(|| std::array::from_fn(|_| "%zero".to_string()))
}

/// Each warp's sums: the four lanes of a row (tig) by `gpu.shuffle xor`, then lane tig = 0
/// writes slot `(warp·rows + 16t + gid + 8h)·mb + b`.
fn reduce(s: Schedule, red_t: &str) -> String {
    let mut out = String::new();
    for (i, (t, b, h)) in acc_ids(s).enumerate() {
        let tb = format!("{t}_{b}_{h}");
        out += &format!(
            r#"        %r1_{tb}, %ok1_{tb} = gpu.shuffle xor %res#{i}, %x1, %width : f32
        %r2_{tb} = arith.addf %res#{i}, %r1_{tb} : f32
        %r3_{tb}, %ok3_{tb} = gpu.shuffle xor %r2_{tb}, %x2, %width : f32
        %r4_{tb} = arith.addf %r2_{tb}, %r3_{tb} : f32
        scf.if %lead {{
          %ro{tb} = arith.constant {ro} : index
          %rw{tb} = arith.addi %wrows, %ro{tb} : index
          %rg{tb} = arith.addi %rw{tb}, %gid : index
          %rm{tb} = arith.muli %rg{tb}, %cmb : index
          %rb{tb} = arith.constant {b} : index
          %slot{tb} = arith.addi %rm{tb}, %rb{tb} : index
          memref.store %r4_{tb}, %red[%slot{tb}] : {red_t}
        }}
"#,
            ro = TILE * t + 8 * h
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// The kernel's arithmetic on the repacked buffers, lane by lane as the mma sees
    /// them: A fragments from the words (q − z exactly), B from the activations (columns
    /// (block, part); the part split is skipped, both parts sum to x), D summed per block
    /// and scaled.
    fn kernel_model(l: &TileLayout, x: &[f32], n: usize, k: usize) -> Vec<f64> {
        let codes: &[u32] = bytemuck::cast_slice(&l.codes);
        let scales: &[f32] = bytemuck::cast_slice(&l.scales);
        let zeros: &[u32] = bytemuck::cast_slice(&l.zeros);
        let steps = k / 128;
        let mut y = vec![0f64; n];
        for t in 0..n / 16 {
            for ss in 0..steps {
                let u = t * steps + ss;
                // D[row][col] of this super-step's eight mmas.
                let mut d = [[0f64; 8]; 16];
                for m in 0..8 {
                    // A[16][16] and B[16][8] assembled from what each lane holds.
                    let mut a = [[0f64; 16]; 16];
                    let mut bm = [[0f64; 8]; 16];
                    for lane in 0..32 {
                        let (g, q) = (lane / 4, lane % 4);
                        let w = codes[256 * u + 128 * (m / 4) + 4 * lane + m % 4];
                        let zw = zeros[16 * u + 2 * g + q / 2];
                        let z = |j: usize| ((zw >> (8 * j)) & 255) as f64;
                        let c = |i: usize| ((w >> (4 * i)) & 15) as f64;
                        // Registers 0..4: (g, 2q), (g+8, 2q), (g, 2q+8), (g+8, 2q+8); the
                        // upper halves are codes 4..8 at k + 1.
                        let slots = [
                            (g, 2 * q),
                            (g + 8, 2 * q),
                            (g, 2 * q + 8),
                            (g + 8, 2 * q + 8),
                        ];
                        for (j, &(r, kk)) in slots.iter().enumerate() {
                            a[r][kk] = c(j) - z(j);
                            a[r][kk + 1] = c(j + 4) - z(j);
                        }
                        let grp = g / 2;
                        let base = ss * 128 + grp * 32 + 2 * (q % 2);
                        for (reg, active) in [(0, grp == q / 2), (1, grp == 2 + q / 2)] {
                            if active {
                                let kk = 2 * q + 8 * reg;
                                // The high-part column (even g) carries all of x here.
                                let part = if g % 2 == 0 { 1.0 } else { 0.0 };
                                bm[kk][g] = part * x[base + 4 * m] as f64;
                                bm[kk + 1][g] = part * x[base + 4 * m + 1] as f64;
                            }
                        }
                    }
                    for (r, drow) in d.iter_mut().enumerate() {
                        for (col, dv) in drow.iter_mut().enumerate() {
                            *dv += (0..16).map(|kk| a[r][kk] * bm[kk][col]).sum::<f64>();
                        }
                    }
                }
                for lane in 0..32 {
                    let (g, q) = (lane / 4, lane % 4);
                    for h in 0..2 {
                        let r = g + 8 * h;
                        let s = scales[64 * u + 2 * lane + h] as f64;
                        y[t * 16 + r] += s * (d[r][2 * q] + d[r][2 * q + 1]);
                    }
                }
            }
        }
        y
    }

    #[test]
    fn the_tile_layout_gives_each_row_its_dot_product_with_its_blocks() {
        // Two tiles, K = 384 (three super-steps), random codes, scales and zero points.
        let (n, k) = (32usize, 384usize);
        let nb = k / 32;
        let packed = bytes(n * k / 2, 1);
        let scales: Vec<f32> = bytes(n * nb, 2)
            .iter()
            .map(|&b| 0.001 + b as f32 * 1e-4)
            .collect();
        let zeros: Vec<u8> = bytes(n * nb, 3).iter().map(|b| b % 16).collect();
        let x: Vec<f32> = bytes(k, 4)
            .iter()
            .map(|&b| (b as f32 - 127.5) / 64.0)
            .collect();
        let l = repack(&packed, &scales, &zeros, n as u64, k as u64);
        assert_eq!(l.codes.len(), packed.len());
        assert_eq!(l.scales.len(), n * nb * 4);
        assert_eq!(l.zeros.len(), n * nb);
        let got = kernel_model(&l, &x, n, k);
        for (r, g) in got.iter().enumerate() {
            let want: f64 = (0..k)
                .map(|kk| {
                    let q = (packed[r * k / 2 + kk / 2] >> (4 * (kk % 2))) & 15;
                    let blk = r * nb + kk / 32;
                    (q as f64 - zeros[blk] as f64) * scales[blk] as f64 * x[kk] as f64
                })
                .sum();
            assert!(
                (g - want).abs() <= 1e-9 * want.abs().max(1.0),
                "row {r}: {g} against {want}"
            );
        }
    }

    /// The value of a normal f16 bit pattern.
    fn half(bits: u32) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = ((bits >> 10) & 31) as i32 - 15;
        sign * 2f64.powi(e) * (1.0 + (bits & 1023) as f64 / 1024.0)
    }

    #[test]
    fn unpacking_with_the_half_magic_gives_code_minus_zero_exactly() {
        for q in 0..16u32 {
            for z in 0..16u32 {
                // Registers 0 and 2: (1024 + q) − (1024 + z); the difference is an integer
                // below 16 in magnitude, so the f16 subtraction is exact.
                assert_eq!(half(q | 0x6400) - half(z | 0x6400), q as f64 - z as f64);
                // Registers 1 and 3: the code sits 4 bits higher; (1024 + 16q)·(1/16) +
                // (−(64 + z)) is exact too, so the one rounding of the fused f16x2
                // multiply-add changes nothing.
                assert_eq!(half(q << 4 | 0x6400), 1024.0 + 16.0 * q as f64);
                assert_eq!(half(z << 4 | 0xD400), -(64.0 + z as f64));
                assert_eq!(
                    half(q << 4 | 0x6400) * 0.0625 + half(z << 4 | 0xD400),
                    q as f64 - z as f64
                );
            }
        }
    }

    #[test]
    fn the_word_to_mma_ptx_uses_the_unpacking_constants() {
        assert_eq!(half(HALF_SIXTEENTH_PAIR & 0xFFFF), 0.0625);
        assert_eq!(HALF_SIXTEENTH_PAIR >> 16, HALF_SIXTEENTH_PAIR & 0xFFFF);
        let ptx = word_mma_ptx();
        assert!(ptx.contains("lop3.b32 a0, $4, 0x000F000F, 0x64006400, 0xEA;"));
        assert!(ptx.contains("lop3.b32 a3, w8, 0x00F000F0, 0x64006400, 0xEA;"));
        assert!(ptx.contains("mov.b32 s16, 0x2C002C00;"));
        assert!(ptx.contains("{$9, $10}, {$11, $12, $13, $14}; }"));
        // Operands 0..=14 as the op's constraints list them: four outputs, eleven inputs.
        assert!(!ptx.contains("$15"));
        // The batched kernel's block: the same unpacking into its outputs 0..=3, no mma.
        let unpack = word_unpack_ptx();
        assert!(unpack.contains("lop3.b32 $0, $4, 0x000F000F, 0x64006400, 0xEA;"));
        assert!(unpack.contains("lop3.b32 $3, w8, 0x00F000F0, 0x64006400, 0xEA;"));
        assert!(unpack.contains("sub.f16x2 $2, $2, $7; fma.rn.f16x2 $3, $3, s16, $8;"));
        assert!(!unpack.contains("mma") && !unpack.contains("$9"));
    }

    #[test]
    fn the_one_row_kernel_loads_activations_before_weights_and_the_bias_before_the_arithmetic() {
        // K = 4352: 34 super-steps for 16 warps, the pipelined loop.
        let text = helper("f", "?", 4096, 4352, true);
        let one_row = &text[text.rfind("gpu.launch").unwrap()..];
        let wait = one_row.find("nvvm.griddepcontrol wait").unwrap();
        let first_x = one_row.find("%fxv = vector.load %am").unwrap();
        let next_x = one_row.find("%nxv = vector.load %am").unwrap();
        let next_w = one_row.find("%ncw0_0 = vector.load %bm").unwrap();
        assert!(
            wait < first_x,
            "the first activations wait for the layer before"
        );
        assert!(one_row.find("%fcw0_0 = vector.load %bm").unwrap() < wait);
        assert!(
            next_x < next_w,
            "the next activations go out before the next weights"
        );
        // The bias goes out after the first activations, before the arithmetic, not after
        // the reduction (there it cost 2.5 points of copy bandwidth on 4096×4096).
        let bias = one_row.find("%bpre = memref.load %biasm").unwrap();
        assert!(first_x < bias && bias < one_row.find("scf.for %ss").unwrap());
        assert_eq!(one_row.matches("memref.load %biasm").count(), 2);
        // Only those two loads read A; the batched kernel loads its rows in the step.
        assert_eq!(one_row.matches("vector.load %am").count(), 2);
        let batched = &text[..text.rfind("gpu.launch").unwrap()];
        assert!(batched.contains("%xq0 = vector.load %am"));
        assert!(!batched.contains("%xv"));
    }

    #[test]
    fn the_shapes_it_takes() {
        assert!(applies(4096, 4096, 4, 32));
        assert!(applies(11008, 4096, 4, 32) && applies(4096, 11008, 4, 32));
        assert!(!applies(4096, 4096, 8, 32));
        assert!(!applies(4096, 4096, 4, 64));
        assert!(!applies(4104, 4096, 4, 32));
        assert!(!applies(4096, 4000, 4, 32));
    }
}

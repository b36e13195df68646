//! The batched pass of GPU MatMulNBits (8 rows of A at a time) for int4 codes, on tensor
//! cores (`mma.sync.m16n8k16`, f16 × f16 → f32), reading the same repacked weights as
//! the one-row kernel in [`super::gpu_nbits`] (no second copy of the weights).
//!
//! - A is 16 output features × 16 values of K: for two mmas a lane needs one 32-bit word
//!   of codes of row gid and one of row gid + 8, turned into exact small integers in f16
//!   with `lop3`-style masks and the f16 bits of 1024 (`0x6400 | q` is the half 1024 + q,
//!   so subtracting 1024 leaves q; the odd codes sit 4 bits higher and are scaled by 1/16
//!   in one f16 multiply-add).
//! - B is the 8 rows of A (the batch), split into an f16 high part and the f16 rounding of
//!   the rest, as two mmas into one f32 accumulator: about 22 bits of each activation are
//!   kept, so on the 8-layer chains the result stays within a few 1e-6 of the output
//!   scale of the interpreter.
//! - Lane (gid, tig) loads the 16-byte vector `4b' + tig` of rows gid and gid + 8 of a
//!   128-word group; its four words are word `tig` of the 4-word runs `b' + 8j`, so every
//!   mma covers 32 consecutive values of K, all inside one quantization block (blocks are
//!   a multiple of 4 words). The K order inside an mma does not matter as long as A and B
//!   agree, and B is built in the order the words hold their codes.
//! - The zero point is folded out of the mma: Σ (q − z)·x = Σ q·x − z·Σ x, with the sums
//!   of x over each 32-value run computed once per pass into shared memory. The block
//!   scale multiplies the result in f32.
//! - Each lane loads the scale and zero point of one run (`j = tig`) for its two rows, and
//!   the lanes that need them get them by `gpu.shuffle idx` (4 loads instead of 16).
//!
//! On an H100 it takes the 8-layer int4 chains at batch 8 from 0.1222 to 0.1107 ms
//! (4096×4096) and from 0.3024 to 0.2824 ms (11008×4096) against the CUDA-core batched
//! pass, and they match the interpreter to 4.2e-6 and 3.2e-6 of the output scale. A CUDA
//! replica reached 0.103 and 0.263 ms; it also issued the first step's loads before
//! `griddepcontrol.wait`, which this pass does not.

/// Warps per block; they split the K steps (a step is 128 values of K of one 16-row tile).
pub const MMA_WARPS: u64 = 16;
/// 16-row tiles per block.
const TILES: u64 = 2;
/// Rows of A per pass.
const PASS_ROWS: u64 = 8;
/// Codes 0 and 4 of a word, one in each 16-bit half.
pub(super) const LOW_CODES: u32 = 0x000F_000F;
/// Codes 1 and 5, four bits higher.
pub(super) const HIGH_CODES: u32 = 0x00F0_00F0;
/// Two halves of 1024.0 (`0x6400`): OR-ing a code into one gives the half 1024 + code.
pub(super) const HALF_1024_PAIR: u32 = 0x6400_6400;
/// Static shared memory a kernel may use (bytes).
const SHARED_LIMIT: u64 = 48 * 1024;

/// 128-word groups → K steps: a step is one 16-byte vector per lane, 8 per group.
fn steps(groups: u64) -> u64 {
    groups * 8
}

fn steps_per_warp(groups: u64) -> u64 {
    steps(groups).div_ceil(MMA_WARPS)
}

/// Floats of shared memory: the warps' partial sums, then each warp's run sums of x.
fn shared_floats(groups: u64) -> (u64, u64) {
    let red = MMA_WARPS * TILES * 16 * PASS_ROWS;
    let xs = MMA_WARPS * steps_per_warp(groups) * 4 * PASS_ROWS;
    (red, xs)
}

/// Whether the tensor-core pass handles these codes: 4-bit ones (whose blocks are whole
/// 4-word runs wherever [`super::gpu_nbits::supported`] holds) whose run sums fit in
/// static shared memory.
pub fn applies(bits: u64, groups: u64) -> bool {
    let (red, xs) = shared_floats(groups);
    bits == 4 && (red + xs) * 4 <= SHARED_LIMIT
}

/// What the launch needs from the helper around it.
pub struct MmaLaunch<'a> {
    pub a_t: &'a str,
    pub b_t: &'a str,
    pub s_t: &'a str,
    pub z_t: &'a str,
    pub o_t: &'a str,
    pub n: u64,
    /// 32-bit words of codes per row (before the repacking's padding).
    pub words: u64,
    pub groups: u64,
    /// Words per quantization block.
    pub block_words: u64,
    /// `griddepcontrol.launch_dependents` and `griddepcontrol.wait`, or nothing.
    pub launch_dependents: &'a str,
    pub wait: &'a str,
}

/// The `gpu.launch` of the pass over rows `0..%mfull` of A, eight at a time.
pub fn launch(l: &MmaLaunch) -> String {
    let MmaLaunch {
        a_t,
        b_t,
        s_t,
        z_t,
        o_t,
        n,
        words,
        groups,
        block_words,
        launch_dependents,
        wait,
    } = *l;
    let spw = steps_per_warp(groups);
    let (red_len, xs_len) = shared_floats(groups);
    let red_t = format!("memref<{red_len}xf32, #gpu.address_space<workgroup>>");
    let xs_t = format!("memref<{xs_len}xf32, #gpu.address_space<workgroup>>");
    let rows_per_block = TILES * 16;
    let grid = n.div_ceil(rows_per_block);
    let mut rows = String::new();
    for m in 0..TILES {
        for (h, off) in [("a", 0), ("b", 8)] {
            rows += &format!(
                r#"      %roff{h}{m} = arith.constant {o} : index
      %rraw{h}{m} = arith.addi %tilebase, %roff{h}{m} : index
      %rin{h}{m} = arith.cmpi ult, %rraw{h}{m}, %cn : index
      %r{h}{m} = arith.select %rin{h}{m}, %rraw{h}{m}, %clastrow : index
"#,
                o = 16 * m + off
            );
        }
    }
    format!(
        r#"    %mmagrid = arith.constant {grid} : index
    %mmathreads = arith.constant {threads} : index
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %mmagrid, %gy = %c1, %gz = %c1) threads(%tx, %ty, %tz) in (%sx = %mmathreads, %sy = %c1, %sz = %c1) workgroup(%red : {red_t}, %xs : {xs_t}) {{
{launch_dependents}      %k0 = arith.constant 0 : index
      %k1 = arith.constant 1 : index
      %k2 = arith.constant 2 : index
      %k4 = arith.constant 4 : index
      %k8 = arith.constant 8 : index
      %k32 = arith.constant 32 : index
      %k128 = arith.constant 128 : index
      %cn = arith.constant {n} : index
      %clastrow = arith.constant {last_row} : index
      %cwords = arith.constant {words} : index
      %cbw = arith.constant {block_words} : index
      %csteps = arith.constant {steps} : index
      %cspw = arith.constant {spw} : index
      %cxsw = arith.constant {xsw} : index
      %crpb = arith.constant {rows_per_block} : index
      %cwarps = arith.constant {MMA_WARPS} : index
      %cout = arith.constant {outs} : index
      %zero = arith.constant 0.0 : f32
      %zero4 = arith.constant dense<0.0> : vector<4xf32>
      %width = arith.constant 32 : i32
      %mlo = arith.constant {mlo} : i32
      %mhi = arith.constant {mhi} : i32
      %magic = arith.constant {magic} : i32
      %sh8 = arith.constant 8 : i32
      %h1024 = arith.constant dense<1024.0> : vector<2xf16>
      %h16th = arith.constant dense<0.0625> : vector<2xf16>
      %hm64 = arith.constant dense<-64.0> : vector<2xf16>
      %warp = arith.divui %tx, %k32 : index
      %lane = arith.remui %tx, %k32 : index
      %gid = arith.divui %lane, %k4 : index
      %tig = arith.remui %lane, %k4 : index
      %srcbase = arith.muli %gid, %k4 : index
      %sbeg = arith.muli %warp, %cspw : index
      %sendraw = arith.addi %sbeg, %cspw : index
      %sendmin = arith.minui %sendraw, %csteps : index
      %send = arith.maxui %sendmin, %sbeg : index
      %ns = arith.subi %send, %sbeg : index
      %nsum = arith.muli %ns, %k32 : index
      %xsbase = arith.muli %warp, %cxsw : index
      %blockrow = arith.muli %bx, %crpb : index
      %tilebase = arith.addi %blockrow, %gid : index
{rows}      %tig32 = arith.muli %tig, %k32 : index
      %mhi8 = arith.addi %mfull, %k0 : index
      scf.for %mc = %k0 to %mhi8 step %k8 {{
{wait}        // Σ x over each 32-value run of this warp's steps, for the pass's 8 rows:
        // entry (step, j, row) at xsbase + (step·4 + j)·8 + row.
        scf.for %i = %lane to %nsum step %k32 {{
          %ls = arith.divui %i, %k32 : index
          %i8 = arith.divui %i, %k8 : index
          %j = arith.remui %i8, %k4 : index
          %r = arith.remui %i, %k8 : index
          %st = arith.addi %sbeg, %ls : index
{sums_run}          %sj32 = arith.muli %j, %k32 : index
          %w0 = arith.addi %srunw, %sj32 : index
          %ok = arith.cmpi ult, %w0, %cwords : index
          %w0c = arith.select %ok, %w0, %k0 : index
          %kx = arith.muli %w0c, %k8 : index
          %row = arith.addi %mc, %r : index
{sum8}          %xtot = vector.reduction <add>, %v6 : vector<4xf32> into f32
          %sum = arith.select %ok, %xtot, %zero : f32
          %xi = arith.addi %xsbase, %i : index
          memref.store %sum, %xs[%xi] : {xs_t}
        }}
        gpu.barrier
        %arow = arith.addi %mc, %gid : index
        %acc:{naccs} = scf.for %st = %sbeg to %send step %k1 iter_args({inits}) -> ({f32s}) {{
          %ls = arith.subi %st, %sbeg : index
{step_run}          %pos = arith.addi %bp4, %tig : index
          %pos4 = arith.muli %pos, %k4 : index
          %woff = arith.addi %gw, %pos4 : index
          %wt = arith.addi %runw, %tig32 : index
          %okt = arith.cmpi ult, %wt, %cwords : index
          %wtc = arith.select %okt, %wt, %k0 : index
          %blkt = arith.divui %wtc, %cbw : index
{loads}{runs}          scf.yield {yields} : {f32s}
        }}
{store_red}        gpu.barrier
        %isout = arith.cmpi ult, %tx, %cout : index
        scf.if %isout {{
          %orr = arith.divui %tx, %k8 : index
          %ob = arith.remui %tx, %k8 : index
          %orow = arith.addi %blockrow, %orr : index
          %orowok = arith.cmpi ult, %orow, %cn : index
          scf.if %orowok {{
            %bv = memref.load %biasm[%orow] : memref<{n}xf32>
            %tot = scf.for %wi = %k0 to %cwarps step %k1 iter_args(%tacc = %bv) -> (f32) {{
              %wrow = arith.muli %wi, %crpb : index
              %wr = arith.addi %wrow, %orr : index
              %wr8 = arith.muli %wr, %k8 : index
              %slot = arith.addi %wr8, %ob : index
              %pv = memref.load %red[%slot] : {red_t}
              %tn = arith.addf %tacc, %pv : f32
              scf.yield %tn : f32
            }}
            %om_row = arith.addi %mc, %ob : index
            memref.store %tot, %om[%om_row, %orow] : memref<{o_t}>
          }}
        }}
        gpu.barrier
      }}
      gpu.terminator
    }}
"#,
        threads = MMA_WARPS * 32,
        mlo = LOW_CODES as i32,
        mhi = HIGH_CODES as i32,
        magic = HALF_1024_PAIR as i32,
        last_row = n - 1,
        steps = steps(groups),
        xsw = spw * 4 * PASS_ROWS,
        outs = rows_per_block * PASS_ROWS,
        sum8 = sum8(a_t),
        sums_run = run_base("s"),
        step_run = run_base(""),
        naccs = TILES * 4,
        inits = (0..TILES * 4)
            .map(|i| format!("%acc{i} = %zero"))
            .collect::<Vec<_>>()
            .join(", "),
        f32s = vec!["f32"; (TILES * 4) as usize].join(", "),
        loads = loads(b_t, s_t, z_t),
        runs = (0..4)
            .map(|j| run(j, a_t, xs_t.as_str()))
            .collect::<String>(),
        yields = (0..TILES * 4)
            .map(|i| format!("%u{i}_3"))
            .collect::<Vec<_>>()
            .join(", "),
        store_red = store_red(&red_t),
    )
}

/// Step `%st` → its group `%{p}g`, vector slot `%{p}bp` (0..8), and the first word of its
/// runs, `%{p}runw = 128·g + 4·bp` (run j starts 32·j words later).
fn run_base(p: &str) -> String {
    format!(
        r#"          %{p}g = arith.divui %st, %k8 : index
          %{p}bp = arith.remui %st, %k8 : index
          %{p}gw = arith.muli %{p}g, %k128 : index
          %{p}bp4 = arith.muli %{p}bp, %k4 : index
          %{p}runw = arith.addi %{p}gw, %{p}bp4 : index
"#
    )
}

/// Σ of 32 activations from `%kx` of row `%row`, as 8 four-wide loads added up (the
/// vector `%v6`).
fn sum8(a_t: &str) -> String {
    let mut out = String::new();
    for q in 0..8 {
        out += &format!(
            "          %kq{q}c = arith.constant {} : index\n          %kq{q} = arith.addi %kx, %kq{q}c : index\n          %x{q} = vector.load %am[%row, %kq{q}] {{alignment = 16}} : memref<{a_t}>, vector<4xf32>\n",
            4 * q
        );
    }
    out += "          %v0 = arith.addf %x0, %x1 : vector<4xf32>\n";
    for q in 1..7 {
        out += &format!(
            "          %v{q} = arith.addf %v{p}, %x{n} : vector<4xf32>\n",
            p = q - 1,
            n = q + 1
        );
    }
    out
}

/// The step's weight loads (both rows of both tiles) and, for run `j = tig`, the scale
/// and zero point of both rows (to be shuffled to the lanes that need them).
fn loads(b_t: &str, s_t: &str, z_t: &str) -> String {
    let mut s = String::new();
    for m in 0..TILES {
        for h in ["a", "b"] {
            s += &format!(
                r#"          %w{h}{m} = vector.load %bm[%r{h}{m}, %woff] {{alignment = 16}} : memref<{b_t}>, vector<4xi32>
          %sraw{h}{m} = memref.load %sm[%r{h}{m}, %blkt] : memref<{s_t}>
          %s{h}{m} = arith.select %okt, %sraw{h}{m}, %zero : f32
          %zq{h}{m} = memref.load %zm[%r{h}{m}, %blkt] : memref<{z_t}>
          %z{h}{m} = arith.uitofp %zq{h}{m} : i8 to f32
"#
            );
        }
    }
    s
}

/// Run `j` of the step: B from the 8 activations each lane's word covers (high and low
/// f16 parts, in the word's code order), then per tile the scale and zero by shuffle, the
/// two rows' words dequantized, four mmas, and the accumulators updated.
fn run(j: u64, a_t: &str, xs_t: &str) -> String {
    let mut s = format!(
        r#"          %cj{j} = arith.constant {j32} : index
          %w0_{j} = arith.addi %runw, %cj{j} : index
          %ok{j} = arith.cmpi ult, %w0_{j}, %cwords : index
          %w0c{j} = arith.select %ok{j}, %w0_{j}, %k0 : index
          %wl{j} = arith.addi %w0c{j}, %tig : index
          %kx{j} = arith.muli %wl{j}, %k8 : index
          %kx{j}b = arith.addi %kx{j}, %k4 : index
          %xa{j}r = vector.load %am[%arow, %kx{j}] {{alignment = 16}} : memref<{a_t}>, vector<4xf32>
          %xb{j}r = vector.load %am[%arow, %kx{j}b] {{alignment = 16}} : memref<{a_t}>, vector<4xf32>
          %xa{j} = arith.select %ok{j}, %xa{j}r, %zero4 : vector<4xf32>
          %xb{j} = arith.select %ok{j}, %xb{j}r, %zero4 : vector<4xf32>
"#,
        j32 = 32 * j
    );
    for e in 0..8 {
        let (v, i) = if e < 4 { ("xa", e) } else { ("xb", e - 4) };
        s += &format!(
            "          %e{j}_{e} = vector.extract %{v}{j}[{i}] : f32 from vector<4xf32>\n"
        );
    }
    // B fragments: (code 0, code 4) and (2, 6) for the first mma, (1, 5) and (3, 7) for
    // the second; each as f16 high part and f16 rest.
    for (p, (a, b)) in [(0, 4), (2, 6), (1, 5), (3, 7)].iter().enumerate() {
        s += &format!(
            r#"          %pv{j}_{p} = vector.from_elements %e{j}_{a}, %e{j}_{b} : vector<2xf32>
          %bh{j}_{p} = arith.truncf %pv{j}_{p} : vector<2xf32> to vector<2xf16>
          %bhf{j}_{p} = arith.extf %bh{j}_{p} : vector<2xf16> to vector<2xf32>
          %bd{j}_{p} = arith.subf %pv{j}_{p}, %bhf{j}_{p} : vector<2xf32>
          %bl{j}_{p} = arith.truncf %bd{j}_{p} : vector<2xf32> to vector<2xf16>
"#
        );
    }
    s += &format!(
        "          %cj{j}i = arith.constant {j} : index\n          %ls4{j} = arith.muli %ls, %k4 : index\n          %lsj{j} = arith.addi %ls4{j}, %cj{j}i : index\n"
    );
    s += &format!(
        r#"          %lsj8{j} = arith.muli %lsj{j}, %k8 : index
          %xsrow{j} = arith.addi %xsbase, %lsj8{j} : index
          %tig2{j} = arith.muli %tig, %k2 : index
          %xsi{j} = arith.addi %xsrow{j}, %tig2{j} : index
          %xsi{j}b = arith.addi %xsi{j}, %k1 : index
          %xs0_{j} = memref.load %xs[%xsi{j}] : {xs_t}
          %xs1_{j} = memref.load %xs[%xsi{j}b] : {xs_t}
          %srcj{j} = arith.addi %srcbase, %cj{j}i : index
          %src{j} = arith.index_cast %srcj{j} : index to i32
"#
    );
    let mma = |d: &str, a: [String; 4], b: [String; 2], c: [String; 4]| {
        format!(
            "          {d} = nvvm.mma.sync A[{}] B[{}] C[{}] {{layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>\n",
            a.join(", "),
            b.join(", "),
            c.join(", ")
        )
    };
    for m in 0..TILES {
        let t = format!("{j}_{m}");
        // Row `a` is gid, row `b` is gid + 8.
        for h in ["a", "b"] {
            s += &format!(
                r#"          %sj{h}{t}, %oks{h}{t} = gpu.shuffle idx %s{h}{m}, %src{j}, %width : f32
          %zj{h}{t}, %okz{h}{t} = gpu.shuffle idx %z{h}{m}, %src{j}, %width : f32
          %wd{h}{t} = vector.extract %w{h}{m}[{j}] : i32 from vector<4xi32>
          %wd8{h}{t} = arith.shrui %wd{h}{t}, %sh8 : i32
"#
            );
            // q pairs: 0 = (c0, c4), 1 = (c1, c5), 2 = (c2, c6), 3 = (c3, c7).
            for (q, (src, mask)) in [("", "mlo"), ("", "mhi"), ("8", "mlo"), ("8", "mhi")]
                .iter()
                .enumerate()
            {
                s += &format!(
                    r#"          %qm{h}{t}_{q} = arith.andi %wd{src}{h}{t}, %{mask} : i32
          %qo{h}{t}_{q} = arith.ori %qm{h}{t}_{q}, %magic : i32
          %qv{h}{t}_{q} = vector.broadcast %qo{h}{t}_{q} : i32 to vector<1xi32>
          %qh{h}{t}_{q} = vector.bitcast %qv{h}{t}_{q} : vector<1xi32> to vector<2xf16>
"#
                );
                s += &if q % 2 == 0 {
                    format!("          %q{h}{t}_{q} = arith.subf %qh{h}{t}_{q}, %h1024 : vector<2xf16>\n")
                } else {
                    // (1024 + 16q)/16 − 64 = q, exactly; `contract` makes it one f16x2
                    // multiply-add (`math.fma` would become a libdevice call).
                    format!("          %qs{h}{t}_{q} = arith.mulf %qh{h}{t}_{q}, %h16th fastmath<contract> : vector<2xf16>\n          %q{h}{t}_{q} = arith.addf %qs{h}{t}_{q}, %hm64 fastmath<contract> : vector<2xf16>\n")
                };
            }
        }
        // The word's codes in order: pair 0 = codes (0, 4), 1 = (1, 5), 2 = (2, 6),
        // 3 = (3, 7). The first mma takes pairs 0 and 2 of both rows with B (0, 4), (2, 6);
        // the second pairs 1 and 3 with B (1, 5), (3, 7).
        let a1 = [
            format!("%qa{t}_0"),
            format!("%qb{t}_0"),
            format!("%qa{t}_2"),
            format!("%qb{t}_2"),
        ];
        let a2 = [
            format!("%qa{t}_1"),
            format!("%qb{t}_1"),
            format!("%qa{t}_3"),
            format!("%qb{t}_3"),
        ];
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
        // Four mmas into one accumulator: A1 with B's high then low parts, then A2 alike.
        let plan = [
            (&a1, 0, 1, "bh"),
            (&a1, 0, 1, "bl"),
            (&a2, 2, 3, "bh"),
            (&a2, 2, 3, "bl"),
        ];
        let mut c: [String; 4] = std::array::from_fn(|_| "%zero".to_string());
        for (i, (a, b0, b1, part)) in plan.into_iter().enumerate() {
            let d = format!("%d{t}_{i}");
            s += &mma(
                &d,
                a.clone(),
                [format!("%{part}{j}_{b0}"), format!("%{part}{j}_{b1}")],
                c,
            );
            let (txt, v) = ext(&d);
            s += &txt;
            c = v;
        }
        let d = c;
        // acc[m][row][col] += s_row · (D[row][col] − z_row · Σx[col]); accumulator i of
        // tile m is 4m + 2·(row b) + col.
        for (i, (h, dv, xsv)) in [
            ("a", &d[0], format!("%xs0_{j}")),
            ("a", &d[1], format!("%xs1_{j}")),
            ("b", &d[2], format!("%xs0_{j}")),
            ("b", &d[3], format!("%xs1_{j}")),
        ]
        .into_iter()
        .enumerate()
        {
            let ai = 4 * m + i as u64;
            let prev = if j == 0 {
                format!("%acc{ai}")
            } else {
                format!("%u{ai}_{}", j - 1)
            };
            s += &format!(
                r#"          %zx{ai}_{j} = arith.mulf %zj{h}{t}, {xsv} : f32
          %dz{ai}_{j} = arith.subf {dv}, %zx{ai}_{j} : f32
          %sd{ai}_{j} = arith.mulf %sj{h}{t}, %dz{ai}_{j} : f32
          %u{ai}_{j} = arith.addf {prev}, %sd{ai}_{j} : f32
"#
            );
        }
    }
    s
}

/// Each warp's accumulators into shared memory: row `16m + gid (+8)` of the block, columns
/// `2·tig` and `2·tig + 1` (rows of A), at `(warp·32 + row)·8 + column`.
fn store_red(red_t: &str) -> String {
    let mut s = String::from(
        "        %wrb = arith.muli %warp, %crpb : index\n        %tig2o = arith.muli %tig, %k2 : index\n",
    );
    for m in 0..TILES {
        for (hi, off) in [0u64, 8].iter().enumerate() {
            for col in 0..2u64 {
                let ai = 4 * m + 2 * hi as u64 + col;
                s += &format!(
                    r#"        %ro{ai} = arith.constant {ro} : index
        %rw{ai} = arith.addi %wrb, %ro{ai} : index
        %rg{ai} = arith.addi %rw{ai}, %gid : index
        %r8{ai} = arith.muli %rg{ai}, %k8 : index
        %rc{ai} = arith.addi %r8{ai}, %tig2o : index
        %co{ai} = arith.constant {col} : index
        %slot{ai} = arith.addi %rc{ai}, %co{ai} : index
        memref.store %acc#{ai}, %red[%slot{ai}] : {red_t}
"#,
                    ro = 16 * m + off
                );
            }
        }
    }
    s
}

//! The arithmetic of MHA → GQA on calibration second moments (techniques.md §6). Every
//! quantity the methods need is a function of the Gram matrix `CᵀC / N` of a projection's
//! output over calibration tokens (`C = [K_1 … K_H]`): Procrustes cross-covariances are its
//! head blocks, RoPE planes read 2×2 pieces of it, and the low-rank merge is the
//! eigendecomposition of a group's diagonal block.
//!
//! A plan says, for each new KV head `j`, which original heads it serves and, per member
//! head `h`, a compression `M_h` and a reconstruction `R_h` (both `d × d`):
//! `k'_j = Σ_h M_h k_h` and `k_h ≈ R_h k'_j`. The reconstruction is folded into the
//! readers: `W_q^{(h)} ← R_hᵀ W_q^{(h)}` for keys, `W_o^{(h)} ← W_o^{(h)} R_h` for values.
//!
//! - mean pooling: `M = I/g`, `R = I`, consecutive heads;
//! - Procrustes alignment `Q_h` then mean pooling: `M = Q_hᵀ/g`, `R = Q_h`;
//! - low-rank merge: the top-`d` eigenvectors `U` of the group's block, `M = U_hᵀ`,
//!   `R = U_h` (for RoPE keys per 2-D plane, a complex eigenvector, §6.3);
//! - alignment without merging (every head keeps its KV head): `M = Q_hᵀ`, `R = Q_h`.
//!
//! For keys under RoPE every map is restricted to complex scalars per rotate-half plane
//! (dims `p` and `p + d/2`), the maps that commute with RoPE; reflections are excluded.

use super::linalg::{mm, polar, sym_eigen, tr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Mean of the (aligned) heads.
    Mean,
    /// Closed-form optimal rank-`d` merge of the group's cache.
    LowRank,
    /// Align only: every head keeps its own KV head (exact).
    None,
}

/// One side (keys or values) of a layer's calibration statistics.
pub struct Side<'a> {
    /// `H·d × H·d` row-major Gram matrix of the projection's output.
    pub gram: &'a [f64],
    pub heads: usize,
    pub d: usize,
    /// Keys under rotary embeddings (rotate-half planes).
    pub rope: bool,
}

/// `(M_h, R_h)` per member head.
pub type Maps = Vec<(Vec<f64>, Vec<f64>)>;

pub struct Plan {
    /// Members (original head indices) of each new KV head.
    pub kv: Vec<Vec<usize>>,
    pub keys: Vec<Maps>,
    pub values: Vec<Maps>,
}

impl Side<'_> {
    fn n(&self) -> usize {
        self.heads * self.d
    }

    /// `K_hᵀ K_k` (d × d).
    fn block(&self, h: usize, k: usize) -> Vec<f64> {
        let (n, d) = (self.n(), self.d);
        let mut out = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = self.gram[(h * d + i) * n + k * d + j];
            }
        }
        out
    }

    fn trace(&self, h: usize) -> f64 {
        let (n, d) = (self.n(), self.d);
        (0..d).map(|i| self.gram[(h * d + i) * n + h * d + i]).sum()
    }

    /// `Σ_t conj(z_h) z_k` for RoPE plane `p` (z = k[p] + ι·k[p + d/2]).
    fn plane(&self, p: usize, h: usize, k: usize) -> (f64, f64) {
        let (n, d) = (self.n(), self.d);
        let (a, b) = (p, p + d / 2);
        let gv = |h: usize, i: usize, k: usize, j: usize| self.gram[(h * d + i) * n + k * d + j];
        (
            gv(h, a, k, a) + gv(h, b, k, b),
            gv(h, a, k, b) - gv(h, b, k, a),
        )
    }

    /// Similarity of heads h and k after the best admissible alignment, in [−1, 1]:
    /// `2·max_Q tr(Qᵀ K_hᵀK_k) / (‖K_h‖² + ‖K_k‖²)`.
    pub fn similarity(&self, h: usize, k: usize) -> f64 {
        let best = if self.rope {
            (0..self.d / 2)
                .map(|p| {
                    let (re, im) = self.plane(p, h, k);
                    (re * re + im * im).sqrt()
                })
                .sum()
        } else {
            polar(&self.block(h, k), self.d).1
        };
        2.0 * best / (self.trace(h) + self.trace(k)).max(1e-300)
    }

    /// Generalized Procrustes within a group: the `Q_hᵀ` (d × d) that map each member
    /// onto the common frame (`k̃_h = Q_hᵀ k_h`).
    // Planes index both the per-head coefficients and the Gram matrix.
    #[allow(clippy::needless_range_loop)]
    pub fn align(&self, members: &[usize]) -> Vec<Vec<f64>> {
        let (d, g) = (self.d, members.len());
        if self.rope {
            // c_h per plane, unit modulus: maximize Re Σ conj(c_h) c_k H[h,k].
            let half = d / 2;
            let mut c = vec![vec![(1.0f64, 0.0f64); half]; g];
            for p in 0..half {
                let mut prev = f64::NEG_INFINITY;
                for _ in 0..100 {
                    for hi in 0..g {
                        let (mut wr, mut wi) = (0.0, 0.0);
                        for ki in 0..g {
                            if ki == hi {
                                continue;
                            }
                            let (hr, him) = self.plane(p, members[hi], members[ki]);
                            let (cr, ci) = c[ki][p];
                            wr += hr * cr - him * ci;
                            wi += hr * ci + him * cr;
                        }
                        let m = (wr * wr + wi * wi).sqrt();
                        if m > 1e-300 {
                            c[hi][p] = (wr / m, wi / m);
                        }
                    }
                    let mut obj = 0.0;
                    for hi in 0..g {
                        for ki in 0..g {
                            let (hr, him) = self.plane(p, members[hi], members[ki]);
                            let (ar, ai) = c[hi][p];
                            let (br, bi) = c[ki][p];
                            // Re(conj(a) b H)
                            let (xr, xi) = (ar * br + ai * bi, ar * bi - ai * br);
                            obj += xr * hr - xi * him;
                        }
                    }
                    if obj - prev <= 1e-5 * obj.abs().max(1e-300) {
                        break;
                    }
                    prev = obj;
                }
            }
            c.iter().map(|ch| complex_planes(ch, d)).collect()
        } else {
            let mut q: Vec<Vec<f64>> = (0..g).map(|_| eye(d)).collect();
            let mut prev = f64::NEG_INFINITY;
            for _ in 0..100 {
                for hi in 0..g {
                    let mut acc = vec![0.0; d * d];
                    for ki in 0..g {
                        if ki == hi {
                            continue;
                        }
                        let t = mm(&self.block(members[hi], members[ki]), &q[ki], d, d, d);
                        acc.iter_mut().zip(&t).for_each(|(a, b)| *a += b);
                    }
                    if acc.iter().any(|v| *v != 0.0) {
                        q[hi] = polar(&acc, d).0;
                    }
                }
                let mut obj = 0.0;
                for hi in 0..g {
                    for ki in 0..g {
                        let t = mm(
                            &tr(&q[hi], d, d),
                            &mm(&self.block(members[hi], members[ki]), &q[ki], d, d, d),
                            d,
                            d,
                            d,
                        );
                        obj += (0..d).map(|i| t[i * d + i]).sum::<f64>();
                    }
                }
                if obj - prev <= 1e-5 * obj.abs().max(1e-300) {
                    break;
                }
                prev = obj;
            }
            // k̃ = Q_hᵀ k.
            q.iter().map(|m| tr(m, d, d)).collect()
        }
    }

    /// The optimal rank-d merge of a group: `(M_h, R_h)` per member.
    pub fn low_rank(&self, members: &[usize]) -> Maps {
        let (d, g) = (self.d, members.len());
        if self.rope {
            let half = d / 2;
            let mut u = vec![vec![(0.0f64, 0.0f64); half]; g];
            for p in 0..half {
                // Hermitian H = A + ιB as the real symmetric [[A, −B], [B, A]].
                let m = 2 * g;
                let mut s = vec![0.0; m * m];
                for hi in 0..g {
                    for ki in 0..g {
                        let (a, b) = self.plane(p, members[hi], members[ki]);
                        s[hi * m + ki] = a;
                        s[(hi + g) * m + ki + g] = a;
                        s[hi * m + ki + g] = -b;
                        s[(hi + g) * m + ki] = b;
                    }
                }
                let (_, v) = sym_eigen(&s, m);
                for (hi, uh) in u.iter_mut().enumerate() {
                    uh[p] = (v[hi * m], v[(hi + g) * m]);
                }
            }
            u.iter()
                .map(|uh| {
                    let r = complex_planes(uh, d);
                    (tr(&r, d, d), r)
                })
                .collect()
        } else {
            let (n, gd) = (self.n(), g * d);
            let mut s = vec![0.0; gd * gd];
            for (bi, &h) in members.iter().enumerate() {
                for (bk, &k) in members.iter().enumerate() {
                    for i in 0..d {
                        for j in 0..d {
                            s[(bi * d + i) * gd + bk * d + j] =
                                self.gram[(h * d + i) * n + k * d + j];
                        }
                    }
                }
            }
            let (_, v) = sym_eigen(&s, gd);
            (0..g)
                .map(|bi| {
                    // U_h: rows bi·d.. of the top-d eigenvectors.
                    let mut uh = vec![0.0; d * d];
                    for i in 0..d {
                        for j in 0..d {
                            uh[i * d + j] = v[(bi * d + i) * gd + j];
                        }
                    }
                    (tr(&uh, d, d), uh)
                })
                .collect()
        }
    }

    /// `(M_h, R_h)` of one group under a merge rule.
    pub fn maps(&self, members: &[usize], merge: Merge, aligned: bool) -> Maps {
        let d = self.d;
        let g = members.len() as f64;
        match merge {
            Merge::LowRank => self.low_rank(members),
            Merge::Mean | Merge::None => {
                let qt: Vec<Vec<f64>> = if aligned {
                    self.align(members)
                } else {
                    members.iter().map(|_| eye(d)).collect()
                };
                let f = if merge == Merge::Mean { 1.0 / g } else { 1.0 };
                qt.into_iter()
                    .map(|q| {
                        let r = tr(&q, d, d);
                        (q.iter().map(|x| x * f).collect(), r)
                    })
                    .collect()
            }
        }
    }
}

fn eye(d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for i in 0..d {
        m[i * d + i] = 1.0;
    }
    m
}

/// The real `d × d` matrix multiplying each rotate-half plane `p` by the complex `c[p]`.
fn complex_planes(c: &[(f64, f64)], d: usize) -> Vec<f64> {
    let half = d / 2;
    let mut m = vec![0.0; d * d];
    for (p, &(re, im)) in c.iter().enumerate() {
        let (a, b) = (p, p + half);
        m[a * d + a] = re;
        m[a * d + b] = -im;
        m[b * d + a] = im;
        m[b * d + b] = re;
    }
    m
}

/// Partitions `h` heads into `groups` equal groups maximizing the summed within-group
/// similarity: pairwise swaps between groups until none improves, from the consecutive
/// partition and from `restarts` seeded random ones; the best partition wins.
pub fn group_heads(
    sim: &[f64],
    h: usize,
    groups: usize,
    restarts: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let g = h / groups;
    let score = |assign: &[usize]| -> f64 {
        let mut s = 0.0;
        for a in 0..h {
            for b in a + 1..h {
                if assign[a] == assign[b] {
                    s += sim[a * h + b];
                }
            }
        }
        s
    };
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut best: Option<(f64, Vec<usize>)> = None;
    for r in 0..=restarts {
        let mut assign: Vec<usize> = (0..h).map(|i| i / g).collect();
        if r > 0 {
            for i in (1..h).rev() {
                let j = next() % (i + 1);
                assign.swap(i, j);
            }
        }
        let mut cur = score(&assign);
        loop {
            let mut improved = false;
            for a in 0..h {
                for b in a + 1..h {
                    if assign[a] == assign[b] {
                        continue;
                    }
                    assign.swap(a, b);
                    let s = score(&assign);
                    if s > cur + 1e-12 {
                        cur = s;
                        improved = true;
                    } else {
                        assign.swap(a, b);
                    }
                }
            }
            if !improved {
                break;
            }
        }
        if best.as_ref().is_none_or(|(s, _)| cur > *s + 1e-12) {
            best = Some((cur, assign));
        }
    }
    let assign = best.map(|b| b.1).unwrap_or_default();
    let mut out = vec![Vec::new(); groups];
    for (head, &grp) in assign.iter().enumerate() {
        out[grp].push(head);
    }
    // Canonical order: groups by their first head.
    out.sort();
    out
}

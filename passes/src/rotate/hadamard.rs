//! Hadamard matrices (`H Hᵀ = n I`, entries ±1) of the orders rotations need: Sylvester
//! for powers of two, Paley I and II over finite fields GF(p^k) for small "odd" orders,
//! and Kronecker products `H_K ⊗ H_{2^m}` for the sizes of real models (768 = 12·64,
//! 11008 = 344·32, 14336 = 28·512, 688 = 344·2). Orders no construction reaches (156, 172
//! alone) return `None`; callers then fall back to a block-diagonal Sylvester rotation.

/// A ±1 matrix, row-major, `n × n`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hadamard {
    pub n: usize,
    pub data: Vec<i8>,
}

impl Hadamard {
    pub fn at(&self, i: usize, j: usize) -> i8 {
        self.data[i * self.n + j]
    }

    /// `max |H Hᵀ − n I|` (0 for a Hadamard matrix), in exact integer arithmetic.
    pub fn orthogonality_defect(&self) -> i64 {
        let n = self.n;
        let mut worst = 0i64;
        for i in 0..n {
            let ri = &self.data[i * n..(i + 1) * n];
            for j in i..n {
                let rj = &self.data[j * n..(j + 1) * n];
                let dot: i64 = ri
                    .iter()
                    .zip(rj)
                    .map(|(&a, &b)| (a as i64) * (b as i64))
                    .sum();
                let want = if i == j { n as i64 } else { 0 };
                worst = worst.max((dot - want).abs());
            }
        }
        worst
    }

    pub fn kron(&self, other: &Hadamard) -> Hadamard {
        let (a, b) = (self.n, other.n);
        let n = a * b;
        let mut data = vec![0i8; n * n];
        for i in 0..a {
            for j in 0..a {
                let s = self.at(i, j);
                for k in 0..b {
                    for l in 0..b {
                        data[(i * b + k) * n + j * b + l] = s * other.at(k, l);
                    }
                }
            }
        }
        Hadamard { n, data }
    }
}

/// Sylvester's `H_{2n} = [[H, H], [H, −H]]`: entry (i, j) is `(−1)^{popcount(i & j)}`.
pub fn sylvester(n: usize) -> Option<Hadamard> {
    if n == 0 || !n.is_power_of_two() {
        return None;
    }
    let data = (0..n * n)
        .map(|k| {
            if ((k / n) & (k % n)).count_ones().is_multiple_of(2) {
                1
            } else {
                -1
            }
        })
        .collect();
    Some(Hadamard { n, data })
}

/// The finite field GF(p^k) for k ≤ 3, elements numbered by their base-p digits
/// (coefficients of a polynomial in the generator, lowest first).
struct Field {
    p: usize,
    k: usize,
    /// Monic irreducible polynomial's lower coefficients (x^k = −Σ c_i x^i).
    modulus: Vec<usize>,
}

impl Field {
    fn new(q: usize) -> Option<Field> {
        let (p, k) = prime_power(q)?;
        if k > 3 {
            // For degree ≤ 3 "no root" means irreducible; larger degrees are not needed.
            return None;
        }
        let modulus = if k == 1 {
            vec![]
        } else {
            // Smallest monic polynomial of degree k with no root in GF(p).
            (0..p.pow(k as u32)).find_map(|code| {
                let c: Vec<usize> = (0..k).map(|i| code / p.pow(i as u32) % p).collect();
                let has_root = (0..p).any(|x| {
                    let mut v = 1usize; // x^k
                    for _ in 0..k {
                        v = v * x % p;
                    }
                    let mut xi = 1usize;
                    for &ci in &c {
                        v = (v + ci * xi) % p;
                        xi = xi * x % p;
                    }
                    v == 0
                });
                (!has_root).then_some(c)
            })?
        };
        Some(Field { p, k, modulus })
    }

    fn q(&self) -> usize {
        self.p.pow(self.k as u32)
    }

    fn digits(&self, a: usize) -> Vec<usize> {
        (0..self.k)
            .map(|i| a / self.p.pow(i as u32) % self.p)
            .collect()
    }

    fn number(&self, d: &[usize]) -> usize {
        d.iter().rev().fold(0, |acc, &x| acc * self.p + x)
    }

    fn sub(&self, a: usize, b: usize) -> usize {
        let (da, db) = (self.digits(a), self.digits(b));
        let d: Vec<usize> = da
            .iter()
            .zip(&db)
            .map(|(x, y)| (x + self.p - y) % self.p)
            .collect();
        self.number(&d)
    }

    fn mul(&self, a: usize, b: usize) -> usize {
        let (p, k) = (self.p, self.k);
        let (da, db) = (self.digits(a), self.digits(b));
        let mut prod = vec![0usize; 2 * k];
        for (i, x) in da.iter().enumerate() {
            for (j, y) in db.iter().enumerate() {
                prod[i + j] = (prod[i + j] + x * y) % p;
            }
        }
        // Reduce x^d for d ≥ k with x^k = −Σ c_i x^i.
        for d in (k..2 * k).rev() {
            let top = prod[d];
            if top == 0 {
                continue;
            }
            prod[d] = 0;
            for (i, &c) in self.modulus.iter().enumerate() {
                prod[d - k + i] = (prod[d - k + i] + p - top * c % p) % p;
            }
        }
        self.number(&prod[..k])
    }

    /// χ(a): 0 for 0, 1 for a nonzero square, −1 otherwise.
    fn quadratic_character(&self) -> Vec<i8> {
        let q = self.q();
        let mut chi = vec![-1i8; q];
        chi[0] = 0;
        for x in 1..q {
            chi[self.mul(x, x)] = 1;
        }
        chi
    }

    /// Jacobsthal matrix `Q_ij = χ(j − i)`.
    fn jacobsthal(&self) -> Vec<i8> {
        let q = self.q();
        let chi = self.quadratic_character();
        let mut m = vec![0i8; q * q];
        for i in 0..q {
            for j in 0..q {
                m[i * q + j] = chi[self.sub(j, i)];
            }
        }
        m
    }
}

/// `q = p^k` for a prime p.
fn prime_power(q: usize) -> Option<(usize, usize)> {
    if q < 2 {
        return None;
    }
    let p = (2..=q).find(|d| q.is_multiple_of(*d))?;
    let (mut r, mut k) = (q, 0);
    while r % p == 0 {
        r /= p;
        k += 1;
    }
    (r == 1).then_some((p, k))
}

/// Paley I: order q + 1 for a prime power q ≡ 3 (mod 4); `H = I + [[0, 1ᵀ], [−1, Q]]`.
pub fn paley1(q: usize) -> Option<Hadamard> {
    if q % 4 != 3 {
        return None;
    }
    let f = Field::new(q)?;
    let jq = f.jacobsthal();
    let n = q + 1;
    let mut data = vec![0i8; n * n];
    for j in 1..n {
        data[j] = 1;
        data[j * n] = -1;
    }
    for i in 0..q {
        for j in 0..q {
            data[(i + 1) * n + j + 1] = jq[i * q + j];
        }
    }
    for i in 0..n {
        data[i * n + i] += 1;
    }
    Some(Hadamard { n, data })
}

/// Paley II: order 2(q + 1) for a prime power q ≡ 1 (mod 4);
/// `H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]` with `C = [[0, 1ᵀ], [1, Q]]`.
pub fn paley2(q: usize) -> Option<Hadamard> {
    if q % 4 != 1 {
        return None;
    }
    let f = Field::new(q)?;
    let jq = f.jacobsthal();
    let m = q + 1;
    let c = |i: usize, j: usize| -> i8 {
        match (i, j) {
            (0, 0) => 0,
            (0, _) | (_, 0) => 1,
            _ => jq[(i - 1) * q + j - 1],
        }
    };
    let n = 2 * m;
    let mut data = vec![0i8; n * n];
    const A: [[i8; 2]; 2] = [[1, 1], [1, -1]];
    const B: [[i8; 2]; 2] = [[1, -1], [-1, -1]];
    for i in 0..m {
        for j in 0..m {
            for (k, (ar, br)) in A.iter().zip(&B).enumerate() {
                for l in 0..2 {
                    let v = c(i, j) * ar[l] + if i == j { br[l] } else { 0 };
                    data[(2 * i + k) * n + 2 * j + l] = v;
                }
            }
        }
    }
    Some(Hadamard { n, data })
}

/// A Hadamard matrix of an order that is not a power of two, from Paley I or II.
fn paley(k: usize) -> Option<Hadamard> {
    if k < 4 || !k.is_multiple_of(4) {
        return None;
    }
    paley1(k - 1).or_else(|| paley2(k / 2 - 1))
}

/// The Hadamard matrix of order n as `H_K ⊗ H_{2^m}` (see [`factor`]); `None` when no
/// construction reaches n.
pub fn hadamard(n: usize) -> Option<Hadamard> {
    let (hk, m) = factor(n)?;
    let hm = sylvester(m)?;
    Some(match hk {
        Some(hk) => hk.kron(&hm),
        None => hm,
    })
}

/// `(n / 2^v, 2^v)` with 2^v the largest power of two dividing n.
pub fn split_pow2(n: usize) -> Option<(usize, usize)> {
    if n == 0 {
        return None;
    }
    let p = 1usize << n.trailing_zeros();
    Some((n / p, p))
}

/// The factor `K` and its matrix for `n = K·2^m` (K = 1 for a power of two), as the online
/// op needs it: the smallest constructible K.
pub fn factor(n: usize) -> Option<(Option<Hadamard>, usize)> {
    let (_, pow) = split_pow2(n)?;
    let mut m = pow;
    while m >= 1 {
        let k = n / m;
        if k == 1 {
            return Some((None, m));
        }
        if let Some(hk) = paley(k) {
            return Some((Some(hk), m));
        }
        m /= 2;
    }
    None
}

//! Small dense f64 decompositions for head alignment and merging: a cyclic Jacobi
//! eigensolver for symmetric matrices (the matrices here are at most a few hundred wide)
//! and the orthogonal polar factor (the orthogonal Procrustes solution `U Vᵀ` of an SVD
//! `U Σ Vᵀ`). Written out rather than taken from faer, whose decompositions schedule on
//! its global (rayon) parallelism.

/// Eigenvalues (descending) and eigenvectors (columns of the row-major `n × n` result,
/// in the same order) of the symmetric row-major `a`.
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..60 {
        let mut off = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                off += m[i * n + j] * m[i * n + j];
            }
        }
        if off.sqrt() <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rows and columns p, q of m; columns p, q of v.
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| m[b * n + b].total_cmp(&m[a * n + a]));
    let vals = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (c, &i) in order.iter().enumerate() {
        for r in 0..n {
            vecs[r * n + c] = v[r * n + i];
        }
    }
    (vals, vecs)
}

/// Row-major `a[m×k] · b[k×n]` in f64.
pub fn mm(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            if x == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += x * b[p * n + j];
            }
        }
    }
    out
}

/// Transpose of a row-major `r × c` matrix.
pub fn tr(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = a[i * c + j];
        }
    }
    out
}

/// The orthogonal polar factor of the square `a` (`U Vᵀ` for `a = U Σ Vᵀ`), computed as
/// `a (aᵀa)^{-1/2}`; directions with singular values below `1e-10·σ_max` are dropped
/// from the inverse square root, and the sum of singular values (the Procrustes
/// objective `tr(Qᵀa)`) is returned with it.
pub fn polar(a: &[f64], n: usize) -> (Vec<f64>, f64) {
    let ata = mm(&tr(a, n, n), a, n, n, n);
    let (vals, vecs) = sym_eigen(&ata, n);
    let top = vals.first().copied().unwrap_or(0.0).max(0.0);
    let mut inv_sqrt = vec![0.0; n * n];
    let mut nuclear = 0.0;
    for (k, &l) in vals.iter().enumerate() {
        if l <= 1e-20 * top || l <= 0.0 {
            continue;
        }
        nuclear += l.sqrt();
        let f = 1.0 / l.sqrt();
        for i in 0..n {
            let vi = vecs[i * n + k] * f;
            for j in 0..n {
                inv_sqrt[i * n + j] += vi * vecs[j * n + k];
            }
        }
    }
    (mm(a, &inv_sqrt, n, n, n), nuclear)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn eigen_reconstructs() {
        let n = 12;
        let mut s = 3;
        let x: Vec<f64> = (0..n * 20).map(|_| lcg(&mut s)).collect();
        let a = mm(&tr(&x, 20, n), &x, n, 20, n);
        let (vals, v) = sym_eigen(&a, n);
        assert!(vals.windows(2).all(|w| w[0] >= w[1]));
        // V diag(λ) Vᵀ = A and VᵀV = I.
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n).map(|k| v[i * n + k] * vals[k] * v[j * n + k]).sum();
                assert!((r - a[i * n + j]).abs() < 1e-10, "{r} vs {}", a[i * n + j]);
                let o: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!((o - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn polar_recovers_a_rotation() {
        let n = 6;
        let mut s = 7;
        let x: Vec<f64> = (0..n * n).map(|_| lcg(&mut s)).collect();
        let (q, _) = polar(&x, n);
        // Q orthogonal; and polar(Q·P) = Q for symmetric positive definite P.
        let qtq = mm(&tr(&q, n, n), &q, n, n, n);
        for i in 0..n {
            for j in 0..n {
                assert!((qtq[i * n + j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
        let y: Vec<f64> = (0..n * 9).map(|_| lcg(&mut s)).collect();
        let p = mm(&tr(&y, 9, n), &y, n, 9, n);
        let (q2, _) = polar(&mm(&q, &p, n, n, n), n);
        for (a, b) in q.iter().zip(&q2) {
            assert!((a - b).abs() < 1e-8);
        }
    }
}

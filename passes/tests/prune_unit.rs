//! `prune`'s building blocks against their invariants (techniques.md §2, Appendix A):
//! masks under every pattern, SparseGPT with `H = I` equals magnitude pruning, sparsity 0
//! changes nothing, GPTQ after pruning keeps the zeros, option errors name the option.

mod quant_common;

use compc_passes::prune::options::Pattern;
use compc_passes::prune::pattern::{holds_nm, mask_layer, mask_nm, mask_rows, sparsity_of};
use compc_passes::prune::sparsegpt::{sparsegpt, SparseGptConfig};
use compc_passes::prune::{magnitude, wanda};
use compc_passes::quant::gptq::{gptq, GptqConfig};
use compc_passes::quant::Grid;
use quant_common::{calib, mlp, run_pipeline, Lcg};

fn identity(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect()
}

/// A Hessian `XᵀX` of random correlated inputs (positive definite).
fn hessian(rng: &mut Lcg, n: usize, tokens: usize) -> Vec<f64> {
    let x = rng.vec(tokens * n, 1.0);
    let mut h = vec![0f64; n * n];
    for t in 0..tokens {
        let row = &x[t * n..(t + 1) * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] += (row[i] * row[j]) as f64;
            }
        }
    }
    h.iter().map(|v| v * 2.0 / tokens as f64).collect()
}

fn apply(w: &[f32], mask: &[bool]) -> Vec<f32> {
    w.iter()
        .zip(mask)
        .map(|(&x, &m)| if m { 0.0 } else { x })
        .collect()
}

#[test]
fn masks_prune_the_requested_amount_and_n_m_holds() {
    let mut rng = Lcg(3);
    let (rows, cols) = (16, 40);
    let w = rng.vec(rows * cols, 1.0);
    let s = magnitude::scores(&w);
    let layer = apply(&w, &mask_layer(&s, 0.5));
    assert_eq!(sparsity_of(&layer), 0.5);
    let by_rows = apply(&w, &mask_rows(&s, cols, 0.3));
    for row in by_rows.chunks(cols) {
        assert_eq!(row.iter().filter(|&&x| x == 0.0).count(), 12);
    }
    for (n, m) in [(2, 4), (4, 8)] {
        let p = apply(&w, &mask_nm(&s, cols, n, m));
        assert!(holds_nm(&p, cols, n, m));
        assert_eq!(sparsity_of(&p), 0.5);
        // The kept entries of each group are its largest.
        for (g0, g1) in w.chunks(m).zip(p.chunks(m)) {
            let kept_min = g0
                .iter()
                .zip(g1)
                .filter(|(_, &b)| b != 0.0)
                .map(|(a, _)| a.abs())
                .fold(f32::INFINITY, f32::min);
            let dropped_max = g0
                .iter()
                .zip(g1)
                .filter(|(_, &b)| b == 0.0)
                .map(|(a, _)| a.abs())
                .fold(0f32, f32::max);
            assert!(dropped_max <= kept_min);
        }
    }
    // A dense matrix violates 2:4; a short last group keeps at most m − n entries.
    assert!(!holds_nm(&w, cols, 2, 4));
    let p = apply(&w, &mask_nm(&s, 7, 2, 4));
    assert!(holds_nm(&p, 7, 2, 4));
}

#[test]
fn wanda_scores_scale_columns_by_activation_norms() {
    let w = vec![1.0, -2.0, 3.0, -4.0];
    let s = wanda::scores(&w, &[3.0, 0.5]);
    assert_eq!(s, vec![3.0, 1.0, 9.0, 2.0]);
    // With a dominant input feature, Wanda keeps its weights where magnitude would not.
    let m = mask_rows(&s, 2, 0.5);
    assert_eq!(m, vec![false, true, false, true]);
}

#[test]
fn sparsegpt_with_identity_hessian_is_magnitude_pruning() {
    let mut rng = Lcg(11);
    let (rows, cols) = (24, 64);
    let w = rng.vec(rows * cols, 1.0);
    let h = identity(cols);
    // One block over all columns: one threshold over the layer, as magnitude's.
    let cfg = SparseGptConfig {
        sparsity: 0.5,
        pattern: Pattern::Unstructured,
        block: cols,
        damp: 0.01,
    };
    let res = sparsegpt(&w, rows, cols, &h, &cfg).unwrap();
    let mag = apply(&w, &mask_layer(&magnitude::scores(&w), 0.5));
    assert_eq!(res.w, mag);
    // N:M with any block size equals magnitude N:M row by row.
    for (n, m) in [(2, 4), (4, 8)] {
        let cfg = SparseGptConfig {
            sparsity: n as f64 / m as f64,
            pattern: Pattern::NM { n, m },
            block: 16,
            damp: 0.01,
        };
        let res = sparsegpt(&w, rows, cols, &h, &cfg).unwrap();
        let mag = apply(&w, &mask_nm(&magnitude::scores(&w), cols, n, m));
        assert_eq!(res.w, mag, "{n}:{m}");
        assert!(holds_nm(&res.w, cols, n, m));
    }
}

#[test]
fn sparsegpt_compensates_and_keeps_its_mask() {
    let mut rng = Lcg(5);
    let (rows, cols) = (16, 48);
    let w = rng.vec(rows * cols, 1.0);
    let h = hessian(&mut rng, cols, 400);
    let cfg = SparseGptConfig {
        sparsity: 0.5,
        pattern: Pattern::NM { n: 2, m: 4 },
        block: 16,
        damp: 0.01,
    };
    let res = sparsegpt(&w, rows, cols, &h, &cfg).unwrap();
    assert!(holds_nm(&res.w, cols, 2, 4));
    // The reconstruction error tr(ΔHΔᵀ) is below plain magnitude 2:4's.
    let err = |p: &[f32]| -> f64 {
        let mut e = 0.0;
        for r in 0..rows {
            let d: Vec<f64> = (0..cols)
                .map(|c| (w[r * cols + c] - p[r * cols + c]) as f64)
                .collect();
            for i in 0..cols {
                for j in 0..cols {
                    e += d[i] * h[i * cols + j] * d[j];
                }
            }
        }
        e
    };
    let mag = apply(&w, &mask_nm(&magnitude::scores(&w), cols, 2, 4));
    assert!(err(&res.w) < err(&mag), "{} vs {}", err(&res.w), err(&mag));
    // Sparsity 0 leaves the weight as it was.
    let zero = SparseGptConfig {
        sparsity: 0.0,
        pattern: Pattern::Unstructured,
        block: 16,
        damp: 0.01,
    };
    assert_eq!(sparsegpt(&w, rows, cols, &h, &zero).unwrap().w, w);
}

#[test]
fn gptq_keeps_pruned_zeros() {
    let mut rng = Lcg(9);
    let (rows, cols) = (8, 64);
    let mut w = rng.vec(rows * cols, 1.0);
    let mask = mask_nm(&magnitude::scores(&w), cols, 2, 4);
    for (x, &m) in w.iter_mut().zip(&mask) {
        if m {
            *x = 0.0;
        }
    }
    let h = hessian(&mut rng, cols, 300);
    for (bits, sym, group, act_order) in [(4, false, 32, true), (8, true, 0, false)] {
        let cfg = GptqConfig {
            grid: Grid::new(bits, sym),
            group,
            block: 128,
            damp: 0.01,
            act_order,
        };
        let q = gptq(&w, rows, cols, &h, &cfg).unwrap().q.dequantize();
        for (i, (&x, &m)) in q.iter().zip(&mask).enumerate() {
            if m {
                assert_eq!(x, 0.0, "element {i} (int{bits})");
            }
        }
        assert!(holds_nm(&q, cols, 2, 4));
    }
}

#[test]
fn pipeline_prunes_and_errors_name_the_problem() {
    let mut rng = Lcg(1);
    let g = mlp(&mut rng, 32, 64, 16);
    let c = calib(&g, &mut rng, 8);
    // sparsity 0 is an exact no-op.
    let (out, _) = run_pipeline(&g, "prune{sparsity=0,layers=all}", None).unwrap();
    assert_eq!(compc_ir::text::print(&out), compc_ir::text::print(&g));
    let (out, ledger) =
        run_pipeline(&g, "prune{method=wanda,pattern=2:4,layers=all}", Some(&c)).unwrap();
    let notes = format!("{:?}", ledger);
    assert!(notes.contains("2:4 holds"), "{notes}");
    assert_eq!(
        out.metadata
            .get("compc.sparsity")
            .map(|s| s.starts_with("pattern=2:4")),
        Some(true)
    );
    let cases = [
        ("prune{method=wanda}", false, "needs calibration data"),
        ("prune{method=sparsegpt}", false, "needs calibration data"),
        ("prune{method=random}", true, "method"),
        ("prune{pattern=3:4}", true, "pattern"),
        ("prune{sparsity=1.5}", true, "sparsity"),
        ("prune{sparsity=1}", true, "sparsity=1 is out of range"),
        ("prune{pattern=2:4,sparsity=0.7}", true, "contradicts"),
        ("prune{method=sparsegpt,scope=global}", true, "scope="),
        ("prune{ratio=0.5}", true, "structured="),
        (
            "prune{structured=mlp,importance=wanda}",
            false,
            "needs calibration data",
        ),
        (
            "prune{structured=mlp,ratio=1}",
            true,
            "ratio=1 is out of range",
        ),
    ];
    for (p, with_calib, want) in cases {
        let err = run_pipeline(&g, p, with_calib.then_some(&c))
            .err()
            .unwrap_or_default();
        assert!(err.contains(want), "{p}: {err}");
    }
}

//! The uniform quantizer and RTN (techniques.md §1.1, Appendix A).

use compc_passes::quant::grid::{code, dequant, fake, min_max, mse_clip_range, round_even, Grid};
use compc_passes::quant::rtn::{rtn, rtn_with_ranges};
use compc_passes::quant::QMatrix;

/// Deterministic pseudo-random numbers in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

const GRIDS: [(u32, bool); 8] = [
    (8, true),
    (8, false),
    (4, true),
    (4, false),
    (3, true),
    (3, false),
    (2, true),
    (2, false),
];

#[test]
fn rounding_is_half_to_even_like_onnx() {
    for x in [
        -3.5f32, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -7.25, 126.5, 1e6, -4194304.0,
    ] {
        assert_eq!(round_even(x), x.round_ties_even(), "{x}");
    }
    let mut r = Lcg(7);
    for _ in 0..100_000 {
        let x = r.next() * 300.0;
        assert_eq!(round_even(x), x.round_ties_even(), "{x}");
    }
}

#[test]
fn error_is_at_most_half_a_step_for_unclipped_values() {
    let mut r = Lcg(1);
    for (bits, sym) in GRIDS {
        let grid = Grid::new(bits, sym);
        for _ in 0..50 {
            let scale = 3.0 * r.next().abs() + 0.01;
            let x = r.vec(128, scale);
            let (s, z) = grid.params_of(&x);
            for &v in &x {
                let q = code(v, s, z, grid.qmax());
                let unclipped = q > 0.0 && q < grid.qmax();
                if unclipped {
                    let e = (dequant(q, s, z) - v).abs();
                    assert!(
                        e <= s / 2.0 * (1.0 + 1e-5),
                        "{bits}/{sym}: {v} → {e} > {}",
                        s / 2.0
                    );
                }
            }
        }
    }
}

#[test]
fn asymmetric_and_restricted_symmetric_ranges_never_clip() {
    // Asymmetric grids cover [min, max]; int8 symmetric (±127) covers ±max|x|.
    let mut r = Lcg(2);
    for (bits, sym) in [(8, true), (8, false), (4, false), (3, false), (2, false)] {
        let grid = Grid::new(bits, sym);
        let x = r.vec(1000, 2.0);
        let (s, z) = grid.params_of(&x);
        for &v in &x {
            let e = (fake(v, s, z, grid.qmax()) - v).abs();
            assert!(
                e <= s * 0.5 * (1.0 + 1e-4) + 1e-7,
                "{bits}/{sym}: {v} error {e}, step {s}"
            );
        }
    }
}

#[test]
fn quantize_dequantize_is_idempotent_on_grid_values() {
    let mut r = Lcg(3);
    for (bits, sym) in GRIDS {
        let grid = Grid::new(bits, sym);
        let x = r.vec(256, 1.5);
        let (s, z) = grid.params_of(&x);
        let qmax = grid.qmax();
        for &v in &x {
            let once = fake(v, s, z, qmax);
            let twice = fake(once, s, z, qmax);
            assert_eq!(once.to_bits(), twice.to_bits(), "{bits}/{sym} {v}");
        }
    }
}

#[test]
fn zero_is_exact_and_zero_ranges_give_valid_scales() {
    for (bits, sym) in GRIDS {
        let grid = Grid::new(bits, sym);
        for x in [
            vec![0.0f32; 16],
            vec![1e-40; 16],
            vec![3.0; 16],
            vec![-2.0; 16],
        ] {
            let (s, z) = grid.params_of(&x);
            assert!(s.is_finite() && s > 0.0, "{bits}/{sym} {x:?}: scale {s}");
            assert!(z >= 0.0 && z <= grid.qmax());
            assert_eq!(fake(0.0, s, z, grid.qmax()), 0.0, "0 must be exact");
            for &v in &x {
                let y = fake(v, s, z, grid.qmax());
                assert!(y.is_finite());
            }
        }
        let q = rtn(&[0.0; 64], 4, 16, 0, grid);
        assert!(q.scales.iter().all(|s| s.is_finite() && *s > 0.0));
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn int8_symmetric_rows_on_the_grid_are_reproduced_exactly() {
    // Row i = integers in [-127, 127] times a power-of-two step: RTN finds s = step.
    let mut r = Lcg(4);
    let (rows, cols) = (8, 64);
    let mut w = Vec::new();
    for i in 0..rows {
        let step = 2f32.powi(-(i as i32) - 3);
        for j in 0..cols {
            let k = if j == 0 {
                127.0
            } else {
                (r.next() * 127.0).round()
            };
            w.push(k * step);
        }
    }
    let q = rtn(&w, rows, cols, 0, Grid::new(8, true));
    assert_eq!(q.dequantize(), w);
}

#[test]
fn a_group_as_wide_as_the_row_is_per_channel() {
    let mut r = Lcg(5);
    let (rows, cols) = (6, 128);
    let w = r.vec(rows * cols, 1.0);
    for (bits, sym) in GRIDS {
        let grid = Grid::new(bits, sym);
        let a = rtn(&w, rows, cols, 0, grid);
        let b = rtn(&w, rows, cols, 128, grid);
        assert_eq!(a, b, "{bits}/{sym}");
        assert!(a.per_channel());
    }
}

#[test]
fn groups_are_independent_rtn_of_each_slice() {
    let mut r = Lcg(6);
    let (rows, cols, group) = (5, 96, 32);
    let w = r.vec(rows * cols, 1.0);
    let grid = Grid::new(4, false);
    let q = rtn(&w, rows, cols, group, grid);
    assert_eq!(q.groups(), 3);
    for i in 0..rows {
        for gi in 0..3 {
            let slice: Vec<f32> = w[i * cols + gi * group..i * cols + (gi + 1) * group].to_vec();
            let one = rtn(&slice, 1, group, 0, grid);
            assert_eq!(one.scales[0], q.scales[i * 3 + gi]);
            assert_eq!(one.zeros[0], q.zeros[i * 3 + gi]);
            assert_eq!(
                one.codes,
                &q.codes[i * cols + gi * group..i * cols + (gi + 1) * group]
            );
        }
    }
    // A last group shorter than the others.
    let w2 = r.vec(3 * 80, 1.0);
    let q2 = rtn(&w2, 3, 80, 32, grid);
    assert_eq!(q2.groups(), 3);
    let tail = rtn(&w2[64..80], 1, 16, 0, grid);
    assert_eq!(tail.scales[0], q2.scales[2]);
}

#[test]
fn requantizing_dequantized_weights_gives_the_same_codes() {
    let mut r = Lcg(8);
    let (rows, cols) = (16, 128);
    let w = r.vec(rows * cols, 0.5);
    // GPTQ's full-range symmetric grid is left out: its range is ±max|x| over 2^b − 1
    // steps, so the dequantized extremes (−2^(b−1)·s and (2^(b−1)−1)·s) span a different
    // range and give a different scale on the second pass.
    for (bits, sym) in GRIDS.into_iter().filter(|&(b, s)| !s || b == 8) {
        for group in [0, 32, 128] {
            let grid = Grid::new(bits, sym);
            let q = rtn(&w, rows, cols, group, grid);
            let again = rtn(&q.dequantize(), rows, cols, group, grid);
            assert_eq!(q.codes, again.codes, "{bits}/{sym} g{group}");
            assert_eq!(q.zeros, again.zeros);
            for (a, b) in q.scales.iter().zip(&again.scales) {
                assert!((a - b).abs() <= a * 1e-5, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn ranges_given_explicitly_match_rtn_on_min_max() {
    let mut r = Lcg(9);
    let (rows, cols) = (4, 64);
    let w = r.vec(rows * cols, 1.0);
    let grid = Grid::new(4, false);
    let a = rtn(&w, rows, cols, 32, grid);
    let ranges = compc_passes::quant::rtn::group_ranges(&w, cols, 32);
    let mut b = QMatrix::zeroed(rows, cols, 32, grid);
    rtn_with_ranges(&w, &mut b, &ranges);
    assert_eq!(a, b);
}

#[test]
fn mse_clipping_never_increases_the_error() {
    let mut r = Lcg(10);
    let grid = Grid::new(4, false);
    let qmax = grid.qmax();
    for _ in 0..20 {
        let mut x = r.vec(128, 1.0);
        x[7] = 6.0; // an outlier that clipping trades off
        let err = |lo: f32, hi: f32| -> f32 {
            let (s, z) = grid.params(lo, hi);
            x.iter()
                .map(|&v| (fake(v, s, z, qmax) - v).abs().powf(2.4))
                .sum()
        };
        let (lo, hi) = min_max(&x);
        let (cl, ch) = mse_clip_range(&x, grid, 100, 0.8, 2.4);
        assert!(err(cl, ch) <= err(lo, hi));
    }
}

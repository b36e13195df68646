//! Per-layer rank allocation at a fixed total parameter budget (`alloc=energy`).
//!
//! A uniform ratio gives every layer the same share of its parameters, although layers
//! differ in how fast their spectra decay: a layer whose energy sits in a few singular
//! values loses little at a low rank, another loses much. Keeping singular value i of
//! layer l costs `m_l + n_l` parameters and removes `σ_{l,i}² / Σ_j σ_{l,j}²` from that
//! layer's relative squared truncation error (for SVD-LLM's whitened spectrum, exactly
//! its relative output error on the calibration inputs, techniques.md §8.3). Minimising
//! the sum of the layers' relative errors under the budget is a knapsack whose items
//! have decreasing value within each layer, so taking items by value per parameter, best
//! first, is optimal up to the last item that does not fit (ASVD's global threshold
//! search chooses the same way, with sensitivity in place of energy).

/// One layer's shape and the singular values of its (transformed) weight.
#[derive(Clone, Debug)]
pub struct Spectrum {
    pub m: usize,
    pub n: usize,
    pub sigma: Vec<f64>,
}

impl Spectrum {
    fn cost(&self) -> u64 {
        (self.m + self.n) as u64
    }

    /// The largest rank that still saves parameters: `r (m + n) < m n`.
    pub fn max_rank(&self) -> usize {
        let (m, n) = (self.m, self.n);
        ((m * n).saturating_sub(1) / (m + n).max(1))
            .min(m.min(n))
            .min(self.sigma.len())
    }
}

/// Ranks (at least 1, at most [`Spectrum::max_rank`]) whose total `Σ r_l (m_l + n_l)`
/// does not exceed `budget` (beyond the rank-1 minimum), chosen by normalised energy
/// per parameter.
pub fn allocate(layers: &[Spectrum], budget: u64) -> Vec<usize> {
    let mut ranks: Vec<usize> = layers.iter().map(|l| l.max_rank().min(1)).collect();
    let mut used: u64 = layers
        .iter()
        .zip(&ranks)
        .map(|(l, &r)| l.cost() * r as u64)
        .sum();
    // Every candidate singular value beyond the first: (value per parameter, layer).
    let mut items: Vec<(f64, usize)> = Vec::new();
    for (li, l) in layers.iter().enumerate() {
        let total: f64 = l.sigma.iter().map(|s| s * s).sum();
        if total <= 0.0 {
            continue;
        }
        for s in l.sigma.iter().take(l.max_rank()).skip(1) {
            items.push((s * s / total / l.cost() as f64, li));
        }
    }
    // Best first; within a layer the values do not increase, so a layer's items are
    // taken in order and its rank is simply their count.
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, li) in items {
        let c = layers[li].cost();
        if used + c <= budget {
            used += c;
            ranks[li] += 1;
        }
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(layers: &[Spectrum], r: &[usize]) -> u64 {
        layers
            .iter()
            .zip(r)
            .map(|(l, &r)| l.cost() * r as u64)
            .sum()
    }

    #[test]
    fn identical_layers_get_identical_ranks() {
        let sigma: Vec<f64> = (0..64).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let layers = vec![
            Spectrum {
                m: 64,
                n: 64,
                sigma: sigma.clone()
            };
            4
        ];
        let r = allocate(&layers, 4 * 16 * 128);
        assert_eq!(r, vec![16; 4]);
    }

    #[test]
    fn faster_decay_gets_less_rank_within_the_budget() {
        let flat: Vec<f64> = vec![1.0; 64];
        let steep: Vec<f64> = (0..64).map(|i| 0.5f64.powi(i)).collect();
        let layers = vec![
            Spectrum {
                m: 64,
                n: 64,
                sigma: flat,
            },
            Spectrum {
                m: 64,
                n: 64,
                sigma: steep,
            },
        ];
        let budget = 2 * 16 * 128;
        let r = allocate(&layers, budget);
        assert!(r[0] > 16 && r[1] < 16, "{r:?}");
        assert!(params(&layers, &r) <= budget);
        assert!(r
            .iter()
            .zip(&layers)
            .all(|(&r, l)| r >= 1 && r <= l.max_rank()));
    }

    #[test]
    fn the_choice_is_a_threshold_no_swap_improves() {
        // Different shapes and spectra: every kept singular value is worth at least as
        // much per parameter as every dropped one that would have fitted.
        let mk = |m: usize, n: usize, d: f64| Spectrum {
            m,
            n,
            sigma: (0..m.min(n)).map(|i| (-(i as f64) * d).exp()).collect(),
        };
        let layers = vec![mk(32, 48, 0.05), mk(48, 32, 0.2), mk(40, 40, 0.01)];
        let budget = 3000;
        let r = allocate(&layers, budget);
        let used = params(&layers, &r);
        assert!(used <= budget, "used {used}");
        let value = |l: &Spectrum, i: usize| {
            let t: f64 = l.sigma.iter().map(|s| s * s).sum();
            l.sigma[i] * l.sigma[i] / t / l.cost() as f64
        };
        let kept_min = layers
            .iter()
            .zip(&r)
            .filter(|(_, &r)| r > 1)
            .map(|(l, &r)| value(l, r - 1))
            .fold(f64::INFINITY, f64::min);
        // A better singular value left out can only be one that no longer fits.
        for (l, &ri) in layers.iter().zip(&r) {
            if ri < l.max_rank() && value(l, ri) > kept_min {
                assert!(used + l.cost() > budget, "{r:?}");
            }
        }
        // Spending the budget differently never lowers the summed relative error.
        let err = |r: &[usize]| -> f64 {
            layers
                .iter()
                .zip(r)
                .map(|(l, &r)| {
                    let t: f64 = l.sigma.iter().map(|s| s * s).sum();
                    l.sigma[r..].iter().map(|s| s * s).sum::<f64>() / t
                })
                .sum()
        };
        let uniform: Vec<usize> = layers
            .iter()
            .map(|l| (budget as usize / 3) / (l.m + l.n))
            .collect();
        assert!(params(&layers, &uniform) <= budget);
        assert!(err(&r) < err(&uniform), "{r:?} vs uniform {uniform:?}");
    }

    #[test]
    fn ranks_never_exceed_what_saves_parameters() {
        let layers = vec![Spectrum {
            m: 8,
            n: 8,
            sigma: vec![1.0; 8],
        }];
        // 8·8 = 64 parameters; rank 3 costs 48, rank 4 would cost 64 (no saving).
        assert_eq!(layers[0].max_rank(), 3);
        assert_eq!(allocate(&layers, 10_000), vec![3]);
    }
}

//! Calibration batches from text for byte-level LMs: `N` windows of `T` bytes at seeded
//! random offsets of a text file, written as an .npz with one i64 `[N, T]` array named
//! after the model's input.

use anyhow::{bail, Context, Result};
use compc_runtime::Tensor;
use std::path::Path;

/// SplitMix64: a small, well-mixed generator; calibration draws only need to be
/// reproducible from the seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub fn text_batches(text: &[u8], samples: usize, seq: usize, seed: u64) -> Result<Tensor> {
    if samples == 0 || seq == 0 {
        bail!("samples and sequence length must be positive");
    }
    if text.len() < seq {
        bail!(
            "the text has {} bytes, fewer than one sequence of {seq}",
            text.len()
        );
    }
    let mut rng = SplitMix(seed);
    let span = (text.len() - seq + 1) as u64;
    let mut ids = Vec::with_capacity(samples * seq);
    for _ in 0..samples {
        let start = (rng.next() % span) as usize;
        ids.extend(text[start..start + seq].iter().map(|&b| b as i64));
    }
    Ok(Tensor::from_i64(vec![samples, seq], ids))
}

pub fn write_text_calib(
    text: &Path,
    out: &Path,
    input: &str,
    samples: usize,
    seq: usize,
    seed: u64,
) -> Result<()> {
    let bytes = std::fs::read(text).with_context(|| format!("cannot read {}", text.display()))?;
    let t = text_batches(&bytes, samples, seq, seed)?;
    compc_runtime::npz::write_npz(out, &[(input.to_string(), t)])
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))
}

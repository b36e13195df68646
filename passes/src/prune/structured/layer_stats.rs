//! Calibration statistics of the inputs of the linears a structured prune scores
//! (per-feature norms and token counts for Wanda and Taylor importance, means for
//! compensation), gathered in one run of the unpruned model.

use crate::calib::runner::DEFAULT_BATCH;
use crate::calib::{CalibRunner, InputStats};
use crate::context::CalibData;
use crate::pass::PassError;
use crate::quant::layers::Layer;
use compc_ir::{Graph, ValueRef};

/// The statistics of every distinct input of `layers`.
pub struct LayerStats {
    pub stats: Vec<(ValueRef, InputStats)>,
    /// The runner over the calibration batches, for a later end-to-end measurement.
    pub runner: CalibRunner,
}

impl LayerStats {
    pub fn collect<'a>(
        g: &Graph,
        calib: &CalibData,
        layers: impl IntoIterator<Item = &'a Layer>,
    ) -> Result<LayerStats, PassError> {
        let mut runner = CalibRunner::new(g, calib, DEFAULT_BATCH)?;
        let mut stats: Vec<(ValueRef, InputStats)> = Vec::new();
        for l in layers {
            if let Some(x) = l.input(g) {
                if !stats.iter().any(|(v, _)| *v == x) {
                    stats.push((x, InputStats::new(l.cols, false)));
                }
            }
        }
        let vs: Vec<ValueRef> = stats.iter().map(|s| s.0).collect();
        runner.run(g, &vs, None, &mut |_, outs| {
            for ((_, st), t) in stats.iter_mut().zip(&outs) {
                st.add(t, "structured pruning statistics")?;
            }
            Ok(())
        })?;
        Ok(LayerStats { stats, runner })
    }

    /// The statistics of `l`'s input.
    pub fn of(&self, g: &Graph, l: &Layer) -> Option<&InputStats> {
        let x = l.input(g)?;
        self.stats.iter().find(|(v, _)| *v == x).map(|(_, s)| s)
    }
}

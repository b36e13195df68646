//! The pass manager runs a checked pipeline: it verifies the graph after each pass,
//! times each pass, optionally prints the IR after each, and records a ledger entry.

use crate::context::{CalibData, PassContext};
use crate::ledger::{GraphStats, Ledger, LedgerEntry};
use crate::registry::ConfiguredPass;
use compc_ir::Graph;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
#[error("pass `{pass}` failed: {message}")]
pub struct PipelineError {
    pub pass: String,
    pub message: String,
}

#[derive(Default)]
pub struct PassManager<'a> {
    pub passes: Vec<ConfiguredPass>,
    pub calib: Option<&'a CalibData>,
    pub seed: u64,
    pub progress: bool,
    /// Print the IR after every pass to this writer (`--print-ir-after-all`).
    pub print_ir_after_all: Option<Box<dyn Write + 'a>>,
    /// Verify after each pass (always on in the CLI; a pass that breaks the graph is a bug
    /// and must not write a broken model).
    pub verify: bool,
}

impl<'a> PassManager<'a> {
    pub fn new(passes: Vec<ConfiguredPass>) -> Self {
        PassManager {
            passes,
            verify: true,
            ..Default::default()
        }
    }

    /// Runs every pass in order and returns the ledger (model name and pipeline text are
    /// the caller's to fill in).
    pub fn run(&mut self, g: &mut Graph) -> Result<Ledger, PipelineError> {
        let mut ledger = Ledger {
            input: GraphStats::of(g),
            ..Default::default()
        };
        for cp in &self.passes {
            let name = cp.pass.name().to_string();
            let fail = |message: String| PipelineError {
                pass: name.clone(),
                message,
            };
            let before = GraphStats::of(g);
            let mut cx = PassContext {
                calib: self.calib,
                seed: self.seed,
                progress: self.progress,
                record: Default::default(),
            };
            let t0 = Instant::now();
            let changed = cp.pass.run(g, &mut cx).map_err(|e| fail(e.to_string()))?;
            let seconds = t0.elapsed().as_secs_f64();
            if self.verify {
                compc_ir::verify::verify(g)
                    .map_err(|e| fail(format!("the graph it produced does not verify: {e}")))?;
            }
            if let Some(w) = self.print_ir_after_all.as_mut() {
                let text = compc_ir::text::print(g);
                writeln!(w, "// ----- IR after {name} -----\n{text}")
                    .map_err(|e| fail(format!("cannot print the IR: {e}")))?;
            }
            ledger.passes.push(LedgerEntry {
                pass: name,
                options: cp
                    .options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                exactness: cp.pass.exactness(),
                changed: changed == crate::pass::Changed::Yes,
                seconds,
                before,
                after: GraphStats::of(g),
                record: cx.record,
            });
        }
        ledger.output = GraphStats::of(g);
        Ok(ledger)
    }
}

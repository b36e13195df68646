//! Benchmark (`cargo bench --bench egraph`), not a test: the time `egraph-opt` takes on the
//! exported fixture models (import excluded), best and median of several runs, with the
//! node counts before and after. The target is under 1 s on the encoder.
//!
//! `cargo bench --bench egraph -- MODEL.onnx ...` times other models instead.

use compc::passes::{GraphStats, PassManager, Registry};
use std::path::{Path, PathBuf};
use std::time::Instant;

const RUNS: usize = 7;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let models: Vec<PathBuf> = if args.is_empty() {
        let mut v: Vec<PathBuf> = ["encoder", "decoder", "cnn"]
            .iter()
            .flat_map(|m| {
                ["torchscript", "dynamo"]
                    .iter()
                    .map(move |e| fixture(&format!("models/{m}.{e}.onnx")))
            })
            .collect();
        let lm = fixture("lm/lm.torchscript.onnx");
        if lm.exists() {
            v.push(lm);
        }
        v
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let registry = Registry::with_builtin_passes();
    println!(
        "{:<40} {:>7} {:>7} {:>10} {:>10}",
        "model", "nodes", "after", "best (s)", "median (s)"
    );
    for path in models {
        let g0 = match compc::driver::load_model(&path) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                continue;
            }
        };
        let mut times = Vec::with_capacity(RUNS);
        let mut after = 0;
        for _ in 0..RUNS {
            let mut g = g0.clone();
            let passes = registry
                .parse("egraph-opt")
                .expect("the pass is registered");
            let mut pm = PassManager::new(passes);
            // The verifier is the pass manager's, not the pass's; time the pass alone.
            pm.verify = false;
            let t = Instant::now();
            if let Err(e) = pm.run(&mut g) {
                eprintln!("{}: {e}", path.display());
                break;
            }
            times.push(t.elapsed().as_secs_f64());
            after = GraphStats::of(&g).nodes;
        }
        if times.is_empty() {
            continue;
        }
        times.sort_by(f64::total_cmp);
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!(
            "{:<40} {:>7} {:>7} {:>10.4} {:>10.4}",
            name,
            GraphStats::of(&g0).nodes,
            after,
            times[0],
            times[times.len() / 2]
        );
    }
}

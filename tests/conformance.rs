//! The ONNX backend node test suite (Debian's `libonnx-testdata`) run with compc's
//! runtime, checked against `tests/conformance/known_failures.txt`: a case failing that is
//! not listed is a regression; a listed case that passes must be taken off the list. The
//! pass count must also reach onnxruntime's on the same files (`ort_passed.txt`, made by
//! `tests/conformance/ort_count.py`).
//!
//! `COMPC_ONNX_NODE_DIR` points at another copy of the cases; without one the test skips,
//! saying so, when the package is not installed.

use compc::conformance::{run_dir, DEFAULT_DIR};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn list_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

/// Case names, one a line; `#` starts a comment (the reason a case fails).
fn read_list(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn onnx_node_suite() {
    let dir = std::env::var_os("COMPC_ONNX_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    if !dir.is_dir() {
        eprintln!(
            "skipping the ONNX conformance test: {} does not exist \
             (install it with `apt-get install libonnx-testdata`, or set COMPC_ONNX_NODE_DIR)",
            dir.display()
        );
        return;
    }
    let report = run_dir(&dir, 2).expect("read the cases");
    assert!(report.total() > 0, "no cases in {}", dir.display());
    let known = read_list(&list_file("known_failures.txt"));
    let failing: BTreeSet<String> = report.failing().iter().map(|s| s.to_string()).collect();
    let names: BTreeSet<&str> = report.results.iter().map(|r| r.name.as_str()).collect();

    let regressions: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.outcome.passed() && !known.contains(&r.name))
        .map(|r| format!("  {} ({}): {:?}", r.name, r.op, r.outcome))
        .collect();
    let fixed: Vec<&String> = known
        .iter()
        .filter(|k| names.contains(k.as_str()) && !failing.contains(*k))
        .collect();
    eprintln!("{}", report.summary());

    let mut problems = String::new();
    if !regressions.is_empty() {
        problems += &format!(
            "{} case(s) fail that are not in known_failures.txt:\n{}\n",
            regressions.len(),
            regressions.join("\n")
        );
    }
    if !fixed.is_empty() {
        problems += &format!(
            "{} case(s) in known_failures.txt pass now; remove them from the list:\n  {}\n",
            fixed.len(),
            fixed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    assert!(problems.is_empty(), "{problems}");

    let ort: usize = std::fs::read_to_string(list_file("ort_passed.txt"))
        .expect("read ort_passed.txt")
        .trim()
        .parse()
        .expect("ort_passed.txt holds a number");
    eprintln!(
        "compc passes {}/{}, onnxruntime {ort}",
        report.passed(),
        report.total()
    );
    assert!(
        report.passed() >= ort,
        "compc passes {} cases, fewer than onnxruntime's {ort}",
        report.passed()
    );
}

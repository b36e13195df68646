//! Filetests: `tests/filetests/<pass>/*.cir`. The first line names the pipeline
//! (`// RUN: cse,dce`); cases are separated by `// -----` lines. Each case is parsed, run
//! through the pipeline and printed; the printed IR of all cases is snapshotted with insta
//! (review changes with `cargo insta review`; CI runs with INSTA_UPDATE=no, so an
//! unreviewed snapshot fails). A case that fails prints `error: ...` instead, so error
//! messages are snapshotted too.
//!
//! Every case is also checked for two properties that need no snapshot:
//! - the text round trip: printing, parsing and printing again gives the same bytes;
//! - for pipelines of exact passes, the reference runtime gives the same outputs before
//!   and after on random inputs (symbolic dims set to 3), when all weights are inline.
//!
//! A case with the line `// EXPECT: the last pass keeps the outputs` runs the pipeline in
//! two steps: the outputs after the last pass are compared with those of the graph the
//! earlier passes produced (a lossy pass such as `quant` may come before an exact one),
//! and the snapshot gets the last pass's node counts by op and the notes that say which
//! rewrites it applied.

use compc::ir::{DType, Dim, Graph, Op};
use compc::passes::ledger::LedgerEntry;
use compc::passes::{Exactness, PassManager, Registry};
use compc::runtime::Tensor;

/// A small deterministic generator, so numeric checks are repeatable.
struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn random_inputs(g: &Graph, rng: &mut Lcg) -> Option<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for &id in g.inputs() {
        let node = g.node(id);
        let ty = &node.outputs[0];
        let dims: Vec<usize> = ty
            .shape
            .dims()?
            .iter()
            .map(|d| match d {
                Dim::Known(n) => *n as usize,
                _ => 3,
            })
            .collect();
        let n: usize = dims.iter().product();
        let t = match ty.dtype {
            DType::F32 => Tensor::from_f32(dims, (0..n).map(|_| rng.next_f32()).collect()),
            DType::I64 => Tensor::from_i64(dims, (0..n).map(|i| (i % 3) as i64).collect()),
            _ => return None,
        };
        out.push((node.name.clone(), t));
    }
    Some(out)
}

fn has_missing_weights(g: &Graph) -> bool {
    g.node_ids()
        .any(|id| matches!(g.node(id).op, Op::Const(w) if g.weights.get(w).is_missing()))
}

/// Runs the runtime before and after; `None` when the case cannot be run numerically.
fn numeric_check(before: &Graph, after: &Graph) -> Result<Option<()>, String> {
    if has_missing_weights(before) {
        return Ok(None);
    }
    let Some(inputs) = random_inputs(before, &mut Lcg(42)) else {
        return Ok(None);
    };
    let a = compc::runtime::run(before, &inputs).map_err(|e| format!("before: {e}"))?;
    let b = compc::runtime::run(after, &inputs).map_err(|e| format!("after: {e}"))?;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x.shape() != y.shape() {
            return Err(format!(
                "output {name}: shape {:?} became {:?}",
                x.shape(),
                y.shape()
            ));
        }
        for (p, q) in x.to_f32_vec().iter().zip(y.to_f32_vec()) {
            if (p - q).abs() > 1e-5 * (1.0 + p.abs()) && !(p.is_nan() && q.is_nan()) {
                return Err(format!("output {name}: {p} became {q}"));
            }
        }
    }
    Ok(Some(()))
}

fn run_case(registry: &Registry, pipeline: &str, src: &str) -> String {
    let mut g = match compc::ir::text::parse(src) {
        Ok(g) => g,
        Err(e) => return format!("error: {e}\n"),
    };
    let printed = compc::ir::text::print(&g);
    let reparsed = compc::ir::text::parse(&printed).expect("printed IR parses");
    assert_eq!(
        compc::ir::text::print(&reparsed),
        printed,
        "text round trip"
    );
    let passes = match registry.parse(pipeline) {
        Ok(p) => p,
        Err(e) => return format!("error: {e}\n"),
    };
    let exact_pipeline = passes
        .iter()
        .all(|p| p.pass.exactness() == Exactness::Exact);
    let exact = exact_pipeline || src.lines().any(|l| l.trim() == "// EXPECT: same outputs");
    if src
        .lines()
        .any(|l| l.trim() == "// EXPECT: the last pass keeps the outputs")
    {
        return run_last_pass_checked(g, passes, pipeline);
    }
    let before = g.clone();
    if let Err(e) = PassManager::new(passes).run(&mut g) {
        return format!("error: {e}\n");
    }
    let out = compc::ir::text::print(&g);
    let reparsed = compc::ir::text::parse(&out).expect("printed IR parses");
    assert_eq!(
        compc::ir::text::print(&reparsed),
        out,
        "text round trip after the pipeline"
    );
    if exact {
        match numeric_check(&before, &g) {
            Ok(Some(())) => format!("{out}// numerically equal to the input on random data\n"),
            Ok(None) if !exact_pipeline => {
                panic!("`// EXPECT: same outputs` on a case that cannot be run numerically\n{out}")
            }
            Ok(None) => format!("{out}// not run numerically\n"),
            Err(e) => panic!("pipeline `{pipeline}` changed the function: {e}\n{out}"),
        }
    } else {
        out
    }
}

/// Node counts by op that differ between before and after ("matmul 8 → 4").
fn op_changes(e: &LedgerEntry) -> String {
    let (b, a) = (&e.before.ops, &e.after.ops);
    let names: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    names
        .into_iter()
        .filter_map(|op| {
            let (x, y) = (
                b.get(op).copied().unwrap_or(0),
                a.get(op).copied().unwrap_or(0),
            );
            (x != y).then(|| format!("{op} {x} → {y}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `// EXPECT: the last pass keeps the outputs`: runs all passes but the last, then the
/// last, and checks the last against the graph it was given.
fn run_last_pass_checked(
    mut g: Graph,
    mut passes: Vec<compc::passes::registry::ConfiguredPass>,
    pipeline: &str,
) -> String {
    let Some(last) = passes.pop() else {
        panic!("`// EXPECT: the last pass keeps the outputs` with an empty pipeline");
    };
    assert_eq!(
        last.pass.exactness(),
        Exactness::Exact,
        "`// EXPECT: the last pass keeps the outputs` after a pass that is not exact"
    );
    if let Err(e) = PassManager::new(passes).run(&mut g) {
        return format!("error: {e}\n");
    }
    let before = g.clone();
    let ledger = match PassManager::new(vec![last]).run(&mut g) {
        Ok(l) => l,
        Err(e) => return format!("error: {e}\n"),
    };
    let entry = &ledger.passes[0];
    let out = compc::ir::text::print(&g);
    let reparsed = compc::ir::text::parse(&out).expect("printed IR parses");
    assert_eq!(
        compc::ir::text::print(&reparsed),
        out,
        "text round trip after the pipeline"
    );
    let mut s = out;
    s.push_str(&format!(
        "// {}: nodes {} → {}; {}\n",
        entry.pass,
        entry.before.nodes,
        entry.after.nodes,
        op_changes(entry)
    ));
    for n in entry
        .record
        .notes
        .iter()
        .filter(|n| n.starts_with("rules applied"))
    {
        s.push_str(&format!("// {}: {n}\n", entry.pass));
    }
    match numeric_check(&before, &g) {
        Ok(Some(())) => s.push_str(&format!(
            "// {}: numerically equal to its input on random data\n",
            entry.pass
        )),
        Ok(None) => panic!("`// EXPECT: the last pass keeps the outputs` on a case that cannot be run numerically\n{s}"),
        Err(e) => panic!("the last pass of `{pipeline}` changed the function: {e}\n{s}"),
    }
    s
}

#[test]
fn filetests() {
    let registry = Registry::with_builtin_passes();
    insta::glob!("filetests/**/*.cir", |path| {
        let src = std::fs::read_to_string(path).expect("filetest is readable");
        let first = src.lines().next().unwrap_or_default();
        let pipeline = first
            .strip_prefix("// RUN:")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `// RUN: <pipeline>`",
                    path.display()
                )
            })
            .trim()
            .to_string();
        let mut out = String::new();
        for (i, case) in src.split("\n// -----\n").enumerate() {
            if i > 0 {
                out.push_str("// -----\n");
            }
            out.push_str(&run_case(&registry, &pipeline, case));
        }
        insta::assert_snapshot!(out);
    });
}

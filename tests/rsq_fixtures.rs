//! RSQ on the LM fixture: `rotate{rsq=true}` makes the GPTQ that follows weight its
//! Hessians by attention received (the same codes as `quant{importance=attncon}`, other
//! codes than plain GPTQ); the request is consumed by quant and never exported; token
//! importance with another method is an error.

mod common;

use common::{lm, lm_ids, run_pipeline, try_pipeline};
use compc::ir::op::Op;
use compc::ir::Graph;
use compc::passes::{CalibData, PassManager, Registry};
use std::collections::BTreeMap;

const KEY: &str = "compc.gptq_token_importance";

fn calib() -> CalibData {
    CalibData {
        tensors: lm_ids(4, 48, 0),
    }
}

/// Packed codes of every MatMulNBits, by constant name.
fn codes(g: &Graph) -> BTreeMap<String, Vec<u8>> {
    g.node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::MatMulNBits(_)))
        .filter_map(|n| g.const_weight(g.node(n).input(1)?))
        .map(|w| (w.name.clone(), w.bytes().unwrap().to_vec()))
        .collect()
}

#[test]
fn rsq_request_weights_gptq_and_is_consumed() {
    let g = lm();
    let c = calib();
    let rotated = run_pipeline(&g, "rotate{rsq=true}", None);
    assert_eq!(
        rotated.metadata.get(KEY).map(String::as_str),
        Some("attncon")
    );
    let passes = Registry::with_builtin_passes()
        .parse("rotate{rsq=true},quant{bits=3,method=gptq}")
        .unwrap();
    let mut rsq = g.clone();
    let mut pm = PassManager::new(passes);
    pm.calib = Some(&c);
    let ledger = pm.run(&mut rsq).unwrap();
    assert!(
        !rsq.metadata.contains_key(KEY),
        "the request outlived quant"
    );
    let notes = &ledger.passes[1].record.notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("attncon") && n.contains("16 of 17 stages")),
        "{notes:?}"
    );
    let explicit = run_pipeline(
        &g,
        "rotate,quant{bits=3,method=gptq,importance=attncon}",
        Some(&c),
    );
    let plain = run_pipeline(&g, "rotate,quant{bits=3,method=gptq}", Some(&c));
    let (a, b, p) = (codes(&rsq), codes(&explicit), codes(&plain));
    assert_eq!(a.len(), 29);
    assert_eq!(a, b, "rotate{{rsq=true}} and importance=attncon differ");
    // Weighted Hessians change GPTQ's choices in every block layer (and so the inputs of
    // lm_head, whose own Hessian is unweighted).
    let changed = a.iter().filter(|(k, v)| p.get(*k) != Some(v)).count();
    assert!(changed >= 28, "{changed} layers changed");
    // `importance=none` overrides the request.
    let none = run_pipeline(
        &g,
        "rotate{rsq=true},quant{bits=3,method=gptq,importance=none}",
        Some(&c),
    );
    assert_eq!(codes(&none), p);
}

#[test]
fn the_request_is_not_exported_and_other_methods_refuse_importance() {
    let g = lm();
    let rotated = run_pipeline(&g, "rotate{rsq=true}", None);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    compc::onnx::export::export_file(&rotated, &model, &Default::default()).unwrap();
    let back = compc::driver::load_model(&model).unwrap();
    assert!(
        back.metadata.keys().all(|k| !k.contains("importance")),
        "{:?}",
        back.metadata
    );
    let e = try_pipeline(&g, "quant{method=rtn,importance=attncon}", None).unwrap_err();
    assert!(
        e.contains("importance=attncon") && e.contains("method=rtn"),
        "{e}"
    );
}

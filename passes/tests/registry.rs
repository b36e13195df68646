//! Pipelines are checked against the registry before anything runs: unknown passes and
//! options list what is valid, and every option value is checked against its kind.

use compc_ir::Graph;
use compc_passes::{
    Changed, Exactness, OptionKind, OptionSpec, Pass, PassContext, PassDescriptor, PassError,
    Registry,
};

struct Noop;

impl Pass for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassContext) -> Result<Changed, PassError> {
        Ok(Changed::No)
    }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "bits",
        kind: OptionKind::Int { min: 2, max: 8 },
        default: Some("4"),
        help: "bit width",
    },
    OptionSpec {
        name: "ratio",
        kind: OptionKind::Float { min: 0.0, max: 1.0 },
        default: None,
        help: "a fraction",
    },
    OptionSpec {
        name: "method",
        kind: OptionKind::Choice(&["rtn", "gptq"]),
        default: Some("rtn"),
        help: "how",
    },
    OptionSpec {
        name: "sym",
        kind: OptionKind::Bool,
        default: Some("false"),
        help: "symmetric",
    },
];

fn registry() -> Registry {
    let mut r = Registry::with_builtin_passes();
    r.register(PassDescriptor {
        name: "noop",
        summary: "does nothing",
        exactness: Exactness::Exact,
        options: OPTIONS,
        build: |_| Ok(Box::new(Noop)),
    });
    r
}

fn err(pipeline: &str) -> String {
    match registry().parse(pipeline) {
        Ok(_) => panic!("`{pipeline}` was accepted"),
        Err(e) => e,
    }
}

#[test]
fn defaults_are_filled_and_values_typed() {
    let passes = registry().parse("noop{ratio=0.25,sym=true},dce").unwrap();
    assert_eq!(passes.len(), 2);
    let o = &passes[0].options;
    assert_eq!(o.int("bits"), Some(4));
    assert_eq!(o.float("ratio"), Some(0.25));
    assert_eq!(o.text("method"), Some("rtn"));
    assert_eq!(o.bool("sym"), Some(true));
}

#[test]
fn bad_values_say_what_was_expected() {
    assert_eq!(
        err("noop{bits=9}"),
        "option `bits` of pass `noop`: `9` is not in 2..=8 (expected bits=<int 2..=8> (default 4))"
    );
    assert!(err("noop{bits=four}").contains("`four` is not an integer"));
    assert!(err("noop{ratio=1.5}").contains("`1.5` is not in 0..=1"));
    assert!(err("noop{ratio=nan}").contains("`nan` is not in 0..=1"));
    assert!(err("noop{method=awq}").contains("`awq` is not one of rtn, gptq"));
    assert!(err("noop{sym=yes}").contains("`yes` is not true or false"));
    assert!(err("noop{bits=4,bits=8}").contains("given twice"));
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let e = err("noop{bitz=4}");
    assert!(e.contains("pass `noop` has no option `bitz`; valid options: bits=<int 2..=8> (default 4), ratio=<float 0..=1>"), "{e}");
    let e = err("dce,nope");
    // The list grows as passes are added: check its start and that `noop` is in it.
    assert!(
        e.starts_with("unknown pass `nope`; valid passes: const-fold, cse, dce"),
        "{e}"
    );
    assert!(e.contains(" noop"), "{e}");
}

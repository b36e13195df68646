//! A pass written against compc's public API, registered beside the built-in passes and
//! run through the same pipeline syntax:
//!
//! ```text
//! cargo run --example custom_pass -- [FILE.cir]
//! ```
//!
//! `fold-mul-one` removes multiplications by a constant 1 (`x * 1 → x`), when the
//! multiplication does not change the shape of `x` through broadcasting.

use compc::ir::op::BinaryOp;
use compc::ir::{Graph, Op, ValueRef};
use compc::passes::{
    Changed, Exactness, OptionKind, OptionSpec, Pass, PassContext, PassDescriptor, PassError,
    PassManager, Registry,
};

pub struct FoldMulOne {
    /// Also fold `x / 1` when set.
    pub include_div: bool,
}

/// True if `v` is a constant whose every element equals 1.
fn is_all_ones(g: &Graph, v: ValueRef) -> bool {
    match g.const_weight(v) {
        Some(w) if w.dtype.is_float() && !w.is_missing() && w.numel() <= 1 << 20 => w
            .to_f32_vec()
            .is_ok_and(|vals| vals.iter().all(|&x| x == 1.0)),
        _ => false,
    }
}

impl Pass for FoldMulOne {
    fn name(&self) -> &'static str {
        "fold-mul-one"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Exact
    }

    fn run(&self, g: &mut Graph, cx: &mut PassContext) -> Result<Changed, PassError> {
        let mut folded = 0;
        for id in g.topo_order()? {
            let node = g.node(id);
            let Op::Binary(kind) = node.op else { continue };
            let (Some(a), Some(b)) = (node.input(0), node.input(1)) else {
                continue;
            };
            let out_ty = node.outputs[0].clone();
            // x * 1 and 1 * x; x / 1 only with the option (1 / x is not x).
            let keep = match kind {
                BinaryOp::Mul if is_all_ones(g, b) => a,
                BinaryOp::Mul if is_all_ones(g, a) => b,
                BinaryOp::Div if self.include_div && is_all_ones(g, b) => a,
                _ => continue,
            };
            // Broadcasting against the constant could make the result bigger than `x`;
            // only fold when the type is unchanged.
            if g.value_type(keep) != Some(&out_ty) {
                continue;
            }
            g.replace_all_uses(ValueRef::new(id, 0), keep);
            folded += 1;
        }
        cx.touch(folded);
        cx.note(format!("folded {folded} multiplications by one"));
        Ok(Changed::from_bool(folded > 0))
    }
}

/// The descriptor that makes the pass known to a registry.
pub fn descriptor() -> PassDescriptor {
    PassDescriptor {
        name: "fold-mul-one",
        summary: "remove multiplications by a constant 1",
        exactness: Exactness::Exact,
        options: &[OptionSpec {
            name: "include_div",
            kind: OptionKind::Bool,
            default: Some("false"),
            help: "also remove divisions by a constant 1",
        }],
        build: |o| {
            Ok(Box::new(FoldMulOne {
                include_div: o.bool("include_div").unwrap_or(false),
            }))
        },
    }
}

/// Parses `src`, runs `pipeline` with the custom pass registered, returns the printed IR.
pub fn run_pipeline(src: &str, pipeline: &str) -> Result<String, String> {
    let mut registry = Registry::with_builtin_passes();
    registry.register(descriptor());
    let passes = registry.parse(pipeline)?;
    let mut g = compc::ir::text::parse(src).map_err(|e| e.to_string())?;
    PassManager::new(passes)
        .run(&mut g)
        .map_err(|e| e.to_string())?;
    Ok(compc::ir::text::print(&g))
}

const DEMO: &str = r#"graph @demo(%x: tensor<{batch}x4xf32>) -> (y: tensor<{batch}x4xf32>) {
  %one = "const"() {value = dense<[1.0]>} : () -> tensor<1xf32>
  %0 = "mul"(%x, %one) : (tensor<{batch}x4xf32>, tensor<1xf32>) -> tensor<{batch}x4xf32>
  %1 = "relu"(%0) : (tensor<{batch}x4xf32>) -> tensor<{batch}x4xf32>
  return %1
}
"#;

fn main() {
    let src = match std::env::args().nth(1) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot read {path}: {e}");
                std::process::exit(1);
            }
        },
        None => DEMO.to_string(),
    };
    match run_pipeline(&src, "fold-mul-one{include_div=true},dce") {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_mul_by_one_and_dce_removes_the_constant() {
        let out = run_pipeline(DEMO, "fold-mul-one,dce").unwrap();
        assert!(!out.contains("\"mul\""), "{out}");
        assert!(!out.contains("dense<[1.0]>"), "{out}");
        assert!(out.contains("\"relu\"(%x)"), "{out}");
    }

    #[test]
    fn keeps_a_broadcasting_mul() {
        let src = r#"graph @g(%x: tensor<4xf32>) -> (y: tensor<3x4xf32>) {
  %one = "const"() {value = dense<[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]>} : () -> tensor<3x4xf32>
  %0 = "mul"(%x, %one) : (tensor<4xf32>, tensor<3x4xf32>) -> tensor<3x4xf32>
  return %0
}
"#;
        let out = run_pipeline(src, "fold-mul-one").unwrap();
        assert!(out.contains("\"mul\""), "{out}");
    }

    #[test]
    fn unknown_option_lists_valid_ones() {
        let err = run_pipeline(DEMO, "fold-mul-one{div=true}").unwrap_err();
        assert!(err.contains("include_div"), "{err}");
    }
}

//! Text rewrites of the bufferized module before it is mapped to the GPU. Both work on
//! one printed op per line, which is how MLIR prints the ops they touch.
//!
//! - `memref.copy` becomes `linalg.copy`: the copy then runs as a kernel like every other
//!   loop nest; MLIR's own lowering of `memref.copy` is a host `memcpy`, which cannot
//!   read device memory.
//! - Shape buffers (`memref<Nxindex>`, written by the host for `memref.reshape`) are
//!   stack allocations: every other allocation is device memory, which host code cannot
//!   store to.
//! - Transcendentals become NVVM approximations and LLVM intrinsics: `convert-gpu-to-nvvm`
//!   would otherwise turn `math.exp` and friends into calls to libdevice (`__nv_expf`),
//!   which is not available here and which the driver's PTX JIT cannot link. The forms
//!   used are accurate to a few f32 ulps (ex2/lg2/rsqrt `.approx` are within 2 ulp), far
//!   inside the backend's 1e-3 tolerance.

use std::fmt::Write;

#[derive(Debug, thiserror::Error)]
#[error("the GPU backend cannot lower `{op}` on `{ty}` (line `{line}`)")]
pub struct RewriteError {
    pub op: String,
    pub ty: String,
    pub line: String,
}

/// Applies both rewrites to a printed module.
pub fn for_gpu(text: &str) -> Result<String, RewriteError> {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut fresh = 0usize;
    for line in text.lines() {
        if let Some(copy) = copy_to_linalg(line) {
            out.push_str(&copy);
        } else if let Some(host) = shape_buffer_on_stack(line) {
            match host {
                Some(l) => out.push_str(&l),
                None => continue,
            }
        } else if let Some(m) = MathOp::parse(line) {
            m.expand(&mut out, &mut fresh)?;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// `memref.copy %a, %b : T1 to T2` → `linalg.copy ins(%a : T1) outs(%b : T2)`.
fn copy_to_linalg(line: &str) -> Option<String> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let rest = line.trim_start().strip_prefix("memref.copy ")?;
    let (operands, types) = rest.split_once(" : ")?;
    let (src, dst) = operands.split_once(", ")?;
    let (t1, t2) = types.split_once(" to ")?;
    Some(format!(
        "{indent}linalg.copy ins({src} : {t1}) outs({dst} : {t2})"
    ))
}

/// `%a = memref.alloc() … : memref<Nxindex>` → `memref.alloca()`, and its
/// `memref.dealloc` dropped (`Some(None)`); other lines are not shape buffers (`None`).
fn shape_buffer_on_stack(line: &str) -> Option<Option<String>> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let ty = trimmed.rsplit_once(" : ")?.1;
    let is_shape = ty
        .strip_prefix("memref<")
        .and_then(|t| t.strip_suffix("xindex>"))
        .is_some_and(|n| n.parse::<u64>().is_ok());
    if !is_shape {
        return None;
    }
    if trimmed.starts_with("memref.dealloc ") {
        return Some(None);
    }
    let (result, rhs) = trimmed.split_once(" = ")?;
    rhs.strip_prefix("memref.alloc() ")?;
    Some(Some(format!("{indent}{result} = memref.alloca() : {ty}")))
}

/// `%r = math.NAME %a[, %b] [fastmath<..>] : T`.
struct MathOp<'a> {
    indent: &'a str,
    result: &'a str,
    name: &'a str,
    args: Vec<&'a str>,
    ty: &'a str,
    line: &'a str,
}

impl<'a> MathOp<'a> {
    fn parse(line: &'a str) -> Option<MathOp<'a>> {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let (result, rhs) = trimmed.split_once(" = ")?;
        let rhs = rhs.strip_prefix("math.")?;
        let (name, rest) = rhs.split_once(' ')?;
        let (operands, ty) = rest.rsplit_once(" : ")?;
        let operands = operands.split(" fastmath").next()?.trim();
        let args = operands.split(", ").map(str::trim).collect();
        Some(MathOp {
            indent,
            result,
            name,
            args,
            ty,
            line: trimmed,
        })
    }

    fn unsupported(&self) -> RewriteError {
        RewriteError {
            op: format!("math.{}", self.name),
            ty: self.ty.to_string(),
            line: self.line.to_string(),
        }
    }

    fn expand(&self, out: &mut String, fresh: &mut usize) -> Result<(), RewriteError> {
        if self.ty != "f32" {
            // Integer math (`absi`, `ctlz`, …) has direct NVVM lowerings; float math on
            // other widths does not come out of the emitter.
            if self.ty.starts_with('i') {
                out.push_str(self.indent);
                out.push_str(self.line);
                return Ok(());
            }
            return Err(self.unsupported());
        }
        *fresh += 1;
        let mut b = Seq {
            out,
            indent: self.indent,
            prefix: format!("%gm{fresh}_"),
            n: 0,
        };
        let x = self.args[0];
        let r = match (self.name, self.args.len()) {
            ("exp", 1) => b.exp(x),
            ("exp2", 1) => b.intrinsic("llvm.nvvm.ex2.approx.ftz.f", &[x]),
            ("log", 1) => b.log(x),
            ("log2", 1) => b.intrinsic("llvm.nvvm.lg2.approx.ftz.f", &[x]),
            ("log1p", 1) => {
                let one = b.constant(1.0);
                let s = b.op(&format!("arith.addf {x}, {one} : f32"));
                b.log(&s)
            }
            ("sin", 1) => {
                let y = b.reduce_angle(x);
                b.intrinsic("llvm.nvvm.sin.approx.ftz.f", &[&y])
            }
            ("cos", 1) => {
                let y = b.reduce_angle(x);
                b.intrinsic("llvm.nvvm.cos.approx.ftz.f", &[&y])
            }
            ("tanh", 1) => b.tanh(x),
            ("rsqrt", 1) => b.intrinsic("llvm.nvvm.rsqrt.approx.ftz.f", &[x]),
            ("sqrt", 1) => b.intrinsic("llvm.sqrt.f32", &[x]),
            ("absf", 1) => b.intrinsic("llvm.fabs.f32", &[x]),
            ("floor", 1) => b.intrinsic("llvm.floor.f32", &[x]),
            ("ceil", 1) => b.intrinsic("llvm.ceil.f32", &[x]),
            ("roundeven", 1) => b.intrinsic("llvm.roundeven.f32", &[x]),
            ("trunc", 1) => b.intrinsic("llvm.trunc.f32", &[x]),
            ("powf", 2) => b.powf(x, self.args[1]),
            _ => return Err(self.unsupported()),
        };
        // The last value carries the op's original name, so its users are unchanged.
        let neg_zero = b.constant(-0.0);
        let _ = write!(
            b.out,
            "{}{} = arith.addf {r}, {neg_zero} : f32",
            self.indent, self.result
        );
        Ok(())
    }
}

/// Emits a straight-line sequence of scalar f32 ops with fresh names.
struct Seq<'o> {
    out: &'o mut String,
    indent: &'o str,
    prefix: String,
    n: usize,
}

impl Seq<'_> {
    fn op(&mut self, rhs: &str) -> String {
        self.n += 1;
        let name = format!("{}{}", self.prefix, self.n);
        let _ = writeln!(self.out, "{}{name} = {rhs}", self.indent);
        name
    }

    /// Bit-exact (hexadecimal) so NaN and -0 survive printing.
    fn constant(&mut self, v: f32) -> String {
        self.op(&format!("arith.constant 0x{:08X} : f32", v.to_bits()))
    }

    fn intrinsic(&mut self, name: &str, args: &[&str]) -> String {
        let tys = vec!["f32"; args.len()].join(", ");
        self.op(&format!(
            "llvm.call_intrinsic \"{name}\"({}) : ({tys}) -> f32",
            args.join(", ")
        ))
    }

    /// e^x = 2^(x·log2 e).
    fn exp(&mut self, x: &str) -> String {
        let k = self.constant(std::f32::consts::LOG2_E);
        let t = self.op(&format!("arith.mulf {x}, {k} : f32"));
        self.intrinsic("llvm.nvvm.ex2.approx.ftz.f", &[&t])
    }

    /// ln x = log2 x · ln 2.
    fn log(&mut self, x: &str) -> String {
        let l = self.intrinsic("llvm.nvvm.lg2.approx.ftz.f", &[x]);
        let k = self.constant(std::f32::consts::LN_2);
        self.op(&format!("arith.mulf {l}, {k} : f32"))
    }

    /// x − 2π·round(x / 2π): `sin.approx`/`cos.approx` are accurate near zero only.
    fn reduce_angle(&mut self, x: &str) -> String {
        let inv = self.constant(1.0 / std::f32::consts::TAU);
        let q = self.op(&format!("arith.mulf {x}, {inv} : f32"));
        let n = self.intrinsic("llvm.roundeven.f32", &[&q]);
        let tau = self.constant(-std::f32::consts::TAU);
        self.intrinsic("llvm.fma.f32", &[&n, &tau, x])
    }

    /// tanh: an odd Taylor polynomial near zero (where 1 − 2/(e^{2|x|}+1) cancels), that
    /// form elsewhere; the sign is restored with copysign.
    fn tanh(&mut self, x: &str) -> String {
        let a = self.intrinsic("llvm.fabs.f32", &[x]);
        let two = self.constant(2.0);
        let one = self.constant(1.0);
        let a2 = self.op(&format!("arith.mulf {a}, {two} : f32"));
        let e = self.exp(&a2);
        let d = self.op(&format!("arith.addf {e}, {one} : f32"));
        let q = self.op(&format!("arith.divf {two}, {d} : f32"));
        let far = self.op(&format!("arith.subf {one}, {q} : f32"));
        // a − a³/3 + 2a⁵/15
        let sq = self.op(&format!("arith.mulf {a}, {a} : f32"));
        let c5 = self.constant(2.0 / 15.0);
        let c3 = self.constant(-1.0 / 3.0);
        let p = self.op(&format!("arith.mulf {sq}, {c5} : f32"));
        let p = self.op(&format!("arith.addf {p}, {c3} : f32"));
        let p = self.op(&format!("arith.mulf {p}, {sq} : f32"));
        let p = self.op(&format!("arith.mulf {p}, {a} : f32"));
        let near = self.op(&format!("arith.addf {p}, {a} : f32"));
        let lim = self.constant(0.1);
        let small = self.op(&format!("arith.cmpf olt, {a}, {lim} : f32"));
        let m = self.op(&format!("arith.select {small}, {near}, {far} : f32"));
        self.intrinsic("llvm.copysign.f32", &[&m, x])
    }

    /// a^b = 2^(b·log2|a|), negated for a negative base and an odd integer exponent, NaN
    /// for a negative base and a fractional exponent (as `powf`).
    fn powf(&mut self, a: &str, b: &str) -> String {
        let abs = self.intrinsic("llvm.fabs.f32", &[a]);
        let l = self.intrinsic("llvm.nvvm.lg2.approx.ftz.f", &[&abs]);
        let t = self.op(&format!("arith.mulf {b}, {l} : f32"));
        let m = self.intrinsic("llvm.nvvm.ex2.approx.ftz.f", &[&t]);
        let zero = self.constant(0.0);
        let half = self.constant(0.5);
        let neg = self.op(&format!("arith.cmpf olt, {a}, {zero} : f32"));
        let bi = self.intrinsic("llvm.trunc.f32", &[b]);
        let integral = self.op(&format!("arith.cmpf oeq, {bi}, {b} : f32"));
        let hb = self.op(&format!("arith.mulf {b}, {half} : f32"));
        let hbi = self.intrinsic("llvm.trunc.f32", &[&hb]);
        let odd = self.op(&format!("arith.cmpf one, {hbi}, {hb} : f32"));
        let negm = self.op(&format!("arith.negf {m} : f32"));
        let nan = self.constant(f32::NAN);
        let signed = self.op(&format!("arith.select {odd}, {negm}, {m} : f32"));
        let neg_result = self.op(&format!("arith.select {integral}, {signed}, {nan} : f32"));
        self.op(&format!("arith.select {neg}, {neg_result}, {m} : f32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_become_linalg_copies() {
        let t = "    memref.copy %a, %b : memref<?x4xf32> to memref<?x4xf32, strided<[8, 1]>>\n";
        let r = for_gpu(t).unwrap();
        assert_eq!(
            r,
            "    linalg.copy ins(%a : memref<?x4xf32>) outs(%b : memref<?x4xf32, strided<[8, 1]>>)\n"
        );
    }

    #[test]
    fn shape_buffers_live_on_the_host_stack() {
        let t = "  %a = memref.alloc() {alignment = 64 : i64} : memref<3xindex>\n  memref.store %d, %a[%c0] : memref<3xindex>\n  memref.dealloc %a : memref<3xindex>\n  %b = memref.alloc(%n) : memref<?xf32>\n";
        let r = for_gpu(t).unwrap();
        assert_eq!(
            r,
            "  %a = memref.alloca() : memref<3xindex>\n  memref.store %d, %a[%c0] : memref<3xindex>\n  %b = memref.alloc(%n) : memref<?xf32>\n"
        );
    }

    #[test]
    fn exp_becomes_ex2_and_keeps_its_name() {
        let r = for_gpu("  %7 = math.exp %6 : f32\n").unwrap();
        assert!(r.contains("llvm.nvvm.ex2.approx.ftz.f"), "{r}");
        assert!(!r.contains("math.exp"), "{r}");
        assert!(
            r.lines().last().unwrap().trim_start().starts_with("%7 = "),
            "{r}"
        );
    }

    #[test]
    fn every_emitted_transcendental_is_rewritten() {
        for op in [
            "exp",
            "log",
            "log1p",
            "sin",
            "cos",
            "tanh",
            "rsqrt",
            "sqrt",
            "absf",
            "floor",
            "ceil",
            "roundeven",
        ] {
            let r = for_gpu(&format!("%1 = math.{op} %0 : f32")).unwrap();
            let left: Vec<&str> = r.lines().filter(|l| l.contains("math.")).collect();
            assert!(left.is_empty(), "{op}: {left:?}");
        }
        let r = for_gpu("%2 = math.powf %0, %1 : f32").unwrap();
        assert!(!r.contains("math.powf"), "{r}");
    }

    #[test]
    fn float_math_on_other_widths_is_an_error() {
        let e = for_gpu("%1 = math.exp %0 : f64").unwrap_err();
        assert!(e.to_string().contains("math.exp"), "{e}");
    }
}

//! Element-wise ops: one broadcasting `linalg.generic` each, whose body is the scalar
//! formula. Later passes (`linalg-fuse-elementwise-ops`) fuse chains of them.

use super::builder::{elt, float_lit, Body, Emitter, Val};
use super::EmitError;
use compc_ir::op::{BinaryOp, UnaryOp, VariadicOp};
use compc_ir::{DType, Dim, NodeId, Op, TensorType};

fn is_float(dt: DType) -> bool {
    dt.is_float()
}

/// The scalar formula of a unary op on `x` of element type `t`; `poly`: exp as
/// polynomial arithmetic ([`exp_body`]).
fn unary_body(
    b: &mut Body,
    k: UnaryOp,
    x: &str,
    t: &str,
    float: bool,
    poly: bool,
) -> Result<String, String> {
    if !float {
        return match k {
            UnaryOp::Neg => {
                let z = b.iconst(0, t);
                Ok(b.op(format!("arith.subi {z}, {x} : {t}")))
            }
            UnaryOp::Abs => {
                let z = b.iconst(0, t);
                let n = b.op(format!("arith.subi {z}, {x} : {t}"));
                Ok(b.op(format!("arith.maxsi {x}, {n} : {t}")))
            }
            UnaryOp::Identity => Ok(x.to_string()),
            UnaryOp::Not if t == "i1" => {
                let one = b.op("arith.constant true");
                Ok(b.op(format!("arith.xori {x}, {one} : i1")))
            }
            _ => Err(format!("`{}` on integers", k.name())),
        };
    }
    let math = |b: &mut Body, name: &str| b.op(format!("math.{name} {x} : {t}"));
    Ok(match k {
        UnaryOp::Identity => x.to_string(),
        UnaryOp::Neg => b.op(format!("arith.negf {x} : {t}")),
        UnaryOp::Abs => math(b, "absf"),
        UnaryOp::Exp => exp_body(b, x, t, poly),
        UnaryOp::Log => math(b, "log"),
        UnaryOp::Sqrt => math(b, "sqrt"),
        UnaryOp::Sin => math(b, "sin"),
        UnaryOp::Cos => math(b, "cos"),
        UnaryOp::Tanh => math(b, "tanh"),
        UnaryOp::Erf => erf_body(b, x, t),
        UnaryOp::Floor => math(b, "floor"),
        UnaryOp::Ceil => math(b, "ceil"),
        UnaryOp::Round => math(b, "roundeven"),
        UnaryOp::Reciprocal => {
            let one = b.fconst(1.0, t);
            b.op(format!("arith.divf {one}, {x} : {t}"))
        }
        UnaryOp::Relu => {
            let z = b.fconst(0.0, t);
            b.op(format!("arith.maximumf {x}, {z} : {t}"))
        }
        UnaryOp::Sigmoid => {
            // 1 / (1 + exp(-x))
            let n = b.op(format!("arith.negf {x} : {t}"));
            let e = exp_body(b, &n, t, poly);
            let one = b.fconst(1.0, t);
            let d = b.op(format!("arith.addf {one}, {e} : {t}"));
            b.op(format!("arith.divf {one}, {d} : {t}"))
        }
        UnaryOp::HardSwish => {
            let h = hard_sigmoid_body(b, x, t, 1.0 / 6.0, 0.5);
            b.op(format!("arith.mulf {x}, {h} : {t}"))
        }
        UnaryOp::Softplus => {
            let e = exp_body(b, x, t, poly);
            b.op(format!("math.log1p {e} : {t}"))
        }
        _ => return Err(format!("`{}`", k.name())),
    })
}

/// exp(x) for f32 as branch-free arithmetic (Cephes' `expf`): x = n·ln2 + r with
/// |r| ≤ ln2/2, e^r by a degree-7 polynomial, 2^n put into the exponent bits; relative
/// error about 2e-7. `math.exp` becomes a libm call per element, which keeps the loop
/// around it scalar; this vectorizes. Inputs are clamped to ±88.38 (results
/// 0 … 2.4e38); other float types, and targets without `poly`
/// ([`super::EmitOptions::polynomial_exp`]), keep `math.exp`.
pub(super) fn exp_body(b: &mut Body, x: &str, t: &str, poly: bool) -> String {
    if t != "f32" || !poly {
        return b.op(format!("math.exp {x} : {t}"));
    }
    const P: [f32; 6] = [
        1.987_569_2e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let hi = b.fconst(88.376_26, t);
    let lo = b.fconst(-88.376_26, t);
    let c = b.op(format!("arith.minimumf {x}, {hi} : {t}"));
    let c = b.op(format!("arith.maximumf {c}, {lo} : {t}"));
    // n = round(x / ln2), r = x − n·ln2 with ln2 split in two for precision.
    let log2e = b.fconst(std::f32::consts::LOG2_E, t);
    let half = b.fconst(0.5, t);
    let xl = b.op(format!("arith.mulf {c}, {log2e} : {t}"));
    let xh = b.op(format!("arith.addf {xl}, {half} : {t}"));
    let n = b.op(format!("math.floor {xh} : {t}"));
    let c1 = b.fconst(0.693_359_4, t);
    let c2 = b.fconst(-2.121_944_4e-4, t);
    let r = b.op(format!("arith.mulf {n}, {c1} : {t}"));
    let r = b.op(format!("arith.subf {c}, {r} : {t}"));
    let r2 = b.op(format!("arith.mulf {n}, {c2} : {t}"));
    let r = b.op(format!("arith.subf {r}, {r2} : {t}"));
    let mut p = b.fconst(P[0], t);
    for &k in &P[1..] {
        let kc = b.fconst(k, t);
        p = b.op(format!("math.fma {p}, {r}, {kc} : {t}"));
    }
    // e^r ≈ 1 + r + r²·P(r)
    let rr = b.op(format!("arith.mulf {r}, {r} : {t}"));
    let p = b.op(format!("math.fma {p}, {rr}, {r} : {t}"));
    let one = b.fconst(1.0, t);
    let p = b.op(format!("arith.addf {p}, {one} : {t}"));
    // 2^n: n + 127 in the exponent field (n ≥ −127 after the clamp; −127 gives 0).
    let ni = b.op(format!("arith.fptosi {n} : {t} to i32"));
    let bias = b.iconst(127, "i32");
    let e = b.op(format!("arith.addi {ni}, {bias} : i32"));
    let sh = b.iconst(23, "i32");
    let e = b.op(format!("arith.shli {e}, {sh} : i32"));
    let scale = b.op(format!("arith.bitcast {e} : i32 to {t}"));
    b.op(format!("arith.mulf {p}, {scale} : {t}"))
}

/// erf(x) ≈ x·P(x²)/Q(x²) on x clamped to [−4, 4] (|erf(4)| = 1 − 1.5e-8), with P of degree
/// 6 and Q of degree 4 fitted by least squares to erf on [0, 4] (max abs error 6e-7 in f64).
/// Unlike libm's `erff` it is branch-free arithmetic, so the loops around it vectorize, and
/// a GPU needs no library for it.
fn erf_body(b: &mut Body, x: &str, t: &str) -> String {
    // Highest degree first (Horner).
    const P: [f32; 7] = [
        2.087_411_5e-8,
        -2.441_804e-6,
        2.256_626_9e-4,
        6.764_921e-3,
        5.970_842_4e-2,
        2.689_801e-1,
        1.128_374_5,
    ];
    const Q: [f32; 5] = [
        1.736_867_1e-3,
        2.033_390_1e-2,
        1.435_926_3e-1,
        5.716_694_6e-1,
        1.0,
    ];
    let lo = b.fconst(-4.0, t);
    let hi = b.fconst(4.0, t);
    let c = b.op(format!("arith.maximumf {x}, {lo} : {t}"));
    let c = b.op(format!("arith.minimumf {c}, {hi} : {t}"));
    let x2 = b.op(format!("arith.mulf {c}, {c} : {t}"));
    let horner = |b: &mut Body, coeffs: &[f32]| {
        let mut acc = b.fconst(coeffs[0], t);
        for &k in &coeffs[1..] {
            let m = b.op(format!("arith.mulf {acc}, {x2} : {t}"));
            let kc = b.fconst(k, t);
            acc = b.op(format!("arith.addf {m}, {kc} : {t}"));
        }
        acc
    };
    let p = horner(b, &P);
    let p = b.op(format!("arith.mulf {p}, {c} : {t}"));
    let q = horner(b, &Q);
    b.op(format!("arith.divf {p}, {q} : {t}"))
}

fn hard_sigmoid_body(b: &mut Body, x: &str, t: &str, alpha: f32, beta: f32) -> String {
    let a = b.fconst(alpha, t);
    let bb = b.fconst(beta, t);
    let m = b.op(format!("arith.mulf {x}, {a} : {t}"));
    let s = b.op(format!("arith.addf {m}, {bb} : {t}"));
    let z = b.fconst(0.0, t);
    let one = b.fconst(1.0, t);
    let lo = b.op(format!("arith.maximumf {s}, {z} : {t}"));
    b.op(format!("arith.minimumf {lo}, {one} : {t}"))
}

pub fn unary(em: &mut Emitter, id: NodeId, k: UnaryOp) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let t = elt(x.ty.dtype);
    let float = is_float(x.ty.dtype);
    let poly = em.options().polynomial_exp;
    let mut bad = None;
    let v = em.elementwise(&[&x], &out, |b, a| {
        match unary_body(b, k, &a[0], t, float, poly) {
            Ok(y) => Ok(y),
            Err(e) => {
                bad = Some(e);
                Ok(a[0].clone())
            }
        }
    })?;
    if let Some(e) = bad {
        return Err(em.err(format!("the mlir backend does not lower {e} yet")));
    }
    Ok(v)
}

/// The scalar formula of a binary op (`Err` names what is not lowered).
fn binary_body(b: &mut Body, k: BinaryOp, x: &str, y: &str, dt: DType) -> Result<String, String> {
    let t = elt(dt);
    let float = is_float(dt);
    let unsigned = dt.is_unsigned();
    let cmp = |b: &mut Body, fpred: &str, ipred: &str| {
        if float {
            b.op(format!("arith.cmpf {fpred}, {x}, {y} : {t}"))
        } else {
            let p = if unsigned {
                ipred.replace('s', "u")
            } else {
                ipred.to_string()
            };
            b.op(format!("arith.cmpi {p}, {x}, {y} : {t}"))
        }
    };
    Ok(match (k, float) {
        (BinaryOp::Add, true) => b.op(format!("arith.addf {x}, {y} : {t}")),
        (BinaryOp::Sub, true) => b.op(format!("arith.subf {x}, {y} : {t}")),
        (BinaryOp::Mul, true) => b.op(format!("arith.mulf {x}, {y} : {t}")),
        (BinaryOp::Div, true) => b.op(format!("arith.divf {x}, {y} : {t}")),
        (BinaryOp::Pow, true) => b.op(format!("math.powf {x}, {y} : {t}")),
        (BinaryOp::Add, false) => b.op(format!("arith.addi {x}, {y} : {t}")),
        (BinaryOp::Sub, false) => b.op(format!("arith.subi {x}, {y} : {t}")),
        (BinaryOp::Mul, false) => b.op(format!("arith.muli {x}, {y} : {t}")),
        (BinaryOp::Div, false) if unsigned => b.op(format!("arith.divui {x}, {y} : {t}")),
        (BinaryOp::Div, false) => b.op(format!("arith.divsi {x}, {y} : {t}")),
        (BinaryOp::Equal, _) => cmp(b, "oeq", "eq"),
        (BinaryOp::Greater, _) => cmp(b, "ogt", "sgt"),
        (BinaryOp::GreaterOrEqual, _) => cmp(b, "oge", "sge"),
        (BinaryOp::Less, _) => cmp(b, "olt", "slt"),
        (BinaryOp::LessOrEqual, _) => cmp(b, "ole", "sle"),
        (BinaryOp::And, false) | (BinaryOp::BitwiseAnd, false) => {
            b.op(format!("arith.andi {x}, {y} : {t}"))
        }
        (BinaryOp::Or, false) | (BinaryOp::BitwiseOr, false) => {
            b.op(format!("arith.ori {x}, {y} : {t}"))
        }
        (BinaryOp::Xor, false) | (BinaryOp::BitwiseXor, false) => {
            b.op(format!("arith.xori {x}, {y} : {t}"))
        }
        (BinaryOp::PRelu, true) => {
            let z = b.fconst(0.0, t);
            let neg = b.op(format!("arith.mulf {x}, {y} : {t}"));
            let c = b.op(format!("arith.cmpf olt, {x}, {z} : {t}"));
            b.op(format!("arith.select {c}, {neg}, {x} : {t}"))
        }
        _ => return Err(format!("`{}` on {t}", k.name())),
    })
}

/// Whether `v` is read with broadcasting against `out` (a missing or unit dim where the
/// output's is not).
fn broadcasts(v: &Val, out: &TensorType) -> bool {
    let od = out.shape.dims().unwrap_or(&[]);
    let vd = v.dims();
    vd.len() < od.len()
        || vd
            .iter()
            .rev()
            .zip(od.iter().rev())
            .any(|(a, b)| *a == Dim::Known(1) && *b != Dim::Known(1))
}

/// Whether node `id` computes a transcendental function per element.
fn is_expensive(em: &Emitter, id: NodeId) -> bool {
    use UnaryOp::*;
    match &em.g.node(id).op {
        Op::Unary(k) => matches!(k, Exp | Sigmoid | Tanh | Erf | Softplus | Log | Sin | Cos),
        Op::Gelu(_) => true,
        _ => false,
    }
}

/// Input `i` of node `id`, copied into its own tensor (`linalg.copy`) when it is the
/// broadcast operand of an element-wise op and its producer is transcendental: element-wise
/// fusion would otherwise pull the producer into this op and compute it once per element
/// of the larger output (an SE-style gate: a sigmoid per channel instead of per pixel).
/// The copy is a named op, which fusion leaves alone, of the small tensor.
fn operand_unfused(
    em: &mut Emitter,
    id: NodeId,
    i: usize,
    out: &TensorType,
) -> Result<Val, EmitError> {
    let v = em.input(id, i)?;
    let producer = em.g.node(id).input(i).map(|r| r.node);
    // CPU only (the GPU backend is validated without the copy).
    let cpu = !em.options().gpu_kernels;
    if !(cpu && broadcasts(&v, out) && producer.is_some_and(|p| is_expensive(em, p))) {
        return Ok(v);
    }
    let dst = em.empty(&v.ty)?;
    let t = v.mlir_type();
    let ssa = em.op(format!(
        "linalg.copy ins({} : {t}) outs({} : {t}) -> {t}",
        v.ssa, dst.ssa
    ));
    Ok(Val { ssa, ty: v.ty })
}

pub fn binary(em: &mut Emitter, id: NodeId, k: BinaryOp) -> Result<Val, EmitError> {
    let out = em.out_type(id)?;
    let x = operand_unfused(em, id, 0, &out)?;
    let y = operand_unfused(em, id, 1, &out)?;
    if x.ty.dtype != y.ty.dtype {
        return Err(em.err("operands of different element types"));
    }
    let dt = x.ty.dtype;
    // x^2 is the common case (RMSNorm, variance); a multiply is exact and cheaper.
    let square = k == BinaryOp::Pow && em.const_f32(id, 1).is_some_and(|e| e == [2.0]);
    let mut bad = None;
    let v = em.elementwise(&[&x, &y], &out, |b, a| {
        if square {
            return Ok(b.op(format!("arith.mulf {}, {} : {}", a[0], a[0], elt(dt))));
        }
        match binary_body(b, k, &a[0], &a[1], dt) {
            Ok(v) => Ok(v),
            Err(e) => {
                bad = Some(e);
                Ok(a[2].clone())
            }
        }
    })?;
    if let Some(e) = bad {
        return Err(em.err(format!("the mlir backend does not lower {e} yet")));
    }
    Ok(v)
}

pub fn variadic(em: &mut Emitter, id: NodeId, k: VariadicOp) -> Result<Val, EmitError> {
    let n = em.g.node(id).inputs().len();
    let ins: Vec<Val> = (0..n).map(|i| em.input(id, i)).collect::<Result<_, _>>()?;
    let out = em.out_type(id)?;
    let dt = out.dtype;
    if !is_float(dt) {
        return Err(em.err(format!("`{}` on integers is not lowered yet", k.name())));
    }
    let t = elt(dt);
    let refs: Vec<&Val> = ins.iter().collect();
    em.elementwise(&refs, &out, |b, a| {
        let mut acc = a[0].clone();
        for x in &a[1..n] {
            acc = match k {
                VariadicOp::Max => b.op(format!("arith.maximumf {acc}, {x} : {t}")),
                VariadicOp::Min => b.op(format!("arith.minimumf {acc}, {x} : {t}")),
                VariadicOp::Sum | VariadicOp::Mean => b.op(format!("arith.addf {acc}, {x} : {t}")),
            };
        }
        if k == VariadicOp::Mean {
            let c = b.fconst(n as f32, t);
            acc = b.op(format!("arith.divf {acc}, {c} : {t}"));
        }
        Ok(acc)
    })
}

pub fn select(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let c = em.input(id, 0)?;
    let x = em.input(id, 1)?;
    let y = em.input(id, 2)?;
    let out = em.out_type(id)?;
    let t = elt(out.dtype);
    em.elementwise(&[&c, &x, &y], &out, |b, a| {
        Ok(b.op(format!("arith.select {}, {}, {} : {t}", a[0], a[1], a[2])))
    })
}

pub fn clip(em: &mut Emitter, id: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    if !is_float(out.dtype) {
        return Err(em.err("clip on integers is not lowered yet"));
    }
    let node = em.g.node(id);
    let bound = |i: usize| -> Result<Option<f32>, EmitError> {
        match node.input(i) {
            None => Ok(None),
            Some(_) => match em.const_f32(id, i) {
                Some(v) if v.len() == 1 => Ok(Some(v[0])),
                _ => Err(em.err("clip bounds must be constant scalars")),
            },
        }
    };
    let (lo, hi) = (bound(1)?, bound(2)?);
    let t = elt(out.dtype);
    em.elementwise(&[&x], &out, |b, a| {
        let mut v = a[0].clone();
        if let Some(lo) = lo {
            let c = b.fconst(lo, t);
            v = b.op(format!("arith.maximumf {v}, {c} : {t}"));
        }
        if let Some(hi) = hi {
            let c = b.fconst(hi, t);
            v = b.op(format!("arith.minimumf {v}, {c} : {t}"));
        }
        Ok(v)
    })
}

pub fn hard_sigmoid(em: &mut Emitter, id: NodeId, alpha: f32, beta: f32) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let t = elt(out.dtype);
    em.elementwise(&[&x], &out, |b, a| {
        Ok(hard_sigmoid_body(b, &a[0], t, alpha, beta))
    })
}

pub fn leaky_relu(em: &mut Emitter, id: NodeId, alpha: f32) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let t = elt(out.dtype);
    em.elementwise(&[&x], &out, |b, a| {
        let z = b.fconst(0.0, t);
        let al = b.fconst(alpha, t);
        let m = b.op(format!("arith.mulf {}, {al} : {t}", a[0]));
        let c = b.op(format!("arith.cmpf olt, {}, {z} : {t}", a[0]));
        Ok(b.op(format!("arith.select {c}, {m}, {} : {t}", a[0])))
    })
}

pub fn gelu(em: &mut Emitter, id: NodeId, approximate: &str) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let t = elt(out.dtype);
    let tanh = match approximate {
        "none" => false,
        "tanh" => true,
        other => return Err(em.err(format!("gelu approximate={other:?}"))),
    };
    em.elementwise(&[&x], &out, |b, a| {
        let x = &a[0];
        let half = b.fconst(0.5, t);
        let one = b.fconst(1.0, t);
        let inner = if tanh {
            // tanh(√(2/π)·(x + 0.044715·x³))
            let c = b.fconst(0.044_715, t);
            let k = b.fconst((2.0f32 / std::f32::consts::PI).sqrt(), t);
            let x2 = b.op(format!("arith.mulf {x}, {x} : {t}"));
            let x3 = b.op(format!("arith.mulf {x2}, {x} : {t}"));
            let cx3 = b.op(format!("arith.mulf {c}, {x3} : {t}"));
            let s = b.op(format!("arith.addf {x}, {cx3} : {t}"));
            let ks = b.op(format!("arith.mulf {k}, {s} : {t}"));
            b.op(format!("math.tanh {ks} : {t}"))
        } else {
            let r = b.fconst(std::f32::consts::FRAC_1_SQRT_2, t);
            let xs = b.op(format!("arith.mulf {x}, {r} : {t}"));
            erf_body(b, &xs, t)
        };
        let p = b.op(format!("arith.addf {one}, {inner} : {t}"));
        let hx = b.op(format!("arith.mulf {half}, {x} : {t}"));
        Ok(b.op(format!("arith.mulf {hx}, {p} : {t}")))
    })
}

/// Casts between f32/f64, signed/unsigned integers and bool.
pub fn cast(em: &mut Emitter, id: NodeId, to: DType) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    let from = x.ty.dtype;
    let (ft, tt) = (elt(from), elt(to));
    let bits = |d: DType| if d == DType::Bool { 1 } else { d.bits() };
    if from == DType::Str || to == DType::Str || from.is_packed() || to.is_packed() {
        return Err(em.err(format!("cast {} → {} is not lowered", ft, tt)));
    }
    em.elementwise(&[&x], &out, |b, a| {
        let x = &a[0];
        Ok(if ft == tt {
            x.clone()
        } else if from.is_float() && to.is_float() {
            if bits(to) > bits(from) {
                b.op(format!("arith.extf {x} : {ft} to {tt}"))
            } else {
                b.op(format!("arith.truncf {x} : {ft} to {tt}"))
            }
        } else if from.is_float() && to == DType::Bool {
            let z = b.fconst(0.0, ft);
            b.op(format!("arith.cmpf une, {x}, {z} : {ft}"))
        } else if from.is_float() {
            let op = if to.is_unsigned() { "fptoui" } else { "fptosi" };
            b.op(format!("arith.{op} {x} : {ft} to {tt}"))
        } else if to.is_float() {
            let op = if from.is_unsigned() || from == DType::Bool {
                "uitofp"
            } else {
                "sitofp"
            };
            b.op(format!("arith.{op} {x} : {ft} to {tt}"))
        } else if to == DType::Bool {
            let z = b.iconst(0, ft);
            b.op(format!("arith.cmpi ne, {x}, {z} : {ft}"))
        } else if bits(to) > bits(from) {
            let op = if from.is_unsigned() || from == DType::Bool {
                "extui"
            } else {
                "extsi"
            };
            b.op(format!("arith.{op} {x} : {ft} to {tt}"))
        } else {
            b.op(format!("arith.trunci {x} : {ft} to {tt}"))
        })
    })
}

/// `-inf` / `+inf` / `0` literals of a float type, as bit patterns.
pub fn neg_inf() -> String {
    float_lit(f32::NEG_INFINITY)
}

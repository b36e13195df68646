//! Reductions and the ops built from them: ReduceSum/Mean/Max/Min, softmax, LayerNorm,
//! RMSNorm, GlobalAveragePool. Each is a few `linalg.generic`s with reduction loops;
//! statistics are kept with `keepdims` so the follow-up element-wise step broadcasts them.

use super::builder::{affine_map, elt, float_lit, identity_map, Body, Emitter, Init, Val};
use super::elementwise::neg_inf;
use super::EmitError;
use compc_ir::op::{Norm, Reduce, ReduceOp};
use compc_ir::{Dim, NodeId, Shape, TensorType};

fn norm_axis(axis: i64, rank: usize) -> usize {
    if axis < 0 {
        (axis + rank as i64) as usize
    } else {
        axis as usize
    }
}

/// Reduces `x` over `axes` (kept as dims of 1) with `combine(acc, value)`, starting from
/// `init`. `pre` maps each element before combining (e.g. squares it).
fn reduce_keep(
    em: &mut Emitter,
    x: &Val,
    axes: &[usize],
    init: &str,
    pre: impl Fn(&mut Body, &str, &str) -> String,
    combine: impl Fn(&mut Body, &str, &str, &str) -> String,
) -> Result<Val, EmitError> {
    let r = x.rank();
    let dims: Vec<Dim> = x
        .dims()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                d.clone()
            }
        })
        .collect();
    let kept = TensorType::new(x.ty.dtype, Shape::Ranked(dims));
    let (out, out_map) = dropped(x, axes);
    let iters: Vec<&str> = (0..r)
        .map(|i| {
            if axes.contains(&i) {
                "reduction"
            } else {
                "parallel"
            }
        })
        .collect();
    let t = elt(x.ty.dtype);
    let v = em.generic(
        &[(x, identity_map(r))],
        &out,
        out_map,
        &iters,
        Init::Fill(init.to_string()),
        |b, a| {
            let v = pre(b, &a[0], t);
            Ok(combine(b, &a[1], &v, t))
        },
    )?;
    super::layout::expand_to(em, &v, &kept)
}

/// The type of `x` reduced over `axes` (dims dropped) and the output map of that
/// reduction: linalg wants output maps that are projected permutations, so statistics
/// are reduced to the smaller rank and then viewed with dims of 1 (a free expand).
fn dropped(x: &Val, axes: &[usize]) -> (TensorType, String) {
    let r = x.rank();
    let dims: Vec<Dim> = (0..r)
        .filter(|i| !axes.contains(i))
        .map(|i| x.dims()[i].clone())
        .collect();
    let e: Vec<String> = (0..r)
        .filter(|i| !axes.contains(i))
        .map(|i| format!("d{i}"))
        .collect();
    (
        TensorType::new(x.ty.dtype, Shape::Ranked(dims)),
        affine_map(r, &e),
    )
}

/// The map of a statistic reduced over `axes` (kept as dims of 1) inside `rank` loops.
fn kept_map(rank: usize, axes: &[usize]) -> String {
    let e: Vec<String> = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                "0".to_string()
            } else {
                format!("d{i}")
            }
        })
        .collect();
    affine_map(rank, &e)
}

/// The accumulation of sums, marked reassociable so LLVM's loop vectorizer may split it
/// into vector partial sums (an in-order float reduction stays scalar).
fn add(b: &mut Body, acc: &str, v: &str, t: &str) -> String {
    b.op(format!("arith.addf {acc}, {v} fastmath<reassoc> : {t}"))
}

fn id(_: &mut Body, v: &str, _: &str) -> String {
    v.to_string()
}

/// Drops kept dims of 1 when the op's output has no keepdims.
fn to_output(em: &mut Emitter, v: Val, out: &TensorType) -> Result<Val, EmitError> {
    super::layout::expand_to(em, &v, out)
}

fn count(em: &Emitter, x: &Val, axes: &[usize]) -> Result<f32, EmitError> {
    let mut n = 1u64;
    for &a in axes {
        match x.dims()[a] {
            Dim::Known(k) => n *= k,
            _ => return Err(em.err("a mean over a dynamic dim is not lowered yet")),
        }
    }
    Ok(n as f32)
}

pub fn reduce(em: &mut Emitter, id_: NodeId, k: ReduceOp, r: &Reduce) -> Result<Val, EmitError> {
    let x = em.input(id_, 0)?;
    let out = em.out_type(id_)?;
    if !x.ty.dtype.is_float() {
        return Err(em.err("reductions are lowered for floats"));
    }
    let rank = x.rank();
    let axes: Vec<i64> = match &r.axes {
        Some(a) => a.clone(),
        None => match em.g.node(id_).input(1) {
            Some(_) => em
                .const_i64(id_, 1)
                .ok_or_else(|| em.err("reduction axes must be constant"))?,
            None => vec![],
        },
    };
    let axes: Vec<usize> = if axes.is_empty() {
        if r.noop_with_empty_axes {
            return super::layout::expand_to(em, &x, &out);
        }
        (0..rank).collect()
    } else {
        axes.iter().map(|&a| norm_axis(a, rank)).collect()
    };
    let v = match k {
        ReduceOp::Sum | ReduceOp::Mean => reduce_keep(em, &x, &axes, "0.0", id, add)?,
        ReduceOp::SumSquare => reduce_keep(
            em,
            &x,
            &axes,
            "0.0",
            |b, v, t| b.op(format!("arith.mulf {v}, {v} : {t}")),
            add,
        )?,
        ReduceOp::Max => reduce_keep(em, &x, &axes, &neg_inf(), id, |b, a, v, t| {
            b.op(format!("arith.maximumf {a}, {v} : {t}"))
        })?,
        ReduceOp::Min => reduce_keep(
            em,
            &x,
            &axes,
            &float_lit(f32::INFINITY),
            id,
            |b, a, v, t| b.op(format!("arith.minimumf {a}, {v} : {t}")),
        )?,
        other => {
            return Err(em.err(format!("`{}` is not lowered yet", other.name())));
        }
    };
    let v = if k == ReduceOp::Mean {
        let n = count(em, &x, &axes)?;
        let t = v.ty.clone();
        let tt = elt(t.dtype);
        em.elementwise(&[&v], &t, |b, a| {
            let c = b.fconst(1.0 / n, tt);
            Ok(b.op(format!("arith.mulf {}, {c} : {tt}", a[0])))
        })?
    } else {
        v
    };
    to_output(em, v, &out)
}

pub fn global_average_pool(em: &mut Emitter, id_: NodeId) -> Result<Val, EmitError> {
    let x = em.input(id_, 0)?;
    let out = em.out_type(id_)?;
    let axes: Vec<usize> = (2..x.rank()).collect();
    let n = count(em, &x, &axes)?;
    let s = reduce_keep(em, &x, &axes, "0.0", id, add)?;
    let t = s.ty.clone();
    let v = em.elementwise(&[&s], &t, |b, a| {
        let c = b.fconst(1.0 / n, "f32");
        Ok(b.op(format!("arith.mulf {}, {c} : f32", a[0])))
    })?;
    to_output(em, v, &out)
}

/// Softmax over one axis: max, exp(x − max), sum, divide.
pub fn softmax(em: &mut Emitter, id_: NodeId, axis: i64) -> Result<Val, EmitError> {
    let x = em.input(id_, 0)?;
    let out = em.out_type(id_)?;
    let ax = norm_axis(axis, x.rank());
    let m = reduce_keep(em, &x, &[ax], &neg_inf(), id, |b, a, v, t| {
        b.op(format!("arith.maximumf {a}, {v} : {t}"))
    })?;
    let t = elt(out.dtype);
    let poly = em.options().polynomial_exp;
    let e = em.elementwise(&[&x, &m], &out, |b, a| {
        let d = b.op(format!("arith.subf {}, {} : {t}", a[0], a[1]));
        Ok(super::elementwise::exp_body(b, &d, t, poly))
    })?;
    let s = reduce_keep(em, &e, &[ax], "0.0", id, add)?;
    em.elementwise(&[&e, &s], &out, |b, a| {
        Ok(b.op(format!("arith.divf {}, {} : {t}", a[0], a[1])))
    })
}

/// LayerNorm (`(x − μ)/√(σ² + ε)·γ + β`) or RMSNorm (`x/√(mean(x²) + ε)·γ`) over the
/// axes `axis..rank`.
pub fn layer_norm(
    em: &mut Emitter,
    id_: NodeId,
    nrm: &Norm,
    centered: bool,
) -> Result<Val, EmitError> {
    let x = em.input(id_, 0)?;
    let out = em.out_type(id_)?;
    let r = x.rank();
    let axes: Vec<usize> = (norm_axis(nrm.axis, r)..r).collect();
    let n = count(em, &x, &axes)?;
    let inv_n = 1.0 / n;
    let eps = nrm.epsilon;
    let t = elt(out.dtype);
    let gamma = em.input(id_, 1)?;
    let beta = match em.g.node(id_).input(2) {
        Some(_) if centered => Some(em.input(id_, 2)?),
        _ => None,
    };
    if centered {
        let s = reduce_keep(em, &x, &axes, "0.0", id, add)?;
        // Σ (x − μ)²: a reduction reading x and the broadcast sum.
        let (stat_ty, out_map) = dropped(&x, &axes);
        let smap = kept_map(r, &axes);
        let iters: Vec<&str> = (0..r)
            .map(|i| {
                if axes.contains(&i) {
                    "reduction"
                } else {
                    "parallel"
                }
            })
            .collect();
        let var = em.generic(
            &[(&x, identity_map(r)), (&s, smap)],
            &stat_ty,
            out_map,
            &iters,
            Init::Fill("0.0".into()),
            |b, a| {
                let k = b.fconst(inv_n, t);
                let mu = b.op(format!("arith.mulf {}, {k} : {t}", a[1]));
                let c = b.op(format!("arith.subf {}, {mu} : {t}", a[0]));
                let c2 = b.op(format!("arith.mulf {c}, {c} : {t}"));
                Ok(add(b, &a[2], &c2, t))
            },
        )?;
        let var = super::layout::expand_to(em, &var, &s.ty)?;
        let mut ins = vec![&x, &s, &var, &gamma];
        if let Some(bt) = &beta {
            ins.push(bt);
        }
        let has_beta = beta.is_some();
        em.elementwise(&ins, &out, |b, a| {
            let k = b.fconst(inv_n, t);
            let e = b.fconst(eps, t);
            let mu = b.op(format!("arith.mulf {}, {k} : {t}", a[1]));
            let c = b.op(format!("arith.subf {}, {mu} : {t}", a[0]));
            let v = b.op(format!("arith.mulf {}, {k} : {t}", a[2]));
            let ve = b.op(format!("arith.addf {v}, {e} : {t}"));
            let rs = b.op(format!("math.rsqrt {ve} : {t}"));
            let nrm = b.op(format!("arith.mulf {c}, {rs} : {t}"));
            let mut y = b.op(format!("arith.mulf {nrm}, {} : {t}", a[3]));
            if has_beta {
                y = b.op(format!("arith.addf {y}, {} : {t}", a[4]));
            }
            Ok(y)
        })
    } else {
        let ss = reduce_keep(
            em,
            &x,
            &axes,
            "0.0",
            |b, v, t| b.op(format!("arith.mulf {v}, {v} : {t}")),
            add,
        )?;
        em.elementwise(&[&x, &ss, &gamma], &out, |b, a| {
            let k = b.fconst(inv_n, t);
            let e = b.fconst(eps, t);
            let m = b.op(format!("arith.mulf {}, {k} : {t}", a[1]));
            let me = b.op(format!("arith.addf {m}, {e} : {t}"));
            let rs = b.op(format!("math.rsqrt {me} : {t}"));
            let nrm = b.op(format!("arith.mulf {}, {rs} : {t}", a[0]));
            Ok(b.op(format!("arith.mulf {nrm}, {} : {t}", a[2])))
        })
    }
}

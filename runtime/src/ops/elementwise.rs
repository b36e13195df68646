//! Element-wise ops: unary math and activations, broadcasting binary ops, variadic
//! Max/Min/Sum/Mean, Where, Clip, Mod, Cast. Float math runs in f64 and rounds once to the
//! output type, so results are the correctly rounded values ORT's f32 kernels approximate.
//! Integer arithmetic runs in i64 and wraps back into the input type.

use crate::broadcast::{broadcast_shapes, map1, map2, map3};
use crate::error::{bail, Result};
use crate::tensor::{zip_data, Tensor, TensorData};
use compc_ir::op::{BinaryOp, UnaryOp, VariadicOp};
use compc_ir::DType;
use std::borrow::Cow;

/// erf to ~1e-15 absolute: Taylor series below 3, continued fraction for erfc above
/// (std has no erf and f32 results only need about 1e-8).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        let mut t = a;
        for n in (1..=80).rev() {
            t = a + (n as f64 / 2.0) / t;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / t
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

pub(crate) fn i64_cow(t: &Tensor) -> Cow<'_, [i64]> {
    match t.data() {
        TensorData::I64(v) => Cow::Borrowed(v),
        _ => Cow::Owned(t.to_i64_vec()),
    }
}

/// Applies `f` to a float tensor in f64 and rounds back to its dtype.
pub(crate) fn float_map(x: &Tensor, what: &str, f: impl Fn(f64) -> f64 + Sync) -> Result<Tensor> {
    match x.data() {
        TensorData::F32(v) => {
            let out = map1(v, |a| f(a as f64) as f32);
            Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), out)
        }
        TensorData::F64(v) => {
            Tensor::new(DType::F64, x.shape().to_vec(), TensorData::F64(map1(v, f)))
        }
        _ => bail!("{what} needs a float input, got {}", x.dtype()),
    }
}

fn int_map(x: &Tensor, f: impl Fn(i64) -> i64 + Sync) -> Result<Tensor> {
    let v = map1(&i64_cow(x), f);
    Tensor::from_i64_as(x.dtype(), x.shape().to_vec(), v)
}

fn softplus(x: f64) -> f64 {
    // log1p(exp(x)) without overflow for large x.
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

pub fn unary(k: UnaryOp, x: &Tensor) -> Result<Tensor> {
    use UnaryOp as U;
    match k {
        U::Identity => return Ok(x.clone()),
        U::Not => {
            let Some(v) = x.as_bool() else {
                bail!("not needs a bool input, got {}", x.dtype())
            };
            return Ok(Tensor::from_bool(x.shape().to_vec(), map1(v, |b| !b)));
        }
        U::IsNaN => {
            let v = match x.data() {
                TensorData::F32(v) => map1(v, f32::is_nan),
                TensorData::F64(v) => map1(v, f64::is_nan),
                _ => bail!("is_nan needs a float input, got {}", x.dtype()),
            };
            return Ok(Tensor::from_bool(x.shape().to_vec(), v));
        }
        _ => {}
    }
    if x.dtype().is_int() {
        return match k {
            U::Abs => int_map(x, i64::wrapping_abs),
            U::Neg => int_map(x, i64::wrapping_neg),
            U::Sign => int_map(x, i64::signum),
            U::Relu => int_map(x, |v| v.max(0)),
            U::Ceil | U::Floor | U::Round => Ok(x.clone()),
            _ => bail!("{} is not defined for {} inputs", k.name(), x.dtype()),
        };
    }
    let f: fn(f64) -> f64 = match k {
        U::Abs => f64::abs,
        U::Acos => f64::acos,
        U::Acosh => f64::acosh,
        U::Asin => f64::asin,
        U::Asinh => f64::asinh,
        U::Atan => f64::atan,
        U::Atanh => f64::atanh,
        U::Ceil => f64::ceil,
        U::Cos => f64::cos,
        U::Cosh => f64::cosh,
        U::Erf => erf,
        U::Exp => f64::exp,
        U::Floor => f64::floor,
        U::HardSwish => |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
        U::Log => f64::ln,
        U::Mish => |v| v * softplus(v).tanh(),
        U::Neg => |v| -v,
        U::Reciprocal => |v| 1.0 / v,
        U::Relu => |v| if v > 0.0 { v } else { 0.0 },
        U::Round => f64::round_ties_even,
        U::Sigmoid => |v| {
            if v >= 0.0 {
                1.0 / (1.0 + (-v).exp())
            } else {
                let e = v.exp();
                e / (1.0 + e)
            }
        },
        U::Sign => |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        U::Sin => f64::sin,
        U::Sinh => f64::sinh,
        U::Softplus => softplus,
        U::Softsign => |v| v / (1.0 + v.abs()),
        U::Sqrt => f64::sqrt,
        U::Tan => f64::tan,
        U::Tanh => f64::tanh,
        U::Identity | U::Not | U::IsNaN => bail!("{} reached the float path", k.name()),
    };
    float_map(x, k.name(), f)
}

/// Float activations with attributes (LeakyRelu, Elu, Gelu, ...).
pub fn activation(name: &str, x: &Tensor, f: impl Fn(f64) -> f64 + Sync) -> Result<Tensor> {
    float_map(x, name, f)
}

pub fn gelu(x: &Tensor, approximate: &str) -> Result<Tensor> {
    match approximate {
        "none" => float_map(x, "gelu", |v| {
            0.5 * v * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2))
        }),
        "tanh" => float_map(x, "gelu", |v| {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
        }),
        other => bail!("gelu approximate `{other}` is not \"none\" or \"tanh\""),
    }
}

pub(crate) fn same_dtype(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        bail!(
            "{what} needs inputs of one type, got {} and {}",
            a.dtype(),
            b.dtype()
        );
    }
    Ok(())
}

/// A binary float op in f32 (f32/f16/bf16 storage) or f64.
fn float_bin(
    a: &Tensor,
    b: &Tensor,
    f32f: impl Fn(f32, f32) -> f32 + Sync,
    f64f: impl Fn(f64, f64) -> f64 + Sync,
) -> Result<Tensor> {
    match (a.data(), b.data()) {
        (TensorData::F64(x), TensorData::F64(y)) => {
            let (s, v) = map2(x, a.shape(), y, b.shape(), f64f)?;
            Tensor::new(DType::F64, s, TensorData::F64(v))
        }
        _ => {
            let (x, y) = (a.f32_cow(), b.f32_cow());
            let (s, v) = map2(&x, a.shape(), &y, b.shape(), f32f)?;
            Tensor::from_f32_as(a.dtype(), s, v)
        }
    }
}

fn int_bin(a: &Tensor, b: &Tensor, f: impl Fn(i64, i64) -> i64 + Sync) -> Result<Tensor> {
    let (x, y) = (i64_cow(a), i64_cow(b));
    let (s, v) = map2(&x, a.shape(), &y, b.shape(), f)?;
    Tensor::from_i64_as(a.dtype(), s, v)
}

pub(crate) fn has_zero(t: &Tensor) -> bool {
    i64_cow(t).contains(&0)
}

pub fn binary(k: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    use BinaryOp as B;
    match k {
        B::And | B::Or | B::Xor => {
            let (Some(x), Some(y)) = (a.as_bool(), b.as_bool()) else {
                bail!(
                    "{} needs bool inputs, got {} and {}",
                    k.name(),
                    a.dtype(),
                    b.dtype()
                );
            };
            let (s, v) = map2(x, a.shape(), y, b.shape(), |p, q| match k {
                B::And => p && q,
                B::Or => p || q,
                _ => p != q,
            })?;
            Ok(Tensor::from_bool(s, v))
        }
        B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor => {
            same_dtype(k.name(), a, b)?;
            if !a.dtype().is_int() {
                bail!("{} needs integer inputs, got {}", k.name(), a.dtype());
            }
            int_bin(a, b, |p, q| match k {
                B::BitwiseAnd => p & q,
                B::BitwiseOr => p | q,
                _ => p ^ q,
            })
        }
        B::Equal | B::Greater | B::GreaterOrEqual | B::Less | B::LessOrEqual => {
            same_dtype(k.name(), a, b)?;
            let cmp = move |o: Option<std::cmp::Ordering>| {
                use std::cmp::Ordering::*;
                match k {
                    B::Equal => o == Some(Equal),
                    B::Greater => o == Some(Greater),
                    B::GreaterOrEqual => matches!(o, Some(Greater | Equal)),
                    B::Less => o == Some(Less),
                    _ => matches!(o, Some(Less | Equal)),
                }
            };
            let (s, v) = if a.dtype().is_float() {
                let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
                map2(&x, a.shape(), &y, b.shape(), |p, q| cmp(p.partial_cmp(&q)))?
            } else {
                let (x, y) = (i64_cow(a), i64_cow(b));
                map2(&x, a.shape(), &y, b.shape(), |p, q| cmp(Some(p.cmp(&q))))?
            };
            Ok(Tensor::from_bool(s, v))
        }
        B::Pow => {
            if a.dtype().is_float() {
                let y = b.cast(a.dtype())?;
                float_bin(a, &y, f32::powf, f64::powf)
            } else if a.dtype().is_int() {
                let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
                let (s, v) = map2(&x, a.shape(), &y, b.shape(), f64::powf)?;
                Tensor::from_f64_as(a.dtype(), s, v)
            } else {
                bail!("pow is not defined for {} inputs", a.dtype())
            }
        }
        B::Add | B::Sub | B::Mul | B::Div | B::PRelu => {
            same_dtype(k.name(), a, b)?;
            if a.dtype().is_float() {
                match k {
                    B::Add => float_bin(a, b, |p, q| p + q, |p, q| p + q),
                    B::Sub => float_bin(a, b, |p, q| p - q, |p, q| p - q),
                    B::Mul => float_bin(a, b, |p, q| p * q, |p, q| p * q),
                    B::Div => float_bin(a, b, |p, q| p / q, |p, q| p / q),
                    _ => float_bin(
                        a,
                        b,
                        |p, q| if p < 0.0 { p * q } else { p },
                        |p, q| if p < 0.0 { p * q } else { p },
                    ),
                }
            } else if a.dtype().is_int() {
                if k == B::Div && has_zero(b) {
                    bail!("integer division by zero");
                }
                int_bin(a, b, |p, q| match k {
                    B::Add => p.wrapping_add(q),
                    B::Sub => p.wrapping_sub(q),
                    B::Mul => p.wrapping_mul(q),
                    // Truncates toward zero like C (ONNX integer Div).
                    B::Div => p.checked_div(q).unwrap_or(0),
                    _ => {
                        if p < 0 {
                            p.wrapping_mul(q)
                        } else {
                            p
                        }
                    }
                })
            } else {
                bail!("{} is not defined for {} inputs", k.name(), a.dtype())
            }
        }
    }
}

/// ONNX Mod: `fmod = 1` is C's remainder (sign of the dividend); `fmod = 0` is Python's
/// (sign of the divisor).
pub fn modulo(a: &Tensor, b: &Tensor, fmod: bool) -> Result<Tensor> {
    same_dtype("mod", a, b)?;
    if a.dtype().is_float() {
        let py = |r: f64, q: f64| {
            if r != 0.0 && ((r < 0.0) != (q < 0.0)) {
                r + q
            } else {
                r
            }
        };
        if fmod {
            float_bin(a, b, |p, q| p % q, |p, q| p % q)
        } else {
            float_bin(
                a,
                b,
                move |p, q| py((p % q) as f64, q as f64) as f32,
                move |p, q| py(p % q, q),
            )
        }
    } else if a.dtype().is_int() {
        if has_zero(b) {
            bail!("integer modulo by zero");
        }
        int_bin(a, b, |p, q| {
            let r = p.checked_rem(q).unwrap_or(0);
            if !fmod && r != 0 && ((r < 0) != (q < 0)) {
                r + q
            } else {
                r
            }
        })
    } else {
        bail!("mod is not defined for {} inputs", a.dtype())
    }
}

fn max_of<T: PartialOrd>(a: T, b: T) -> T {
    // NaN propagates like numpy's maximum: a NaN `a` compares unequal to itself.
    #[allow(clippy::eq_op)]
    if a >= b || a != a {
        a
    } else {
        b
    }
}

fn min_of<T: PartialOrd>(a: T, b: T) -> T {
    #[allow(clippy::eq_op)]
    if a <= b || a != a {
        a
    } else {
        b
    }
}

pub fn variadic(k: VariadicOp, xs: &[&Tensor]) -> Result<Tensor> {
    let Some((first, rest)) = xs.split_first() else {
        bail!("{} needs at least one input", k.name());
    };
    let mut acc = (*first).clone();
    for x in rest {
        same_dtype(k.name(), &acc, x)?;
        acc = if acc.dtype().is_float() {
            match k {
                VariadicOp::Max => float_bin(&acc, x, max_of, max_of)?,
                VariadicOp::Min => float_bin(&acc, x, min_of, min_of)?,
                _ => float_bin(&acc, x, |p, q| p + q, |p, q| p + q)?,
            }
        } else if acc.dtype().is_int() {
            match k {
                VariadicOp::Max => int_bin(&acc, x, max_of)?,
                VariadicOp::Min => int_bin(&acc, x, min_of)?,
                _ => int_bin(&acc, x, i64::wrapping_add)?,
            }
        } else {
            bail!("{} is not defined for {} inputs", k.name(), acc.dtype());
        };
    }
    if k == VariadicOp::Mean {
        let n = xs.len() as f64;
        acc = if acc.dtype().is_float() {
            float_map(&acc, "mean", |v| v / n)?
        } else {
            int_map(&acc, |v| v / xs.len() as i64)?
        };
    }
    Ok(acc)
}

pub fn where_op(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let Some(cv) = c.as_bool() else {
        bail!("where needs a bool condition, got {}", c.dtype())
    };
    same_dtype("where", x, y)?;
    let shape = broadcast_shapes(&broadcast_shapes(c.shape(), x.shape())?, y.shape())?;
    let data = zip_data!(x.data(), y.data(), (a, b) => {
        map3((cv, c.shape()), (a.as_slice(), x.shape()), (b.as_slice(), y.shape()), |k, p, q| if k { p } else { q })?.1
    }, else bail!("where: inputs of different storage"));
    Tensor::new(x.dtype(), shape, data)
}

fn scalar_bound(t: Option<&Tensor>, x: &Tensor, what: &str) -> Result<Option<f64>> {
    let Some(t) = t else { return Ok(None) };
    if t.numel() != 1 {
        bail!("clip {what} must be a scalar, got shape {:?}", t.shape());
    }
    if t.dtype() != x.dtype() {
        bail!(
            "clip {what} has type {}, input has {}",
            t.dtype(),
            x.dtype()
        );
    }
    Ok(t.get_f64(0))
}

pub fn clip(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor> {
    let lo = scalar_bound(lo, x, "min")?;
    let hi = scalar_bound(hi, x, "max")?;
    if x.dtype().is_float() {
        let (l, h) = (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY));
        float_map(
            x,
            "clip",
            move |v| if v.is_nan() { v } else { v.max(l).min(h) },
        )
    } else if x.dtype().is_int() {
        let (l, h) = (
            lo.map_or(i64::MIN, |v| v as i64),
            hi.map_or(i64::MAX, |v| v as i64),
        );
        int_map(x, move |v| v.max(l).min(h))
    } else {
        bail!("clip is not defined for {} inputs", x.dtype())
    }
}

/// Dropout at inference (or in training mode with ratio 0, which drops nothing): the
/// input unchanged and, if asked for, an all-true mask. Training with a positive ratio is
/// random, which a reference runtime cannot reproduce.
pub fn dropout(
    x: &Tensor,
    ratio: Option<&Tensor>,
    training: Option<&Tensor>,
    num_outputs: usize,
) -> Result<Vec<Tensor>> {
    if let Some(t) = training {
        let ratio = ratio.map_or(Some(0.5), |r| r.get_f64(0));
        if t.get_f64(0).unwrap_or(0.0) != 0.0 && ratio != Some(0.0) {
            bail!("dropout in training mode is not supported (it is random; only ratio 0 is computed)");
        }
    }
    let mut out = vec![x.clone()];
    if num_outputs > 1 {
        out.push(Tensor::from_bool(x.shape().to_vec(), vec![true; x.numel()]));
    }
    Ok(out)
}

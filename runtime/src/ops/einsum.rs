//! Einsum as a sequence of pairwise contractions: letters only in one operand are summed
//! first, then each pair becomes a batched MatMul over (batch, free, contracted) axes.
//! Covers what torch exports (`bhqd,bhkd->bhqk`, `bij,bjk->bik`, `i,j->ij`, `...`), with
//! size-1 broadcasting; a letter repeated within one operand takes the diagonal.

use crate::broadcast::expand_index;
use crate::error::{bail, Result};
use crate::ops::matmul::matmul;
use crate::ops::reduce::reduce;
use crate::ops::shape_ops::transpose;
use crate::tensor::Tensor;
use compc_ir::op::{Reduce, ReduceOp};
use std::borrow::Cow;

/// Placeholder letters for the dims an ellipsis stands for.
fn ellipsis_letter(i: usize) -> char {
    char::from_u32(0x100 + i as u32).unwrap_or('?')
}

fn parse_term(t: &str, rank: usize, ell: usize) -> Result<Vec<char>> {
    let t = t.trim();
    let explicit = t
        .replace("...", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .count();
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            let n = rank.saturating_sub(explicit);
            out.extend((ell - n..ell).map(ellipsis_letter));
            rest = r;
        } else {
            let mut cs = rest.chars();
            if let Some(c) = cs.next() {
                if c.is_ascii_alphabetic() {
                    out.push(c);
                } else if !c.is_whitespace() {
                    bail!("einsum: unexpected `{c}` in term `{t}`");
                }
            }
            rest = cs.as_str();
        }
    }
    if out.len() != rank {
        bail!(
            "einsum term `{t}` has {} letters for an operand of rank {rank}",
            out.len()
        );
    }
    Ok(out)
}

fn sum_axes(t: &Tensor, axes: Vec<i64>) -> Result<Tensor> {
    if axes.is_empty() {
        return Ok(t.clone());
    }
    let r = Reduce {
        axes: Some(axes),
        keepdims: false,
        noop_with_empty_axes: false,
    };
    reduce(ReduceOp::Sum, &r, t, None)
}

fn permute_to(t: &Tensor, have: &[char], want: &[char]) -> Result<Tensor> {
    let perm: Vec<i64> = want
        .iter()
        .map(|c| have.iter().position(|h| h == c).unwrap_or(0) as i64)
        .collect();
    transpose(t, Some(&perm))
}

/// Contracts two labelled operands into `out` letters (each in at least one operand).
fn contract(
    a: (&Tensor, &[char]),
    b: (&Tensor, &[char]),
    out: &[char],
    size: &dyn Fn(char) -> usize,
) -> Result<Tensor> {
    let (ta, la) = a;
    let (tb, lb) = b;
    let batch: Vec<char> = out
        .iter()
        .copied()
        .filter(|c| la.contains(c) && lb.contains(c))
        .collect();
    let af: Vec<char> = out
        .iter()
        .copied()
        .filter(|c| la.contains(c) && !lb.contains(c))
        .collect();
    let bf: Vec<char> = out
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !la.contains(c))
        .collect();
    let con: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !out.contains(c))
        .collect();
    let prod = |v: &[char]| v.iter().map(|&c| size(c)).product::<usize>();
    let (nb, m, k, n) = (prod(&batch), prod(&af), prod(&con), prod(&bf));
    let pa: Vec<char> = batch.iter().chain(&af).chain(&con).copied().collect();
    let pb: Vec<char> = batch.iter().chain(&con).chain(&bf).copied().collect();
    let xa = permute_to(ta, la, &pa)?.reshaped(vec![nb, m, k])?;
    let xb = permute_to(tb, lb, &pb)?.reshaped(vec![nb, k, n])?;
    let res: Vec<char> = batch.iter().chain(&af).chain(&bf).copied().collect();
    let y = matmul(&xa, &xb)?.reshaped(res.iter().map(|&c| size(c)).collect())?;
    permute_to(&y, &res, out)
}

/// The diagonal over letters repeated in `labels` (their axes must have one size): one
/// axis per distinct letter, in order of first occurrence.
fn diagonal<'a>(
    x: &'a Tensor,
    labels: Vec<char>,
    eq: &str,
) -> Result<(Cow<'a, Tensor>, Vec<char>)> {
    let mut uniq: Vec<char> = Vec::new();
    for &c in &labels {
        if !uniq.contains(&c) {
            uniq.push(c);
        }
    }
    if uniq.len() == labels.len() {
        return Ok((Cow::Borrowed(x), labels));
    }
    let mut shape = Vec::with_capacity(uniq.len());
    for &c in &uniq {
        let sizes: Vec<usize> = labels
            .iter()
            .zip(x.shape())
            .filter(|(l, _)| **l == c)
            .map(|(_, &d)| d)
            .collect();
        if sizes.windows(2).any(|w| w[0] != w[1]) {
            bail!("einsum `{eq}`: repeated letter `{c}` has sizes {sizes:?}");
        }
        shape.push(sizes[0]);
    }
    let st = crate::broadcast::strides(x.shape());
    // Stride of each distinct letter in the input: the sum over its axes.
    let lst: Vec<usize> = uniq
        .iter()
        .map(|c| {
            labels
                .iter()
                .zip(&st)
                .filter(|(l, _)| *l == c)
                .map(|(_, s)| s)
                .sum()
        })
        .collect();
    let n: usize = shape.iter().product();
    let ost = crate::broadcast::strides(&shape);
    let idx: Vec<usize> = (0..n)
        .map(|i| {
            (0..shape.len())
                .map(|d| (i / ost[d]) % shape[d].max(1) * lst[d])
                .sum()
        })
        .collect();
    Ok((Cow::Owned(x.take(&idx, shape, None)?), uniq))
}

pub fn einsum(eq: &str, xs: &[&Tensor]) -> Result<Tensor> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != xs.len() || xs.is_empty() {
        bail!(
            "einsum `{eq}` names {} operands, got {}",
            terms.len(),
            xs.len()
        );
    }
    let ell = terms
        .iter()
        .zip(xs)
        .map(|(t, x)| {
            if t.contains("...") {
                x.rank().saturating_sub(t.replace("...", "").len())
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0);
    let raw: Vec<Vec<char>> = terms
        .iter()
        .zip(xs)
        .map(|(t, x)| parse_term(t, x.rank(), ell))
        .collect::<Result<_>>()?;
    // A letter repeated within one operand takes that operand's diagonal first.
    let mut owned: Vec<Cow<Tensor>> = Vec::with_capacity(xs.len());
    let mut labels: Vec<Vec<char>> = Vec::with_capacity(xs.len());
    for (x, l) in xs.iter().zip(raw) {
        let (t, l) = diagonal(x, l, &eq)?;
        owned.push(t);
        labels.push(l);
    }
    let xs: Vec<&Tensor> = owned.iter().map(|t| t.as_ref()).collect();
    let mut sizes: std::collections::BTreeMap<char, usize> = Default::default();
    for (l, x) in labels.iter().zip(&xs) {
        for (i, &c) in l.iter().enumerate() {
            let d = x.shape()[i];
            let e = sizes.entry(c).or_insert(d);
            if *e != d && *e != 1 && d != 1 {
                bail!("einsum `{eq}`: letter `{c}` has sizes {} and {d}", *e);
            }
            *e = (*e).max(d);
        }
    }
    let out: Vec<char> = match rhs {
        Some(r) => parse_term(
            r,
            r.replace("...", "").len() + if r.contains("...") { ell } else { 0 },
            ell,
        )?,
        None => {
            let all: Vec<char> = labels.iter().flatten().copied().collect();
            let mut once: Vec<char> = sizes
                .keys()
                .copied()
                .filter(|c| all.iter().filter(|x| *x == c).count() == 1 && (*c as u32) < 0x100)
                .collect();
            once.sort_unstable();
            (0..ell).map(ellipsis_letter).chain(once).collect()
        }
    };
    if let Some(c) = out.iter().find(|c| !sizes.contains_key(c)) {
        bail!("einsum `{eq}`: output letter `{c}` appears in no operand");
    }
    let size = |c: char| sizes.get(&c).copied().unwrap_or(1);
    // Broadcast size-1 dims, then sum out letters no later operand or the output needs.
    let mut ops: Vec<(Tensor, Vec<char>)> = Vec::with_capacity(xs.len());
    for (i, (x, l)) in xs.iter().zip(&labels).enumerate() {
        let full: Vec<usize> = l.iter().map(|&c| size(c)).collect();
        let mut t = if full.as_slice() != x.shape() {
            x.take(&expand_index(x.shape(), &full), full, None)?
        } else {
            (*x).clone()
        };
        let needed = |c: &char| {
            out.contains(c)
                || labels
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.contains(c))
        };
        let drop: Vec<i64> = l
            .iter()
            .enumerate()
            .filter(|(_, c)| !needed(c))
            .map(|(p, _)| p as i64)
            .collect();
        t = sum_axes(&t, drop)?;
        ops.push((t, l.iter().copied().filter(|c| needed(c)).collect()));
    }
    let mut it = ops.into_iter();
    let Some((mut cur, mut cl)) = it.next() else {
        bail!("einsum needs an operand")
    };
    let rest: Vec<(Tensor, Vec<char>)> = it.collect();
    for (i, (t, l)) in rest.iter().enumerate() {
        let later = |c: &char| out.contains(c) || rest[i + 1..].iter().any(|(_, o)| o.contains(c));
        let mut keep: Vec<char> = cl
            .iter()
            .chain(l.iter())
            .copied()
            .filter(|c| later(c))
            .collect();
        let mut seen = Vec::new();
        keep.retain(|c| {
            if seen.contains(c) {
                false
            } else {
                seen.push(*c);
                true
            }
        });
        cur = contract((&cur, &cl), (t, l), &keep, &size)?;
        cl = keep;
    }
    let drop: Vec<i64> = cl
        .iter()
        .enumerate()
        .filter(|(_, c)| !out.contains(c))
        .map(|(p, _)| p as i64)
        .collect();
    cur = sum_axes(&cur, drop)?;
    cl.retain(|c| out.contains(c));
    permute_to(&cur, &cl, &out)
}

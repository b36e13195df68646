//! Einsum: each letter names one dim across the operands; `...` stands for broadcast
//! leading dims. Without `->`, the output is the ellipsis dims followed by the letters
//! that occur once, in alphabetical order (numpy's implicit mode).

use super::dims::{broadcast_shapes, unify};
use super::Cx;
use crate::shape::{Dim, Shape, TensorType};
use std::collections::BTreeMap;

type Out = Result<Vec<TensorType>, String>;

/// One operand or output term: letters before and after the ellipsis, if any.
struct Term {
    before: Vec<char>,
    after: Vec<char>,
    ellipsis: bool,
}

impl Term {
    fn parse(t: &str) -> Result<Term, String> {
        let (before, after, ellipsis) = match t.split_once("...") {
            Some((b, a)) => (b, a, true),
            None => (t, "", false),
        };
        let letters = |s: &str| -> Result<Vec<char>, String> {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        Ok(c)
                    } else {
                        Err(format!("term `{t}` has `{c}`, which is not a letter"))
                    }
                })
                .collect()
        };
        Ok(Term {
            before: letters(before)?,
            after: letters(after)?,
            ellipsis,
        })
    }

    fn letters(&self) -> impl Iterator<Item = char> + '_ {
        self.before.iter().chain(&self.after).copied()
    }
}

pub(crate) fn einsum(cx: &Cx, equation: &str) -> Out {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms = lhs
        .split(',')
        .map(Term::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if terms.len() != cx.n_inputs() {
        return Err(format!(
            "equation `{equation}` has {} operands but the node has {} inputs",
            terms.len(),
            cx.n_inputs()
        ));
    }
    let dtype = cx.ty(0)?.dtype;
    let mut sizes: BTreeMap<char, Dim> = BTreeMap::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    // `None` once an operand with an ellipsis has an unknown rank.
    let mut ell: Option<Shape> = Some(Shape::Ranked(Vec::new()));
    for (i, term) in terms.iter().enumerate() {
        for c in term.letters() {
            *counts.entry(c).or_default() += 1;
        }
        let Some(dims) = cx.ty(i)?.shape.dims() else {
            for c in term.letters() {
                sizes.entry(c).or_insert(Dim::Unknown);
            }
            if term.ellipsis {
                ell = None;
            }
            continue;
        };
        let named = term.before.len() + term.after.len();
        let ell_rank = match (term.ellipsis, dims.len().checked_sub(named)) {
            (true, Some(r)) => r,
            (false, Some(0)) => 0,
            _ => {
                return Err(format!(
                    "operand {i} has rank {} but its term names {named} axes",
                    dims.len()
                ))
            }
        };
        let lead = term.before.len();
        let placed = term
            .before
            .iter()
            .zip(&dims[..lead])
            .chain(term.after.iter().zip(&dims[lead + ell_rank..]));
        for (&c, d) in placed {
            let merged = match sizes.get(&c) {
                None => d.clone(),
                // Size-1 dims broadcast against the same letter elsewhere.
                Some(Dim::Known(1)) => d.clone(),
                Some(prev) if *d == Dim::Known(1) => prev.clone(),
                Some(prev) => {
                    unify(prev, d).map_err(|e| format!("letter `{c}` has two sizes: {e}"))?
                }
            };
            sizes.insert(c, merged);
        }
        if let Some(acc) = &ell {
            let mine = Shape::Ranked(dims[lead..lead + ell_rank].to_vec());
            ell = Some(broadcast_shapes(&[acc, &mine]).map_err(|e| format!("ellipsis dims: {e}"))?);
        }
    }
    let any_ellipsis = terms.iter().any(|t| t.ellipsis);
    let out_term = match rhs {
        Some(r) => Term::parse(r)?,
        None => Term {
            before: Vec::new(),
            after: counts
                .iter()
                .filter(|(_, &n)| n == 1)
                .map(|(&c, _)| c)
                .collect(),
            ellipsis: any_ellipsis,
        },
    };
    let mut out = Vec::new();
    let lookup = |c: &char| {
        sizes
            .get(c)
            .cloned()
            .ok_or_else(|| format!("output letter `{c}` does not occur in any operand"))
    };
    for c in &out_term.before {
        out.push(lookup(c)?);
    }
    if out_term.ellipsis {
        match &ell {
            Some(Shape::Ranked(d)) => out.extend(d.iter().cloned()),
            _ => return Ok(vec![TensorType::unranked(dtype)]),
        }
    }
    for c in &out_term.after {
        out.push(lookup(c)?);
    }
    Ok(vec![TensorType::new(dtype, Shape::Ranked(out))])
}

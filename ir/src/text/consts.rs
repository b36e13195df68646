//! `"const"` nodes and their weights. Inline `value = dense<...>` makes an owned weight;
//! `weight = @name` with `sha = "..."` makes a `Missing` weight that remembers type and
//! hash (so it prints back the same), or, given a `WeightStore`, the store's weight.

use super::attrs::{AttrValue, ParsedAttr};
use super::lexer::Token;
use super::literal::encode;
use super::parser::{err_at, Parser};
use super::ParseError;
use crate::attr::Attr;
use crate::dtype::DType;
use crate::shape::TensorType;
use crate::weights::{Weight, WeightData, WeightId, WeightStore};
use std::collections::HashMap;

/// Weight bookkeeping for one parse.
pub(super) struct Weights<'a> {
    store: Option<&'a WeightStore>,
    /// The store's weights by name, built on first use.
    by_name: Option<HashMap<&'a str, Vec<WeightId>>>,
    /// Store id → graph id, so two consts naming one weight share it.
    from_store: HashMap<WeightId, WeightId>,
    /// Hash-only weights already made, by what identifies them.
    missing: HashMap<(String, u64, DType, Vec<u64>), WeightId>,
    inline_count: usize,
}

impl<'a> Weights<'a> {
    pub fn new(store: Option<&'a WeightStore>) -> Self {
        Weights {
            store,
            by_name: None,
            from_store: HashMap::new(),
            missing: HashMap::new(),
            inline_count: 0,
        }
    }

    /// A name for an inline weight that differs from the node's `loc` name, so the printer
    /// (which omits `loc` when it equals the weight's name) prints the `loc` again.
    fn inline_name(&mut self, loc: Option<&str>) -> String {
        let mut name = format!("const_{}", self.inline_count);
        self.inline_count += 1;
        while Some(name.as_str()) == loc {
            name.push('_');
        }
        name
    }
}

/// The `sha` attribute: up to 16 hex digits.
fn parse_sha(a: &ParsedAttr) -> Result<u64, ParseError> {
    let bad = || {
        ParseError::new(
            a.line,
            a.col,
            "`sha` must be a string of 16 hex digits, like \"00ff00ff00ff00ff\"",
        )
    };
    match &a.value {
        AttrValue::Plain(Attr::Str(s))
            if !s.is_empty() && s.len() <= 16 && s.bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            u64::from_str_radix(s, 16).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

impl<'a> Parser<'a> {
    /// The weight of a `const` with result type `ty`, and the node's name.
    pub(super) fn const_weight(
        &mut self,
        op_tok: &Token,
        attrs: Vec<ParsedAttr>,
        ty: &TensorType,
        loc: Option<String>,
    ) -> Result<(WeightId, String), ParseError> {
        let mut value = None;
        let mut weight = None;
        let mut sha = None;
        for a in attrs {
            match (a.name.as_str(), &a.value) {
                ("value", AttrValue::Dense { .. }) => value = Some(a),
                ("weight", AttrValue::Weight(_)) => weight = Some(a),
                ("sha", _) => sha = Some((parse_sha(&a)?, a)),
                ("value", _) => return Err(err_of(&a, "`value` of `const` must be `dense<...>`")),
                ("weight", _) => {
                    return Err(err_of(
                        &a,
                        "`weight` of `const` must be a weight name, `@name`",
                    ))
                }
                (other, _) => {
                    return Err(err_of(
                        &a,
                        &format!(
                            "`const` has no attribute `{other}` (it accepts: sha, value, weight)"
                        ),
                    ))
                }
            }
        }
        let dims = ty.shape.as_known().ok_or_else(|| {
            err_at(
                op_tok,
                format!("the type of a `const` must be fully known, found {ty}"),
            )
        })?;
        match (value, weight) {
            (Some(_), Some(w)) => Err(err_of(
                &w,
                "`const` takes either `value` or `weight`, not both",
            )),
            (None, None) => Err(err_at(
                op_tok,
                "`const` needs `value = dense<...>` or `weight = @name`",
            )),
            (Some(v), None) => {
                if let Some((_, s)) = sha {
                    return Err(err_of(
                        &s,
                        "`sha` goes with `weight = @name`, not with `value`",
                    ));
                }
                let AttrValue::Dense {
                    dense,
                    ty: written,
                    at,
                } = &v.value
                else {
                    return Err(err_of(&v, "`value` of `const` must be `dense<...>`"));
                };
                if let Some(w) = written.as_ref().filter(|w| *w != ty) {
                    return Err(ParseError::new(
                        at.0,
                        at.1,
                        format!("the value's type {w} differs from the result type {ty}"),
                    ));
                }
                let bytes = encode(ty.dtype, ty.shape.numel(), dense, *at)?;
                let name = self.weights.inline_name(loc.as_deref());
                let w = Weight::from_bytes(name.clone(), ty.dtype, dims, bytes)
                    .map_err(|e| ParseError::new(at.0, at.1, e.to_string()))?;
                let wid = self.g.weights.add(w);
                Ok((wid, loc.unwrap_or(name)))
            }
            (None, Some(w)) => {
                let AttrValue::Weight(name) = &w.value else {
                    return Err(err_of(
                        &w,
                        "`weight` of `const` must be a weight name, `@name`",
                    ));
                };
                let name = name.clone();
                let wid = match self.weights.store {
                    Some(store) => {
                        self.store_weight(store, &w, &name, sha.map(|s| s.0), ty, &dims)?
                    }
                    None => {
                        let Some((hash, _)) = sha else {
                            return Err(err_of(&w, "`weight = @name` needs `sha = \"<16 hex digits>\"` (or parse with a weight store)"));
                        };
                        self.missing_weight(&w, &name, hash, ty.dtype, dims)?
                    }
                };
                Ok((wid, loc.unwrap_or(name)))
            }
        }
    }

    fn missing_weight(
        &mut self,
        at: &ParsedAttr,
        name: &str,
        hash: u64,
        dtype: DType,
        dims: Vec<u64>,
    ) -> Result<WeightId, ParseError> {
        let key = (name.to_string(), hash, dtype, dims.clone());
        if let Some(&id) = self.weights.missing.get(&key) {
            return Ok(id);
        }
        let w = Weight::new(name, dtype, dims, WeightData::Missing { hash })
            .map_err(|e| err_of(at, &e.to_string()))?;
        let id = self.g.weights.add(w);
        self.weights.missing.insert(key, id);
        Ok(id)
    }

    fn store_weight(
        &mut self,
        store: &'a WeightStore,
        at: &ParsedAttr,
        name: &str,
        hash: Option<u64>,
        ty: &TensorType,
        dims: &[u64],
    ) -> Result<WeightId, ParseError> {
        let shown = format!("@{}", super::name_text(name));
        let by_name = self.weights.by_name.get_or_insert_with(|| {
            let mut m: HashMap<&str, Vec<WeightId>> = HashMap::new();
            for (id, w) in store.iter() {
                m.entry(w.name.as_str()).or_default().push(id);
            }
            m
        });
        let candidates = by_name.get(name).cloned().unwrap_or_default();
        let Some(&first) = candidates.first() else {
            return Err(err_of(
                at,
                &format!("weight `{shown}` is not in the weight store"),
            ));
        };
        let found = match hash {
            None => first,
            Some(h) => match candidates
                .iter()
                .find(|&&id| store.get(id).content_hash() == h)
            {
                Some(&id) => id,
                None => {
                    let have = store.get(first).content_hash();
                    return Err(err_of(at, &format!("weight `{shown}` has hash {have:016x} in the store, the text says {h:016x}")));
                }
            },
        };
        let w = store.get(found);
        if w.dtype != ty.dtype || w.dims != dims {
            let have = TensorType::known(w.dtype, &w.dims);
            return Err(err_of(
                at,
                &format!("weight `{shown}` is {have} in the store, the text says {ty}"),
            ));
        }
        if let Some(&id) = self.weights.from_store.get(&found) {
            return Ok(id);
        }
        let id = self.g.weights.add(w.clone());
        self.weights.from_store.insert(found, id);
        Ok(id)
    }
}

fn err_of(a: &ParsedAttr, msg: &str) -> ParseError {
    ParseError::new(a.line, a.col, msg)
}

//! Attribute dictionaries: `{alpha = 1.5, mode = "x", sizes = [1, 2], to = i64,
//! value = dense<[1.0]> : tensor<1xf32>}`. Values are parsed without knowing the op; the op
//! (`Op::from_name`, or `const`) decides what it accepts.

use super::lexer::{is_float_text, Tok, Token};
use super::literal::{encode, Dense, Elem, ElemValue};
use super::parser::{err_at, unexpected, Parser};
use super::ParseError;
use crate::attr::{Attr, Attrs, Literal};
use crate::dtype::DType;
use crate::shape::TensorType;

/// Deeper `dense<[[[...]]]>` nesting is refused rather than risking the stack.
const MAX_DENSE_DEPTH: usize = 32;

/// One `name = value`, positioned at the name.
pub(super) struct ParsedAttr {
    pub name: String,
    pub value: AttrValue,
    pub line: usize,
    pub col: usize,
}

pub(super) enum AttrValue {
    Plain(Attr),
    /// `@name`: only `const` takes it.
    Weight(String),
    /// `dense<...>`, with its `: tensor<...>` if written (a `const`'s `value` has none: its
    /// result type says it). `at` is where `dense` starts.
    Dense {
        dense: Dense,
        ty: Option<TensorType>,
        at: (usize, usize),
    },
}

impl ParsedAttr {
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.line, self.col, msg)
    }
}

/// The attributes of an ordinary op: no weight references, tensors with their types.
pub(super) fn plain_attrs(attrs: Vec<ParsedAttr>) -> Result<Attrs, ParseError> {
    let mut out = Attrs::new();
    for a in attrs {
        let v = match a.value {
            AttrValue::Plain(v) => v,
            AttrValue::Weight(_) => {
                return Err(a.err(format!(
                    "attribute `{}`: `@name` weight references are only valid in `const`",
                    a.name
                )))
            }
            AttrValue::Dense { ty: None, .. } => {
                return Err(a.err(format!(
                    "attribute `{}`: a tensor attribute needs its type, `dense<...> : tensor<...>`",
                    a.name
                )))
            }
            AttrValue::Dense {
                dense,
                ty: Some(ty),
                at,
            } => {
                let dims = ty.shape.as_known().ok_or_else(|| {
                    ParseError::new(
                        at.0,
                        at.1,
                        format!("a tensor attribute's type must be fully known, found {ty}"),
                    )
                })?;
                let bytes = encode(ty.dtype, ty.shape.numel(), &dense, at)?;
                Attr::Tensor(Literal {
                    dtype: ty.dtype,
                    dims,
                    bytes,
                })
            }
        };
        out.insert(a.name, v);
    }
    Ok(out)
}

fn num_attr(t: &Token, s: &str) -> Result<Attr, ParseError> {
    if is_float_text(s) {
        s.parse::<f32>()
            .map(Attr::Float)
            .map_err(|_| err_at(t, format!("`{s}` is not a valid float")))
    } else {
        s.parse::<i64>()
            .map(Attr::Int)
            .map_err(|_| err_at(t, format!("integer `{s}` does not fit in 64 bits")))
    }
}

/// An element of an attribute list, before the list's kind is known.
enum ListItem {
    Num(String),
    Str(String),
}

impl Parser<'_> {
    /// `{name = value, ...}`, the next token being the `{`.
    pub(super) fn attr_dict(&mut self) -> Result<Vec<ParsedAttr>, ParseError> {
        self.expect('{', "to start the attributes")?;
        let attrs = self.list('}', "after the attributes", |p| p.attr())?;
        let mut out: Vec<ParsedAttr> = Vec::with_capacity(attrs.len());
        for a in attrs {
            if out.iter().any(|b| b.name == a.name) {
                return Err(a.err(format!("attribute `{}` is given twice", a.name)));
            }
            out.push(a);
        }
        Ok(out)
    }

    fn attr(&mut self) -> Result<ParsedAttr, ParseError> {
        let t = self.bump()?;
        let name = match t.tok {
            Tok::Ident(s) | Tok::Str(s) => s,
            _ => return Err(unexpected(&t, "an attribute name")),
        };
        self.expect('=', "after the attribute name")?;
        Ok(ParsedAttr {
            name,
            value: self.attr_value()?,
            line: t.line,
            col: t.col,
        })
    }

    fn attr_value(&mut self) -> Result<AttrValue, ParseError> {
        let t = self.bump()?;
        let plain = match &t.tok {
            Tok::Num(s) => num_attr(&t, s)?,
            Tok::Str(s) => Attr::Str(s.clone()),
            Tok::At(s) => return Ok(AttrValue::Weight(s.clone())),
            Tok::Ident(w) if w == "inf" || w == "nan" => num_attr(&t, w)?,
            Tok::Ident(w) if w == "dense" => return self.dense_attr(&t),
            Tok::Ident(w) => match w.parse::<DType>() {
                Ok(d) => Attr::Type(d),
                Err(_) => return Err(unexpected(&t, "an attribute value")),
            },
            Tok::Punct('[') => self.attr_list()?,
            _ => return Err(unexpected(&t, "an attribute value")),
        };
        Ok(AttrValue::Plain(plain))
    }

    /// `[1, 2]` → ints, any float makes floats, `["a"]` → strings; `[]` is ints.
    fn attr_list(&mut self) -> Result<Attr, ParseError> {
        let mut items: Vec<(ListItem, Token)> = Vec::new();
        if !self.eat(']')? {
            loop {
                let t = self.bump()?;
                let item = match &t.tok {
                    Tok::Num(s) => ListItem::Num(s.clone()),
                    Tok::Ident(w) if w == "inf" || w == "nan" => ListItem::Num(w.clone()),
                    Tok::Str(s) => ListItem::Str(s.clone()),
                    _ => return Err(unexpected(&t, "a number or a string in the list")),
                };
                if let Some((first, _)) = items.first() {
                    if matches!(first, ListItem::Str(_)) != matches!(item, ListItem::Str(_)) {
                        return Err(err_at(
                            &t,
                            "a list attribute cannot mix strings and numbers",
                        ));
                    }
                }
                items.push((item, t));
                if !self.eat(',')? {
                    self.expect(']', "after the list")?;
                    break;
                }
            }
        }
        let any_float = items
            .iter()
            .any(|(i, _)| matches!(i, ListItem::Num(s) if is_float_text(s)));
        if let Some((ListItem::Str(_), _)) = items.first() {
            let strs = items
                .into_iter()
                .filter_map(|(i, _)| match i {
                    ListItem::Str(s) => Some(s),
                    ListItem::Num(_) => None,
                })
                .collect();
            return Ok(Attr::Strs(strs));
        }
        let mut ints = Vec::new();
        let mut floats = Vec::new();
        for (i, t) in &items {
            let ListItem::Num(s) = i else { continue };
            if any_float {
                floats.push(
                    s.parse::<f32>()
                        .map_err(|_| err_at(t, format!("`{s}` is not a valid float")))?,
                );
            } else {
                match num_attr(t, s)? {
                    Attr::Int(v) => ints.push(v),
                    _ => return Err(err_at(t, format!("`{s}` is not an integer"))),
                }
            }
        }
        Ok(if any_float {
            Attr::Floats(floats)
        } else {
            Attr::Ints(ints)
        })
    }

    /// `dense<[...]>`, `dense<5>` or `dense<"0x...">`, optionally `: tensor<...>`.
    pub(super) fn dense_attr(&mut self, kw: &Token) -> Result<AttrValue, ParseError> {
        self.expect('<', "after `dense`")?;
        let dense = if matches!(self.peek()?.tok, Tok::Str(_)) {
            let t = self.bump()?;
            let Tok::Str(s) = &t.tok else {
                return Err(unexpected(&t, "hex bytes"));
            };
            Dense::Hex(super::literal::parse_hex(s).ok_or_else(|| {
                err_at(
                    &t,
                    "expected hex bytes like \"0x0A1B\" (an even number of hex digits)",
                )
            })?)
        } else {
            let mut elems = Vec::new();
            self.dense_elems(0, &mut elems)?;
            Dense::List(elems)
        };
        self.expect('>', "after the dense elements")?;
        let ty = if self.eat(':')? {
            Some(self.ty(false, "after `dense<...> :`")?.0)
        } else {
            None
        };
        Ok(AttrValue::Dense {
            dense,
            ty: ty.flatten(),
            at: (kw.line, kw.col),
        })
    }

    /// A scalar or a (nested) bracketed list, flattened into `out` in row-major order.
    fn dense_elems(&mut self, depth: usize, out: &mut Vec<Elem>) -> Result<(), ParseError> {
        let t = self.bump()?;
        let value = match &t.tok {
            Tok::Punct('[') => {
                if depth >= MAX_DENSE_DEPTH {
                    return Err(err_at(
                        &t,
                        format!("dense literal nested deeper than {MAX_DENSE_DEPTH} levels"),
                    ));
                }
                if self.eat(']')? {
                    return Ok(());
                }
                loop {
                    self.dense_elems(depth + 1, out)?;
                    if !self.eat(',')? {
                        self.expect(']', "after the dense elements")?;
                        return Ok(());
                    }
                }
            }
            Tok::Num(s) => ElemValue::Num(s.clone()),
            Tok::Ident(w) if w == "inf" || w == "nan" => ElemValue::Num(w.clone()),
            Tok::Ident(w) if w == "true" || w == "false" => ElemValue::Bool(w == "true"),
            _ => {
                return Err(unexpected(
                    &t,
                    "a number, `true`/`false` or '[' in a dense literal",
                ))
            }
        };
        out.push(Elem {
            value,
            line: t.line,
            col: t.col,
        });
        Ok(())
    }
}

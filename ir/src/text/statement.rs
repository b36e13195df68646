//! Statements: `%r = "op"(%a, _) {attrs} : (types) -> types loc("name")`, checked against
//! the values defined above (operand types must match the signature) and turned into nodes.

use super::attrs::{plain_attrs, ParsedAttr};
use super::lexer::{Tok, Token};
use super::parser::{err_at, unexpected, Def, Parser};
use super::ParseError;
use crate::graph::{NodeId, ValueRef};
use crate::op::{CustomOp, Op};
use crate::shape::TensorType;

impl Parser<'_> {
    /// One statement; true after `return`.
    pub(super) fn statement(
        &mut self,
        outputs: &[(String, TensorType)],
    ) -> Result<bool, ParseError> {
        let t = self.peek()?.clone();
        let def = match &t.tok {
            Tok::Ident(w) if w == "return" => {
                self.ret(outputs)?;
                return Ok(true);
            }
            Tok::Value { .. } => {
                self.bump()?;
                let count = if self.eat(':')? {
                    let n = self.bump()?;
                    match &n.tok {
                        Tok::Num(s) => s
                            .parse::<usize>()
                            .map_err(|_| unexpected(&n, "a result count"))?,
                        _ => return Err(unexpected(&n, "a result count after ':'")),
                    }
                } else {
                    1
                };
                self.expect('=', "after the result name")?;
                Some((t, count))
            }
            Tok::Str(_) => None,
            Tok::Punct('}') => {
                return Err(err_at(
                    &t,
                    "expected `return` before '}' (a graph body ends with `return`)",
                ))
            }
            _ => {
                return Err(unexpected(
                    &t,
                    "a statement (`%name = \"op\"(...)` or `return`)",
                ))
            }
        };
        let op_tok = self.bump()?;
        let Tok::Str(op_name) = &op_tok.tok else {
            return Err(unexpected(&op_tok, "an op name in quotes (`\"relu\"`)"));
        };
        let op_name = op_name.clone();
        self.expect('(', "after the op name")?;
        let operands = self.list(')', "after operands", |p| p.operand())?;
        let attrs = if self.peek_is('{')? {
            self.attr_dict()?
        } else {
            Vec::new()
        };
        self.expect(
            ':',
            if attrs.is_empty() {
                "after operands"
            } else {
                "after attributes"
            },
        )?;
        let types_tok = self.expect('(', "to start the operand types")?;
        let types = self.list(')', "after the operand types", |p| {
            p.ty(true, "for an operand")
        })?;
        self.expect_arrow("after the operand types")?;
        let results = if self.eat('(')? {
            self.list(')', "after the result types", |p| {
                p.tensor_ty("for a result")
            })?
        } else {
            vec![self.tensor_ty("after '->'")?]
        };
        let loc = if self.peek_ident("loc")? {
            self.bump()?;
            self.expect('(', "after `loc`")?;
            let s = self.bump()?;
            let Tok::Str(name) = s.tok else {
                return Err(unexpected(&s, "a quoted name in `loc(...)`"));
            };
            self.expect(')', "after the location")?;
            Some(name)
        } else {
            None
        };

        check_operand_types(self, &operands, &types, &types_tok)?;
        match &def {
            Some((dt, count)) if *count != results.len() => {
                return Err(err_at(
                    dt,
                    format!(
                        "{} declares {count} results but the op has {} result types",
                        dt.tok.describe(),
                        results.len()
                    ),
                ));
            }
            None if !results.is_empty() => {
                return Err(err_at(
                    &op_tok,
                    format!(
                        "the op has {} results but no `%name =` to hold them",
                        results.len()
                    ),
                ));
            }
            _ => {}
        }
        let inputs: Vec<Option<ValueRef>> = operands.iter().map(|(v, _)| *v).collect();
        let id = self.build_node(&op_tok, &op_name, inputs, attrs, results, loc)?;
        if let Some((dt, count)) = def {
            self.define(
                &dt,
                Def {
                    node: id,
                    results: count,
                },
            )?;
        }
        Ok(false)
    }

    fn operand(&mut self) -> Result<(Option<ValueRef>, Token), ParseError> {
        if matches!(&self.peek()?.tok, Tok::Ident(w) if w == "_") {
            return Ok((None, self.bump()?));
        }
        let (v, t) = self.value_use("an operand (`%name`, or `_` for an omitted input)")?;
        Ok((Some(v), t))
    }

    fn build_node(
        &mut self,
        op_tok: &Token,
        op_name: &str,
        inputs: Vec<Option<ValueRef>>,
        attrs: Vec<ParsedAttr>,
        results: Vec<TensorType>,
        loc: Option<String>,
    ) -> Result<NodeId, ParseError> {
        let simple = |what: &str| {
            if !inputs.is_empty() {
                Err(err_at(op_tok, format!("`{what}` takes no operands")))
            } else if results.len() != 1 {
                Err(err_at(op_tok, format!("`{what}` has exactly one result")))
            } else {
                Ok(())
            }
        };
        let op = match op_name {
            "const" => {
                simple("const")?;
                let (wid, name) = self.const_weight(op_tok, attrs, &results[0], loc)?;
                return Ok(self.g.add_node(Op::Const(wid), inputs, results, name));
            }
            "input" => {
                simple("input")?;
                if let Some(a) = attrs.first() {
                    return Err(ParseError::new(
                        a.line,
                        a.col,
                        format!("`input` has no attribute `{}`", a.name),
                    ));
                }
                Op::Input
            }
            _ => match op_name.strip_prefix("custom:") {
                Some(rest) => {
                    let (domain, op_type) = rest.rsplit_once(':').unwrap_or(("", ""));
                    if op_type.is_empty() {
                        return Err(err_at(op_tok, format!("a custom op is named `custom:<domain>:<op_type>`, found `{op_name}`")));
                    }
                    Op::Custom(CustomOp {
                        domain: domain.to_string(),
                        op_type: op_type.to_string(),
                        attrs: plain_attrs(attrs)?,
                    })
                }
                None => {
                    Op::from_name(op_name, plain_attrs(attrs)?).map_err(|e| err_at(op_tok, e))?
                }
            },
        };
        Ok(self
            .g
            .add_node(op, inputs, results, loc.unwrap_or_default()))
    }
}

fn check_operand_types(
    p: &Parser<'_>,
    operands: &[(Option<ValueRef>, Token)],
    types: &[(Option<TensorType>, Token)],
    types_tok: &Token,
) -> Result<(), ParseError> {
    if operands.len() != types.len() {
        return Err(err_at(
            types_tok,
            format!(
                "{} operands but {} operand types",
                operands.len(),
                types.len()
            ),
        ));
    }
    for ((v, vt), (ty, tt)) in operands.iter().zip(types) {
        match (v, ty) {
            (None, None) => {}
            (None, Some(ty)) => {
                return Err(err_at(
                    tt,
                    format!("`_` (an omitted input) has type `none`, found {ty}"),
                ))
            }
            (Some(_), None) => {
                return Err(err_at(
                    tt,
                    format!(
                        "operand {} needs a tensor type, found `none`",
                        vt.tok.describe()
                    ),
                ))
            }
            (Some(v), Some(ty)) => {
                let actual = p.g.value_type(*v);
                if actual != Some(ty) {
                    let actual = actual.map_or("none".to_string(), |a| a.to_string());
                    return Err(err_at(
                        tt,
                        format!(
                            "operand {} has type {actual}, but the signature says {ty}",
                            vt.tok.describe()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

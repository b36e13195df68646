//! The parser: token stream, value names, the graph header and `return`. Statements are
//! in `statement.rs`, attribute values in `attrs.rs`, `const` and its weights in `consts.rs`. Every check that can fail on user
//! input reports a position; nothing here panics on malformed text.

use super::consts::Weights;
use super::lexer::{Lexer, Tok, Token};
use super::ParseError;
use crate::graph::{Graph, GraphOutput, NodeId, ValueRef};
use crate::shape::TensorType;
use crate::weights::WeightStore;
use std::collections::HashMap;

pub(super) fn parse_graph(src: &str, store: Option<&WeightStore>) -> Result<Graph, ParseError> {
    let mut p = Parser {
        lex: Lexer::new(src),
        peeked: None,
        g: Graph::default(),
        values: HashMap::new(),
        weights: Weights::new(store),
    };
    p.graph()?;
    Ok(p.g)
}

/// A defined value name: the node and how many results it has.
#[derive(Clone, Copy)]
pub(super) struct Def {
    pub node: NodeId,
    pub results: usize,
}

/// `(numeric, name)`: `%0` and `%"0"` are different values (see `Tok::Value`).
type ValueKey = (bool, String);

pub(super) struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Token>,
    pub(super) g: Graph,
    values: HashMap<ValueKey, Def>,
    pub(super) weights: Weights<'a>,
}

pub(super) fn err_at(t: &Token, msg: impl Into<String>) -> ParseError {
    ParseError::new(t.line, t.col, msg)
}

/// "expected {what}, found {token}".
pub(super) fn unexpected(t: &Token, what: &str) -> ParseError {
    err_at(t, format!("expected {what}, found {}", t.tok.describe()))
}

impl Parser<'_> {
    // ---- token stream ----

    pub(super) fn peek(&mut self) -> Result<&Token, ParseError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next_token()?,
        };
        Ok(self.peeked.insert(t))
    }

    pub(super) fn bump(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    pub(super) fn peek_is(&mut self, c: char) -> Result<bool, ParseError> {
        Ok(self.peek()?.tok == Tok::Punct(c))
    }

    pub(super) fn eat(&mut self, c: char) -> Result<bool, ParseError> {
        let hit = self.peek_is(c)?;
        if hit {
            self.bump()?;
        }
        Ok(hit)
    }

    /// Consumes `c` or fails with "expected 'c' {context}, found ...".
    pub(super) fn expect(&mut self, c: char, context: &str) -> Result<Token, ParseError> {
        let t = self.bump()?;
        if t.tok == Tok::Punct(c) {
            Ok(t)
        } else {
            Err(unexpected(&t, &format!("'{c}' {context}")))
        }
    }

    pub(super) fn expect_arrow(&mut self, context: &str) -> Result<(), ParseError> {
        let t = self.bump()?;
        match t.tok {
            Tok::Arrow => Ok(()),
            _ => Err(unexpected(&t, &format!("'->' {context}"))),
        }
    }

    pub(super) fn peek_ident(&mut self, word: &str) -> Result<bool, ParseError> {
        Ok(matches!(&self.peek()?.tok, Tok::Ident(w) if w == word))
    }

    /// A tensor type, or `none` (`None`) where `allow_none`.
    pub(super) fn ty(
        &mut self,
        allow_none: bool,
        context: &str,
    ) -> Result<(Option<TensorType>, Token), ParseError> {
        let t = self.bump()?;
        match &t.tok {
            Tok::Type(ty) => Ok((Some(ty.clone()), t)),
            Tok::Ident(w) if w == "none" && allow_none => Ok((None, t)),
            _ if allow_none => Err(unexpected(
                &t,
                &format!("a type (`tensor<...>` or `none`) {context}"),
            )),
            _ => Err(unexpected(&t, &format!("a tensor type {context}"))),
        }
    }

    pub(super) fn tensor_ty(&mut self, context: &str) -> Result<TensorType, ParseError> {
        match self.ty(false, context)? {
            (Some(ty), _) => Ok(ty),
            (None, t) => Err(unexpected(&t, &format!("a tensor type {context}"))),
        }
    }

    /// Parses `item` separated by commas up to `close` (the opening bracket is consumed).
    pub(super) fn list<T>(
        &mut self,
        close: char,
        context: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        if self.eat(close)? {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if !self.eat(',')? {
                self.expect(close, context)?;
                return Ok(out);
            }
        }
    }

    // ---- values ----

    pub(super) fn define(&mut self, t: &Token, def: Def) -> Result<(), ParseError> {
        let Tok::Value { name, numeric } = &t.tok else {
            return Err(unexpected(t, "a value name"));
        };
        if self.values.insert((*numeric, name.clone()), def).is_some() {
            return Err(err_at(
                t,
                format!("value {} is defined twice", t.tok.describe()),
            ));
        }
        Ok(())
    }

    /// A use of a value: `%v` or `%v#i`, already defined above.
    pub(super) fn value_use(&mut self, context: &str) -> Result<(ValueRef, Token), ParseError> {
        let t = self.bump()?;
        let Tok::Value { name, numeric } = &t.tok else {
            return Err(unexpected(&t, context));
        };
        let Some(def) = self.values.get(&(*numeric, name.clone())).copied() else {
            return Err(err_at(&t, format!("undefined value {}", t.tok.describe())));
        };
        let base = if *numeric {
            format!("%{name}")
        } else {
            format!("%{}", super::name_text(name))
        };
        let slot = if self.eat('#')? {
            let n = self.bump()?;
            match &n.tok {
                Tok::Num(s) => match s.parse::<u32>() {
                    Ok(i) if (i as usize) < def.results => i,
                    _ => {
                        return Err(err_at(
                            &n,
                            format!("`{base}` has {} results; #{s} is out of range", def.results),
                        ))
                    }
                },
                _ => return Err(unexpected(&n, "a result index after '#'")),
            }
        } else if def.results == 1 {
            0
        } else if def.results == 0 {
            return Err(err_at(&t, format!("`{base}` has no results")));
        } else {
            return Err(err_at(
                &t,
                format!(
                    "`{base}` has {} results; refer to one of them as `{base}#0`",
                    def.results
                ),
            ));
        };
        Ok((ValueRef::new(def.node, slot), t))
    }

    // ---- graph ----

    fn graph(&mut self) -> Result<(), ParseError> {
        let t = self.bump()?;
        if !matches!(&t.tok, Tok::Ident(w) if w == "graph") {
            return Err(unexpected(&t, "`graph`"));
        }
        let t = self.bump()?;
        match t.tok {
            Tok::At(name) => self.g.name = name,
            _ => return Err(unexpected(&t, "the graph name (`@name`) after `graph`")),
        }
        self.expect('(', "after the graph name")?;
        self.list(')', "after the graph inputs", |p| p.graph_input())?;
        self.expect_arrow("after the graph inputs")?;
        self.expect('(', "to start the graph outputs")?;
        let outputs = self.list(')', "after the graph outputs", |p| p.output_decl())?;
        if self.peek_ident("opsets")? {
            self.bump()?;
            self.expect('{', "after `opsets`")?;
            self.list('}', "after the opsets", |p| p.opset())?;
        }
        self.expect('{', "to start the graph body")?;
        while !self.statement(&outputs)? {}
        self.expect('}', "after the return values")?;
        let t = self.bump()?;
        if t.tok != Tok::Eof {
            return Err(unexpected(&t, "end of input after the graph"));
        }
        Ok(())
    }

    fn graph_input(&mut self) -> Result<(), ParseError> {
        let t = self.bump()?;
        let Tok::Value { name, .. } = &t.tok else {
            return Err(unexpected(&t, "a graph input (`%name: tensor<...>`)"));
        };
        let name = name.clone();
        self.expect(':', "after the input name")?;
        let ty = self.tensor_ty("for the graph input")?;
        let id = self.g.add_input(name, ty);
        self.define(
            &t,
            Def {
                node: id,
                results: 1,
            },
        )
    }

    fn output_decl(&mut self) -> Result<(String, TensorType), ParseError> {
        let t = self.bump()?;
        let name = match t.tok {
            Tok::Ident(s) | Tok::Str(s) => s,
            _ => return Err(unexpected(&t, "an output name (`name: tensor<...>`)")),
        };
        self.expect(':', "after the output name")?;
        Ok((name, self.tensor_ty("for the graph output")?))
    }

    fn opset(&mut self) -> Result<(), ParseError> {
        let t = self.bump()?;
        let domain = match &t.tok {
            Tok::Str(s) | Tok::Ident(s) => s.clone(),
            _ => return Err(unexpected(&t, "an opset domain (`\"\" = 17`)")),
        };
        self.expect('=', "after the opset domain")?;
        let v = self.bump()?;
        let version = match &v.tok {
            Tok::Num(s) => s
                .parse::<i64>()
                .map_err(|_| unexpected(&v, "an integer opset version"))?,
            _ => return Err(unexpected(&v, "an opset version")),
        };
        if self.g.opsets.insert(domain.clone(), version).is_some() {
            return Err(err_at(
                &t,
                format!("opset domain {} is given twice", super::quote(&domain)),
            ));
        }
        Ok(())
    }

    pub(super) fn ret(&mut self, outputs: &[(String, TensorType)]) -> Result<(), ParseError> {
        let rt = self.bump()?;
        let mut values = Vec::new();
        if matches!(self.peek()?.tok, Tok::Value { .. }) {
            loop {
                values.push(self.value_use("a value to return")?);
                if !self.eat(',')? {
                    break;
                }
            }
        }
        if values.len() != outputs.len() {
            return Err(err_at(
                &rt,
                format!(
                    "the header declares {} outputs but `return` gives {}",
                    outputs.len(),
                    values.len()
                ),
            ));
        }
        for ((v, t), (name, declared)) in values.into_iter().zip(outputs) {
            let actual = self.g.value_type(v);
            if actual != Some(declared) {
                let actual = actual.map_or("none".to_string(), |a| a.to_string());
                return Err(err_at(
                    &t,
                    format!(
                        "output `{name}` is declared {declared}, but {} has type {actual}",
                        t.tok.describe()
                    ),
                ));
            }
            self.g.outputs.push(GraphOutput {
                name: name.clone(),
                value: v,
            });
        }
        Ok(())
    }
}

//! Tokens. The parser pulls them one at a time, so an error late in the text is reported
//! only after everything before it parsed, and the first error is the one the user sees.
//! Tensor types are lexed whole (`tensor<{batch}x64xf32>` is one token) because their
//! inside (`64xf32`) does not split into ordinary tokens.

use super::ParseError;
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `[A-Za-z_][A-Za-z0-9_.]*`: keywords, attribute names, dtypes, `inf`, `_`, ...
    Ident(String),
    Str(String),
    /// A number as written (`-3`, `1.5`, `1e-5`, `-inf`); context decides int or float.
    Num(String),
    /// `%name`. `numeric` tells `%0` (the printer's numbering) from `%"0"` (a graph input
    /// whose name is digits), so renumbered values never collide with named ones.
    Value {
        name: String,
        numeric: bool,
    },
    /// `@name`.
    At(String),
    Type(TensorType),
    /// One of `( ) { } [ ] < > , : = #`.
    Punct(char),
    Arrow,
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

impl Tok {
    /// How an error message names the token.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => {
                let q = super::quote(s);
                if q.chars().count() > 40 {
                    let head: String = q.chars().take(37).collect();
                    format!("string {head}...")
                } else {
                    format!("string {q}")
                }
            }
            Tok::Num(s) => format!("number `{s}`"),
            Tok::Value { name, numeric } => {
                if *numeric {
                    format!("`%{name}`")
                } else {
                    format!("`%{}`", super::name_text(name))
                }
            }
            Tok::At(s) => format!("`@{}`", super::name_text(s)),
            Tok::Type(t) => format!("type `{t}`"),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::Arrow => "'->'".to_string(),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

/// True for a number token that is a float (`1.0`, `1e-5`, `inf`, `nan`), false for an int.
pub(crate) fn is_float_text(s: &str) -> bool {
    s.contains(['.', 'e', 'E', 'i', 'n', 'N', 'I'])
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
            col: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, col: usize, msg: impl Into<String>) -> ParseError {
        ParseError::new(line, col, msg)
    }

    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        self.err(self.line, self.col, msg)
    }

    fn found_here(&self) -> String {
        match self.peek() {
            None => "end of input".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.peek2() == Some('/') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.src[start..self.pos]
    }

    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia();
        let (line, col) = (self.line, self.col);
        let tok = match self.peek() {
            None => Tok::Eof,
            Some(c) => self.lex_from(c, line, col)?,
        };
        Ok(Token { tok, line, col })
    }

    fn lex_from(&mut self, c: char, line: usize, col: usize) -> Result<Tok, ParseError> {
        Ok(match c {
            '(' | ')' | '{' | '}' | '[' | ']' | '<' | '>' | ',' | ':' | '=' | '#' => {
                self.bump();
                Tok::Punct(c)
            }
            '-' if self.peek2() == Some('>') => {
                self.bump();
                self.bump();
                Tok::Arrow
            }
            '-' => {
                self.bump();
                match self.peek() {
                    Some(d) if d.is_ascii_digit() => Tok::Num(format!("-{}", self.lex_number())),
                    Some(d) if is_ident_start(d) => {
                        let word = self.take_while(is_ident_char);
                        if word == "inf" || word == "nan" {
                            Tok::Num(format!("-{word}"))
                        } else {
                            return Err(self.err(
                                line,
                                col,
                                format!("expected a number after '-', found `{word}`"),
                            ));
                        }
                    }
                    _ => {
                        return Err(self.err(
                            line,
                            col,
                            format!("expected a number after '-', found {}", self.found_here()),
                        ))
                    }
                }
            }
            '"' => Tok::Str(self.lex_string()?),
            '%' => {
                self.bump();
                match self.peek() {
                    Some(d) if d.is_ascii_digit() => Tok::Value {
                        name: self.take_while(|c| c.is_ascii_digit()).to_string(),
                        numeric: true,
                    },
                    Some('"') => Tok::Value {
                        name: self.lex_string()?,
                        numeric: false,
                    },
                    Some(d) if is_ident_start(d) => Tok::Value {
                        name: self.take_while(is_ident_char).to_string(),
                        numeric: false,
                    },
                    _ => {
                        return Err(self.err_here(format!(
                            "expected a value name after '%', found {}",
                            self.found_here()
                        )))
                    }
                }
            }
            '@' => {
                self.bump();
                match self.peek() {
                    Some('"') => Tok::At(self.lex_string()?),
                    Some(d) if is_ident_start(d) => {
                        Tok::At(self.take_while(is_ident_char).to_string())
                    }
                    _ => {
                        return Err(self.err_here(format!(
                            "expected a name after '@', found {}",
                            self.found_here()
                        )))
                    }
                }
            }
            c if c.is_ascii_digit() => Tok::Num(self.lex_number().to_string()),
            c if is_ident_start(c) => {
                let word = self.take_while(is_ident_char);
                if word == "tensor" {
                    let save = (self.pos, self.line, self.col);
                    self.skip_ws();
                    if self.peek() == Some('<') {
                        self.bump();
                        return Ok(Tok::Type(self.lex_type()?));
                    }
                    (self.pos, self.line, self.col) = save;
                }
                Tok::Ident(word.to_string())
            }
            other => return Err(self.err(line, col, format!("unexpected character {other:?}"))),
        })
    }

    /// Digits, an optional fraction and an optional exponent; the exponent is taken only if
    /// digits follow, so `2e` lexes as `2` then `e`.
    fn lex_number(&mut self) -> &'a str {
        let start = self.pos;
        self.take_while(|c| c.is_ascii_digit());
        if self.peek() == Some('.') {
            self.bump();
            self.take_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let rest = &self.src[self.pos + 1..];
            let digits_at = if rest.starts_with(['+', '-']) { 1 } else { 0 };
            if rest[digits_at..].starts_with(|c: char| c.is_ascii_digit()) {
                for _ in 0..=digits_at {
                    self.bump();
                }
                self.take_while(|c| c.is_ascii_digit());
            }
        }
        &self.src[start..self.pos]
    }

    fn lex_string(&mut self) -> Result<String, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump();
        let mut out = String::new();
        loop {
            let (el, ec) = (self.line, self.col);
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.err(
                        line,
                        col,
                        "unterminated string (a string ends on its line; write \\n for a newline)",
                    ))
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('0') => out.push('\0'),
                    Some('u') => out.push(self.lex_unicode_escape(el, ec)?),
                    other => {
                        let what = other.map_or("end of input".to_string(), |c| format!("{c:?}"));
                        return Err(self.err(el, ec, format!("unknown escape `\\` followed by {what} (known: \\\" \\\\ \\n \\t \\r \\0 \\u{{..}})")));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn lex_unicode_escape(&mut self, line: usize, col: usize) -> Result<char, ParseError> {
        let bad = |lx: &Self| lx.err(line, col, "bad unicode escape: expected \\u{<hex digits>}");
        if self.bump() != Some('{') {
            return Err(bad(self));
        }
        let hex = self.take_while(|c| c.is_ascii_hexdigit());
        if self.bump() != Some('}') || hex.is_empty() || hex.len() > 6 {
            return Err(bad(self));
        }
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| {
                self.err(
                    line,
                    col,
                    format!("\\u{{{hex}}} is not a unicode scalar value"),
                )
            })
    }

    /// The rest of a tensor type after `tensor<`: `*x` or dims each followed by `x`, then
    /// the element type and `>`. Whitespace between the parts is allowed.
    fn lex_type(&mut self) -> Result<TensorType, ParseError> {
        let mut dims = Vec::new();
        let mut unranked = false;
        loop {
            self.skip_ws();
            let (line, col) = (self.line, self.col);
            let dim = match self.peek() {
                Some('*') if dims.is_empty() && !unranked => {
                    self.bump();
                    unranked = true;
                    self.expect_dim_x()?;
                    continue;
                }
                Some(c) if c.is_ascii_digit() => {
                    let digits = self.take_while(|c| c.is_ascii_digit());
                    let n = digits
                        .parse::<u64>()
                        .map_err(|_| self.err(line, col, format!("dimension {digits} does not fit in 64 bits")))?;
                    Dim::Known(n)
                }
                Some('?') => {
                    self.bump();
                    Dim::Unknown
                }
                Some('{') => {
                    self.bump();
                    let name = self.take_while(|c| c != '}' && c != '\n');
                    if self.bump() != Some('}') {
                        return Err(self.err(line, col, "unterminated symbolic dimension: expected '}'"));
                    }
                    Dim::Sym(name.to_string())
                }
                Some(c) if c.is_ascii_alphabetic() => {
                    let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                    let dtype: DType = word.parse().map_err(|e: String| self.err(line, col, e))?;
                    self.skip_ws();
                    if self.peek() != Some('>') {
                        return Err(self.err_here(format!("expected '>' after the element type, found {}", self.found_here())));
                    }
                    self.bump();
                    let shape = if unranked { Shape::Unranked } else { Shape::Ranked(dims) };
                    return Ok(TensorType::new(dtype, shape));
                }
                _ => {
                    return Err(self.err_here(format!(
                        "expected a dimension (`4`, `?`, `{{name}}`) or an element type in tensor type, found {}",
                        self.found_here()
                    )))
                }
            };
            if unranked {
                return Err(self.err(
                    line,
                    col,
                    "an unranked type `tensor<*x...>` has no dimensions",
                ));
            }
            dims.push(dim);
            self.expect_dim_x()?;
        }
    }

    fn expect_dim_x(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() == Some('x') {
            self.bump();
            Ok(())
        } else {
            Err(self.err_here(format!(
                "expected 'x' after a dimension, found {}",
                self.found_here()
            )))
        }
    }
}

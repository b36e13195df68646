//! The text format: an MLIR-generic-like spelling of a [`Graph`] that the printer writes and
//! the parser reads back byte for byte.
//!
//! ```text
//! graph @block(%x: tensor<{batch}x64xf32>) -> (logits: tensor<{batch}x64xf32>) opsets {"" = 17} {
//!   %0 = "const"() {sha = "9f2c0a1b2c3d4e5f", weight = @fc1.weight} : () -> tensor<64x64xf32>
//!   %1 = "matmul"(%x, %0) : (tensor<{batch}x64xf32>, tensor<64x64xf32>) -> tensor<{batch}x64xf32> loc("/MatMul")
//!   %2:2 = "split"(%1) {axis = 1} : (tensor<{batch}x64xf32>) -> (tensor<{batch}x32xf32>, tensor<{batch}x32xf32>)
//!   return %2#0
//! }
//! ```
//!
//! Values are renumbered in topological order, so two graphs that differ only in node ids
//! print the same. Large weights are printed by name and content hash, small ones inline.
//!
//! Pieces: `lexer` (tokens, including whole tensor types), `literal` (`dense<[...]>` both
//! ways), `printer`, and the parser: `parser` (header, values, `return`), `statement`,
//! `attrs`, `consts` (`const` nodes and their weights).

mod attrs;
mod consts;
mod lexer;
mod literal;
mod parser;
mod printer;
mod statement;

pub use printer::print;

use crate::graph::Graph;
use crate::weights::WeightStore;

/// Where parsing stopped (1-based line and column, columns counted in characters) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, col: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            col,
            message: message.into(),
        }
    }
}

/// Parses text written by [`print`] (or by hand). `weight = @name` references become
/// weights with [`WeightData::Missing`](crate::weights::WeightData::Missing) data that
/// remember their type and hash, so printing the result gives the same text.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    parser::parse_graph(src, None)
}

/// Like [`parse`], but `weight = @name` references are resolved to the weight of that name
/// in `store` (its data is shared, not copied). A name the store lacks, or whose content
/// hash or type differs from what the text says, is an error.
pub fn parse_with_weights(src: &str, store: &WeightStore) -> Result<Graph, ParseError> {
    parser::parse_graph(src, Some(store))
}

/// True if `s` can be written without quotes after `%`, `@` or as an attribute/output name.
pub(crate) fn is_bare_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A string literal with the escapes the lexer understands.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` bare if it can be, quoted otherwise.
pub(crate) fn name_text(s: &str) -> String {
    if is_bare_name(s) {
        s.to_string()
    } else {
        quote(s)
    }
}

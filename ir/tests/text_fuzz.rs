//! The parser never panics: truncations and random edits of valid text give errors (or a
//! graph, which must then round-trip like any other).

use compc_ir::text::{parse, print};

const SRC: &str = r#"// RUN: nothing
graph @block(%x: tensor<{batch}x64xf32>, %"input.1": tensor<2xi64>) -> (logits: tensor<*xf32>, "b": tensor<{batch}x32xf32>) opsets {"" = 17, "com.microsoft" = 1} {
  %0 = "const"() {sha = "9f2c0a1b2c3d4e5f", weight = @fc1.weight} : () -> tensor<64x64xf32>
  %1 = "const"() {value = dense<[1, 2]>} : () -> tensor<2xi64>
  %f = "const"() {value = dense<[[1.5, -inf], [nan, 1e-5]]>} : () -> tensor<2x2xf16>
  %2 = "matmul"(%x, %0) : (tensor<{batch}x64xf32>, tensor<64x64xf32>) -> tensor<{batch}x64xf32> loc("/layers.0/MatMul")
  %3:2 = "split"(%2) {axis = 1} : (tensor<{batch}x64xf32>) -> (tensor<{batch}x32xf32>, tensor<{batch}x32xf32>)
  %4 = "custom:com.example:Foo"(%3#0, _, %f) {alpha = 1.5, b = dense<"0x01"> : tensor<1xu8>, mode = "x\n\u{7f}", sizes = [1, 2], to = i64, xs = [1, 2.5]} : (tensor<{batch}x32xf32>, none, tensor<2x2xf16>) -> tensor<*xf32>
  "custom::Sink"(%1) : (tensor<2xi64>) -> ()
  return %4, %3#1
}
"#;

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Whatever `src` is, parsing returns; if it gives a graph, that graph round-trips.
fn check(src: &str) {
    if let Ok(g) = parse(src) {
        let text = print(&g);
        let again = parse(&text)
            .unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}\nfrom:\n{src}"));
        assert_eq!(print(&again), text, "from:\n{src}");
    }
}

#[test]
fn the_source_itself_round_trips() {
    let g = parse(SRC).expect("valid");
    let text = print(&g);
    assert_eq!(print(&parse(&text).expect("reparses")), text);
}

#[test]
fn every_truncation_is_an_error() {
    let chars: Vec<(usize, char)> = SRC.char_indices().collect();
    let end = SRC.trim_end().len();
    for &(i, _) in &chars {
        if i >= end {
            break;
        }
        let cut = &SRC[..i];
        assert!(parse(cut).is_err(), "truncation at byte {i} parsed:\n{cut}");
    }
}

#[test]
fn random_edits_never_panic() {
    const PIECES: &[&str] = &[
        "%",
        "@",
        "\"",
        "#",
        ":",
        "=",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        "<",
        ">",
        ",",
        "-",
        "->",
        "x",
        "?",
        "*",
        "_",
        "0",
        "9",
        "99999999999999999999999",
        "1e",
        "1.5",
        "nan",
        "-inf",
        "tensor<",
        "dense<",
        "none",
        "\\",
        "\\u{",
        "//",
        "\n",
        " ",
        "ü",
        "\u{0}",
        "%0",
        "%3#1",
        "return",
        "graph",
        "[[[[[[[[",
        "f32>",
        "{b}x",
    ];
    let mut rng = Lcg(7);
    let chars: Vec<char> = SRC.chars().collect();
    for _ in 0..4000 {
        let mut s: Vec<char> = chars.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(s.len() + 1);
            match rng.below(3) {
                0 if at < s.len() => {
                    let n = 1 + rng.below(4);
                    s.drain(at..(at + n).min(s.len()));
                }
                1 => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    for (k, c) in piece.chars().enumerate() {
                        s.insert(at + k, c);
                    }
                }
                _ if at < s.len() => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    if let Some(c) = piece.chars().next() {
                        s[at] = c;
                    }
                }
                _ => {}
            }
        }
        let text: String = s.into_iter().collect();
        check(&text);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!(
        "graph @g() -> () {{\n  %0 = \"const\"() {{value = dense<{}1{}>}} : () -> tensor<1xf32>\n  return\n}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse(&deep).expect_err("too deep");
    assert!(e.message.contains("nested deeper"), "{e}");
}

#[test]
fn garbage_never_panics() {
    let mut rng = Lcg(11);
    for _ in 0..2000 {
        let len = rng.below(80);
        let s: String = (0..len)
            .map(|_| {
                let b = rng.below(96) as u8 + 32;
                if b == 127 {
                    '\n'
                } else {
                    b as char
                }
            })
            .collect();
        check(&s);
        check(&format!("graph @g() -> () {{\n{s}"));
    }
}

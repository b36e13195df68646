//! Elides the copy of a result into its out-parameter.
//!
//! `buffer-results-to-out-params` turns `@main`'s results into out-parameters and ends
//! the function with `memref.copy %alloc, %argN` for each: the result was computed into
//! a fresh buffer, then copied. On the GPU that copy is one more kernel per output, and
//! for the last layer of a decoder it is a whole launch for nothing. When the copied
//! buffer is a plain `memref.alloc` of the same block with the out-parameter's type, and
//! the out-parameter is used by nothing but that copy, the buffer *is* the
//! out-parameter: its uses are renamed, and its allocation, copy and deallocation are
//! dropped. Anything else (a result that is an input, a view, one buffer returned twice)
//! keeps its copy.

/// The printed, bufferized module with such copies elided.
pub fn elide(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    while let Some(e) = find(&lines) {
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            if i == e.alloc_line || i == e.copy_line {
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with("memref.dealloc ") && has_token(trimmed, &e.buffer) {
                continue;
            }
            out.push(rename(&line, &e.buffer, &e.arg));
        }
        lines = out;
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

struct Elision {
    alloc_line: usize,
    copy_line: usize,
    buffer: String,
    arg: String,
}

/// The first copy that can be elided.
fn find(lines: &[String]) -> Option<Elision> {
    for (c, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("memref.copy ") else {
            continue;
        };
        let Some((operands, types)) = rest.split_once(" : ") else {
            continue;
        };
        let Some((src, dst)) = operands.split_once(", ") else {
            continue;
        };
        let Some((t_src, t_dst)) = types.split_once(" to ") else {
            continue;
        };
        if !dst.starts_with("%arg") || t_src != t_dst {
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        // The function the copy is in: from its signature line to the copy.
        let Some(start) = (0..c)
            .rev()
            .find(|&i| lines[i].trim_start().starts_with("func.func "))
        else {
            continue;
        };
        let end = (c..lines.len())
            .find(|&i| {
                lines[i].trim_start() == "return" || lines[i].trim_start().starts_with("return ")
            })
            .unwrap_or(lines.len() - 1);
        let body = start + 1..=end;
        // The out-parameter: used by this copy alone.
        let arg_uses = body.clone().filter(|&i| has_token(&lines[i], dst)).count();
        if arg_uses != 1 {
            continue;
        }
        // The buffer: a plain allocation in the same block, of the same type, copied once.
        let alloc = body.clone().find(|&i| {
            let t = lines[i].trim_start();
            t.starts_with(&format!("{src} = memref.alloc(")) && lines[i].starts_with(indent)
        });
        let Some(a) = alloc else { continue };
        let a_line = lines[a].trim_start();
        if lines[a].len() - a_line.len() != indent.len()
            || a_line.rsplit_once(" : ").map(|(_, t)| t) != Some(t_src)
        {
            continue;
        }
        let copies_of_src = body
            .clone()
            .filter(|&i| {
                let t = lines[i].trim_start();
                t.starts_with("memref.copy ") && has_token(t, src)
            })
            .count();
        if copies_of_src != 1 {
            continue;
        }
        return Some(Elision {
            alloc_line: a,
            copy_line: c,
            buffer: src.to_string(),
            arg: dst.to_string(),
        });
    }
    None
}

/// Whether `name` (`%x`) occurs in `line` as a whole SSA name.
fn has_token(line: &str, name: &str) -> bool {
    token_positions(line, name).next().is_some()
}

fn token_positions<'a>(line: &'a str, name: &'a str) -> impl Iterator<Item = usize> + 'a {
    line.match_indices(name).filter_map(move |(i, _)| {
        let next = line[i + name.len()..].chars().next();
        let continues =
            next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.');
        (!continues).then_some(i)
    })
}

/// `line` with every whole occurrence of `from` replaced by `to`.
fn rename(line: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut last = 0;
    for i in token_positions(line, from).collect::<Vec<_>>() {
        out.push_str(&line[last..i]);
        out.push_str(to);
        last = i + from.len();
    }
    out.push_str(&line[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "  func.func @main(%arg0: memref<?x4xf32>, %arg1: memref<?x8xf32>) {
    %c0 = arith.constant 0 : index
    %dim = memref.dim %arg0, %c0 : memref<?x4xf32>
    %alloc_1 = memref.alloc(%dim) {alignment = 64 : i64} : memref<?x8xf32>
    %alloc_10 = memref.alloc(%dim) : memref<?x8xf32>
    call @k(%arg0, %alloc_1) : (memref<?x4xf32>, memref<?x8xf32>) -> ()
    call @k2(%alloc_1, %alloc_10) : (memref<?x8xf32>, memref<?x8xf32>) -> ()
    memref.copy %alloc_10, %arg1 : memref<?x8xf32> to memref<?x8xf32>
    memref.dealloc %alloc_1 : memref<?x8xf32>
    memref.dealloc %alloc_10 : memref<?x8xf32>
    return
  }
";

    #[test]
    fn the_result_buffer_becomes_the_out_parameter() {
        let out = elide(MAIN);
        assert!(!out.contains("memref.copy"), "{out}");
        assert!(!out.contains("%alloc_10"), "{out}");
        assert!(
            out.contains("call @k2(%alloc_1, %arg1) : (memref<?x8xf32>, memref<?x8xf32>) -> ()"),
            "{out}"
        );
        // The other buffer, whose name %alloc_10 extends, is untouched.
        assert!(out.contains("%alloc_1 = memref.alloc(%dim)"), "{out}");
        assert!(out.contains("memref.dealloc %alloc_1 :"), "{out}");
    }

    #[test]
    fn a_copy_from_an_input_or_into_a_used_argument_stays() {
        let from_input = MAIN.replace("memref.copy %alloc_10, %arg1", "memref.copy %arg0, %arg1");
        assert_eq!(elide(&from_input), from_input);
        let arg_read = MAIN.replace(
            "call @k2(%alloc_1, %alloc_10)",
            "call @k2(%arg1, %alloc_10)",
        );
        assert_eq!(elide(&arg_read), arg_read);
        let other_type = MAIN.replace(
            "%alloc_10 = memref.alloc(%dim) : memref<?x8xf32>",
            "%alloc_10 = memref.alloc(%dim) : memref<?x9xf32>",
        );
        assert_eq!(elide(&other_type), other_type);
    }
}

//! Hand-written kernel functions (`emit::gpu_nbits`) are already on buffers, and they use
//! ops that bufferization's deallocation pass rejects (workgroup memory attributions,
//! `gpu.barrier`, `nvvm.griddepcontrol` — none declares its memory effects). So the GPU
//! lowering bufferizes the module with each such function replaced by its declaration,
//! and puts the definitions back afterwards.

/// A module's text with every private function that contains a `gpu.launch` replaced by
/// its declaration, and those definitions.
pub struct SetAside {
    pub text: String,
    pub definitions: Vec<(String, String)>,
}

/// Takes the hand-written kernel functions out of `text` (the emitter writes them at
/// two spaces' indentation, closed by a line `  }`).
pub fn set_aside(text: &str) -> SetAside {
    let mut out = String::with_capacity(text.len());
    let mut definitions = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(sig) = line.strip_prefix("  func.func private @") {
            let end = (i..lines.len()).find(|&j| lines[j] == "  }");
            if let (Some(end), Some(decl)) = (end, declaration(sig)) {
                let body = &lines[i..=end];
                if body
                    .iter()
                    .any(|l| l.trim_start().starts_with("gpu.launch "))
                {
                    let name = sig.split('(').next().unwrap_or_default().to_string();
                    definitions.push((name, body.join("\n")));
                    out.push_str(&format!("  func.func private @{decl}\n"));
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    SetAside {
        text: out,
        definitions,
    }
}

/// `name(%a: T1, %b: T2) {` → `name(T1, T2)`.
fn declaration(sig: &str) -> Option<String> {
    let (name, rest) = sig.split_once('(')?;
    let args = rest.strip_suffix(") {")?;
    let types: Option<Vec<&str>> = args
        .split(", %")
        .map(|a| a.split_once(": ").map(|(_, t)| t))
        .collect();
    Some(format!("{name}({})", types?.join(", ")))
}

/// Puts the definitions back into the (bufferized, printed) module `text`: each
/// declaration `func.func private @name(…)` is dropped and the definitions go before the
/// module's closing brace.
pub fn restore(text: &str, definitions: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let is_decl = definitions.iter().any(|(name, _)| {
            t.strip_prefix("func.func private @")
                .and_then(|r| r.strip_prefix(name.as_str()))
                .is_some_and(|r| r.starts_with('(') && !r.trim_end().ends_with('{'))
        });
        if !is_decl {
            out.push_str(line);
            out.push('\n');
        }
    }
    let close = out.trim_end().rfind('}').unwrap_or(out.len());
    let mut restored = out[..close].to_string();
    for (_, def) in definitions {
        restored.push_str(def);
        restored.push('\n');
    }
    restored.push_str("}\n");
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module {
  func.func @main(%arg0: memref<4xf32>) {
    call @k(%arg0) : (memref<4xf32>) -> ()
    return
  }
  func.func private @k(%am: memref<4xf32>) {
    gpu.launch blocks(%a, %b, %c) in (%d = %c1, %e = %c1, %f = %c1) threads(%g, %h, %i) in (%j = %c1, %k = %c1, %l = %c1) {
      gpu.barrier
      gpu.terminator
    }
    return
  }
  func.func private @plain(%x: f32) {
    return
  }
}
";

    #[test]
    fn kernel_functions_become_declarations_and_come_back() {
        let s = set_aside(MODULE);
        assert_eq!(s.definitions.len(), 1);
        assert_eq!(s.definitions[0].0, "k");
        assert!(s.text.contains("  func.func private @k(memref<4xf32>)\n"));
        assert!(!s.text.contains("gpu.barrier"));
        assert!(s.text.contains("@plain(%x: f32) {"));
        let back = restore(&s.text, &s.definitions);
        assert!(!back.contains("@k(memref<4xf32>)\n"));
        assert!(back.contains("gpu.barrier"));
        assert!(back.trim_end().ends_with("  }\n}"));
        assert_eq!(back.matches("func.func private @k(").count(), 1);
    }
}

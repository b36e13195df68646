//! Unique names. ONNX tensor names and node names are separate namespaces; each gets a
//! `Names`. A taken name gets a numeric suffix.

use std::collections::HashSet;

#[derive(Default)]
pub struct Names {
    used: HashSet<String>,
}

impl Names {
    /// Claims `name` exactly; false if it is taken already.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.used.insert(name.to_string())
    }

    /// Claims `base`, or `base_1`, `base_2`, ... for the first one free.
    pub fn claim(&mut self, base: &str) -> String {
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        let mut i = 1u64;
        loop {
            let n = format!("{base}_{i}");
            if self.used.insert(n.clone()) {
                return n;
            }
            i += 1;
        }
    }
}

/// A name made of what the source model called things, falling back to the op.
pub fn base_name(node_name: &str, op_type: &str, index: usize) -> String {
    if node_name.is_empty() {
        format!("{op_type}_{index}")
    } else {
        node_name.to_string()
    }
}

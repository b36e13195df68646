//! One error type for the whole runtime. Kernels report what is wrong with their inputs
//! (`Op`); the executor adds which node it was (`Node`), so every message is one line
//! naming the node and the problem.

/// Errors of the interpreter, the executor and npz I/O.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// A kernel rejected its inputs or attributes (no node context yet).
    #[error("{0}")]
    Op(String),
    /// A kernel error with the node it happened in (`Node::describe`).
    #[error("{node}: {msg}")]
    Node { node: String, msg: String },
    /// A graph input that was not given, or given with the wrong type.
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    /// The graph itself cannot be run (cycle, dangling reference, missing weight data).
    #[error("graph: {0}")]
    Graph(String),
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
}

impl RuntimeError {
    pub fn op(msg: impl Into<String>) -> Self {
        RuntimeError::Op(msg.into())
    }

    /// Attaches a node description to a kernel error; other errors pass unchanged.
    pub fn at_node(self, node: &str) -> Self {
        match self {
            RuntimeError::Op(msg) => RuntimeError::Node {
                node: node.to_string(),
                msg,
            },
            other => other,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// `bail!("...")` returns a kernel error built with `format!`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::RuntimeError::Op(format!($($t)*)))
    };
}
pub(crate) use bail;

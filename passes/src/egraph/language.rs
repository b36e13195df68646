//! The e-graph language: one e-node per pure IR op. The op with all its attributes is the
//! node's operator (two transposes with different `perm`s are different operators), the
//! inputs are the children. Leaves are region inputs, weights (by index into the
//! analysis's weight table, so equal constants are one leaf) and omitted optional inputs.
//!
//! `Op` holds floats and so is neither `Eq` nor `Hash`; an [`OpKey`] pairs the op with
//! its `Debug` spelling, which names the variant and every attribute exactly (the `cse`
//! pass keys ops the same way), and compares by that.

use compc_ir::Op;
use egg::{Id, Language};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An op with its attributes, compared by its exact `Debug` spelling.
#[derive(Clone)]
pub struct OpKey {
    op: Arc<Op>,
    key: Arc<str>,
}

impl OpKey {
    pub fn new(op: Op) -> OpKey {
        let key: Arc<str> = format!("{op:?}").into();
        OpKey {
            op: Arc::new(op),
            key,
        }
    }

    pub fn op(&self) -> &Op {
        &self.op
    }
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for OpKey {}

impl Hash for OpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl fmt::Debug for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ENode {
    /// Input `i` of the region (a value computed outside it).
    Input(u32),
    /// Entry `i` of the analysis's weight table.
    Weight(u32),
    /// An omitted optional input (ONNX's empty name).
    Absent,
    /// A pure single-output op applied to its inputs.
    Op(OpKey, Vec<Id>),
}

impl ENode {
    pub fn op(&self) -> Option<&Op> {
        match self {
            ENode::Op(k, _) => Some(k.op()),
            _ => None,
        }
    }

    pub fn new_op(op: Op, children: Vec<Id>) -> ENode {
        ENode::Op(OpKey::new(op), children)
    }
}

/// What makes two e-nodes the same operator: everything but the children.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Disc {
    Input(u32),
    Weight(u32),
    Absent,
    Op(OpKey, usize),
}

impl Language for ENode {
    type Discriminant = Disc;

    fn discriminant(&self) -> Disc {
        match self {
            ENode::Input(i) => Disc::Input(*i),
            ENode::Weight(w) => Disc::Weight(*w),
            ENode::Absent => Disc::Absent,
            ENode::Op(k, c) => Disc::Op(k.clone(), c.len()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (ENode::Input(a), ENode::Input(b)) => a == b,
            (ENode::Weight(a), ENode::Weight(b)) => a == b,
            (ENode::Absent, ENode::Absent) => true,
            (ENode::Op(a, x), ENode::Op(b, y)) => a == b && x.len() == y.len(),
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Op(_, c) => c,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Op(_, c) => c,
            _ => &mut [],
        }
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ENode::Input(i) => write!(f, "in{i}"),
            ENode::Weight(w) => write!(f, "w{w}"),
            ENode::Absent => f.write_str("absent"),
            ENode::Op(k, _) => f.write_str(&k.op().text_name()),
        }
    }
}

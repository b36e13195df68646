//! MLP blocks: a "down" linear whose input is computed element-wise from the outputs of
//! one linear (`up → activation → down`, e.g. GELU) or two linears reading the same input
//! (`act(gate) * up → down`, e.g. SwiGLU). Activations are recognised by the ops on the
//! path (Sigmoid for SiLU, Erf/Gelu for GELU, Tanh, Relu), whatever their decomposition.

use super::linear::Linear;
use super::matcher::skip_layout_ops;
use compc_ir::op::UnaryOp;
use compc_ir::{Graph, Op, ValueRef};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Linear indices.
    pub up: usize,
    pub gate: Option<usize>,
    pub down: usize,
    /// "silu", "gelu", "relu", "tanh", "sigmoid" or "unknown".
    pub activation: &'static str,
}

/// Collects the linear outputs an element-wise expression reads (constants ignored).
/// Fails on any op that mixes elements or tokens (MatMul, reductions...).
fn elementwise_sources(
    g: &Graph,
    v: ValueRef,
    linears: &HashMap<ValueRef, usize>,
    found: &mut BTreeSet<usize>,
    ops: &mut Vec<String>,
    budget: &mut usize,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    if let Some(&i) = linears.get(&v) {
        found.insert(i);
        return true;
    }
    if g.const_weight(v).is_some() {
        return true;
    }
    let node = g.node(v.node);
    let elementwise = matches!(
        node.op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::Gelu(_)
            | Op::HardSigmoid(_)
            | Op::LeakyRelu(_)
            | Op::Elu(_)
            | Op::Clip
            | Op::Cast(_)
    );
    if !elementwise {
        return false;
    }
    ops.push(node.op.name().to_string());
    node.inputs()
        .iter()
        .flatten()
        .all(|&i| elementwise_sources(g, i, linears, found, ops, budget))
}

fn activation_name(ops: &[String]) -> &'static str {
    let has = |n: &str| ops.iter().any(|o| o == n);
    if has("gelu") || has("erf") {
        "gelu"
    } else if has("sigmoid") && has("mul") {
        "silu"
    } else if has("sigmoid") {
        "sigmoid"
    } else if has("tanh") {
        "tanh"
    } else if has("relu") || has("clip") {
        "relu"
    } else {
        "unknown"
    }
}

pub fn find_mlps(g: &Graph, linears: &[Linear], exclude_down: &BTreeSet<usize>) -> Vec<Mlp> {
    let by_output: HashMap<ValueRef, usize> = linears
        .iter()
        .enumerate()
        .map(|(i, l)| (l.output, i))
        .collect();
    let mut out = Vec::new();
    for (down, l) in linears.iter().enumerate() {
        if exclude_down.contains(&down) {
            continue;
        }
        let start = skip_layout_ops(g, l.input);
        // The down projection's input must be computed, not a linear output itself.
        if by_output.contains_key(&start) {
            continue;
        }
        let mut found = BTreeSet::new();
        let mut ops = Vec::new();
        let mut budget = 32;
        if !elementwise_sources(g, start, &by_output, &mut found, &mut ops, &mut budget)
            || ops.is_empty()
        {
            continue;
        }
        let srcs: Vec<usize> = found.into_iter().collect();
        let act = activation_name(&ops);
        match srcs.as_slice() {
            [up] => out.push(Mlp {
                up: *up,
                gate: None,
                down,
                activation: act,
            }),
            [a, b] if linears[*a].input == linears[*b].input => {
                // The gate is the one the activation is applied to: for SwiGLU the sigmoid's
                // input. Fall back to graph order (gate first, as exporters write it).
                let gate_is_b =
                    sigmoid_reads(g, linears[*b].output) && !sigmoid_reads(g, linears[*a].output);
                let (gate, up) = if gate_is_b { (*b, *a) } else { (*a, *b) };
                out.push(Mlp {
                    up,
                    gate: Some(gate),
                    down,
                    activation: act,
                });
            }
            _ => {}
        }
    }
    out
}

fn sigmoid_reads(g: &Graph, v: ValueRef) -> bool {
    g.value_users(v)
        .iter()
        .any(|(u, _)| matches!(g.node(*u).op, Op::Unary(UnaryOp::Sigmoid) | Op::Gelu(_)))
}

//! A region graph (from `ir::region::extract`) into an e-graph, and the extracted choice
//! back into a region graph with the same signature, for `ir::region::splice`.
//!
//! Names: an extracted node takes the name of the original node of its class (so exported
//! models keep their node names, and a fused op is named after what it replaced).

use super::analysis::{add_typed, TensorAnalysis, EG};
use super::language::ENode;
use compc_ir::{Graph, GraphOutput, NodeId, Op, ValueRef};
use egg::{Id, Language};
use std::collections::HashMap;

pub struct Converted {
    pub egraph: EG,
    /// The class of each region output, in order.
    pub roots: Vec<Id>,
    /// Original nodes' classes with their node names.
    pub names: Vec<(Id, String)>,
}

/// Builds the e-graph of a region. Every op must have a single output (the pass keeps
/// multi-output ops out of regions).
pub fn to_egraph(r: &Graph) -> Result<Converted, String> {
    let mut eg = EG::new(TensorAnalysis::new(r.opsets.get("").copied().unwrap_or(17)));
    let mut map: HashMap<NodeId, Id> = HashMap::new();
    let mut names = Vec::new();
    let absent = eg.add(ENode::Absent);
    for id in r.topo_order().map_err(|e| e.to_string())? {
        let node = r.node(id);
        let class = match &node.op {
            Op::Input => {
                let i = r
                    .inputs()
                    .iter()
                    .position(|&x| x == id)
                    .ok_or("an input node is not a graph input")?;
                add_typed(
                    &mut eg,
                    ENode::Input(i as u32),
                    node.outputs.first().cloned(),
                )
            }
            Op::Const(w) => {
                let wi = eg.analysis.add_weight(r.weights.get(*w).clone());
                eg.add(ENode::Weight(wi))
            }
            op => {
                if node.outputs.len() != 1 {
                    return Err(format!("{} has several outputs", node.describe(id)));
                }
                let mut kids = Vec::with_capacity(node.inputs().len());
                for v in node.inputs() {
                    match v {
                        None => kids.push(absent),
                        Some(v) if v.slot == 0 => {
                            kids.push(*map.get(&v.node).ok_or_else(|| {
                                format!("{} reads a later node", node.describe(id))
                            })?)
                        }
                        Some(_) => {
                            return Err(format!("{} reads a second output", node.describe(id)))
                        }
                    }
                }
                let enode = ENode::new_op(op.clone(), kids);
                let class = add_typed(&mut eg, enode, node.outputs.first().cloned());
                if !node.name.is_empty() {
                    names.push((class, node.name.clone()));
                }
                class
            }
        };
        map.insert(id, class);
    }
    let roots = r
        .outputs
        .iter()
        .map(|o| {
            map.get(&o.value.node)
                .copied()
                .ok_or("an output is not in the region")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Converted {
        egraph: eg,
        roots,
        names,
    })
}

/// Writes the chosen nodes as a graph with the region's inputs (same names and types, in
/// order) and one output per root.
pub fn from_choice(
    eg: &EG,
    choice: &HashMap<Id, ENode>,
    roots: &[Id],
    region: &Graph,
    names: &[(Id, String)],
) -> Result<Graph, String> {
    let mut g = Graph::new(region.name.clone());
    g.opsets = region.opsets.clone();
    let inputs: Vec<NodeId> = region
        .inputs()
        .iter()
        .map(|&i| {
            let n = region.node(i);
            g.add_input(n.name.clone(), n.outputs[0].clone())
        })
        .collect();
    // One name per class: the first original node's. A new node that takes the class's
    // place (a fused norm for its decomposition) takes its name.
    let mut by_class: HashMap<Id, &str> = HashMap::new();
    for (c, s) in names {
        by_class.entry(eg.find(*c)).or_insert(s.as_str());
    }
    let mut done: HashMap<Id, Option<ValueRef>> = HashMap::new();
    let mut weights: HashMap<u32, NodeId> = HashMap::new();
    // Post-order without recursion (graphs are deep): a class is emitted once all its
    // children are; a class seen again while open is a cycle.
    let mut open: std::collections::HashSet<Id> = Default::default();
    for &root in roots {
        let mut stack = vec![(eg.find(root), false)];
        while let Some((c, expanded)) = stack.pop() {
            if done.contains_key(&c) {
                continue;
            }
            let node = choice.get(&c).ok_or("a class has no chosen node")?;
            if !expanded {
                if !open.insert(c) {
                    return Err("the chosen nodes form a cycle".into());
                }
                stack.push((c, true));
                for &k in node.children().iter().rev() {
                    let k = eg.find(k);
                    if !done.contains_key(&k) {
                        stack.push((k, false));
                    }
                }
                continue;
            }
            open.remove(&c);
            let v = match node {
                ENode::Absent => None,
                ENode::Input(i) => Some(ValueRef::new(
                    *inputs.get(*i as usize).ok_or("input index out of range")?,
                    0,
                )),
                ENode::Weight(w) => {
                    let id = match weights.get(w) {
                        Some(&id) => id,
                        None => {
                            let id = g.add_const(eg.analysis.weights[*w as usize].clone());
                            weights.insert(*w, id);
                            id
                        }
                    };
                    Some(ValueRef::new(id, 0))
                }
                ENode::Op(k, kids) => {
                    let mut ins = Vec::with_capacity(kids.len());
                    for &kid in kids {
                        let kv = done
                            .get(&eg.find(kid))
                            .ok_or("a child was not emitted first")?;
                        ins.push(*kv);
                    }
                    let ty = eg[c].data.ty.clone().ok_or("a chosen node has no type")?;
                    let name = by_class.get(&c).copied().unwrap_or("");
                    Some(ValueRef::new(
                        g.add_node(k.op().clone(), ins, vec![ty], name),
                        0,
                    ))
                }
            };
            done.insert(c, v);
        }
    }
    for (i, (&root, o)) in roots.iter().zip(&region.outputs).enumerate() {
        let v = done
            .get(&eg.find(root))
            .copied()
            .flatten()
            .ok_or_else(|| format!("output {i} has no value"))?;
        g.outputs.push(GraphOutput {
            name: o.name.clone(),
            value: v,
        });
    }
    Ok(g)
}

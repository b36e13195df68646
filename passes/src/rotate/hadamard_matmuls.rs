//! `Hadamard` nodes as standard ops, for a backend without a Hadamard kernel (the MLIR
//! lowering). Each block of `K·s` elements of the last axis is viewed row-major as
//! `[K, s_1, …, s_m]`, with `s = s_1⋯s_m` split into powers of two of at most
//! [`MAX_FACTOR`], and multiplied by one small matrix per axis: the Kronecker factor `F`
//! on the K axis and the normalized Sylvester `H_{s_i}` on the others, because
//! `F ⊗ H_s = F ⊗ H_{s_1} ⊗ … ⊗ H_{s_m}`. That costs `K + Σ s_i` multiply-adds per element,
//! where the dense `K·s × K·s` matrix the ONNX export writes costs `K·s` (11008 = 344·32:
//! 376 against 11008).
//!
//! Each axis is a MatMul on the last axis followed by a Transpose that rotates the view's
//! factor axes right by one, so that the next axis comes last; after all of them the
//! axes are back in order, and a Reshape restores the input's shape.

use super::hadamard::sylvester;
use crate::pass::PassError;
use compc_ir::op::{Reshape, Transpose};
use compc_ir::{DType, Dim, Graph, NodeId, Op, Shape, TensorType, ValueRef, Weight};
use compc_runtime::Tensor;
use std::collections::HashMap;

/// The largest Sylvester factor: 64 keeps each matrix at 16 KB and each product short.
const MAX_FACTOR: usize = 64;

fn err(what: String) -> PassError {
    PassError::Invalid(format!("hadamard: {what}"))
}

/// Rewrites every `Hadamard` node of `g`; returns how many.
pub fn hadamards_to_matmuls(g: &mut Graph) -> Result<usize, PassError> {
    let ids: Vec<NodeId> = g
        .node_ids()
        .filter(|&id| matches!(g.node(id).op, Op::Hadamard(_)))
        .collect();
    let mut sylvesters: HashMap<usize, ValueRef> = HashMap::new();
    for &id in &ids {
        rewrite(g, id, &mut sylvesters)?;
    }
    Ok(ids.len())
}

/// Powers of two of at most [`MAX_FACTOR`] whose product is `s`, as even as possible.
fn split(s: usize) -> Vec<usize> {
    let bits = s.trailing_zeros() as usize;
    let max_bits = MAX_FACTOR.trailing_zeros() as usize;
    let parts = bits.div_ceil(max_bits).max(1);
    (0..parts)
        .map(|i| 1usize << (bits / parts + usize::from(i < bits % parts)))
        .collect()
}

fn sylvester_const(
    g: &mut Graph,
    n: usize,
    cache: &mut HashMap<usize, ValueRef>,
) -> Result<ValueRef, PassError> {
    if let Some(&v) = cache.get(&n) {
        return Ok(v);
    }
    let h = sylvester(n).ok_or_else(|| err(format!("no Sylvester matrix of order {n}")))?;
    let norm = 1.0 / (n as f64).sqrt();
    let vals: Vec<f32> = h.data.iter().map(|&e| (e as f64 * norm) as f32).collect();
    let t = Tensor::from_f32_as(DType::F32, vec![n, n], vals)?;
    let v = ValueRef::new(
        g.add_const(t.to_weight(&format!("hadamard_sylvester_{n}"))?),
        0,
    );
    cache.insert(n, v);
    Ok(v)
}

fn rewrite(
    g: &mut Graph,
    id: NodeId,
    sylvesters: &mut HashMap<usize, ValueRef>,
) -> Result<(), PassError> {
    let node = g.node(id);
    let desc = node.describe(id);
    let Op::Hadamard(attrs) = &node.op else {
        return Ok(());
    };
    let size = attrs.size;
    let x = node
        .input(0)
        .ok_or_else(|| err(format!("{desc} has no input")))?;
    let factor = node.input(1);
    let ty = g
        .value_type(x)
        .cloned()
        .ok_or_else(|| err(format!("{desc}: the input has no type")))?;
    let Some(dims) = ty.shape.dims().map(<[Dim]>::to_vec) else {
        return Err(err(format!("{desc}: the input's rank is unknown")));
    };
    let Some(l) = dims.last().and_then(Dim::known) else {
        return Err(err(format!("{desc}: the last axis has no known length")));
    };
    let l = l as usize;
    let k = match factor {
        None => 1,
        Some(f) => match g.const_weight(f).map(|w| w.dims.clone()).as_deref() {
            Some([a, b]) if a == b && *a > 0 => *a as usize,
            _ => return Err(err(format!("{desc}: the factor is not a constant [K, K]"))),
        },
    };
    let s = if size > 0 { size as usize } else { l / k };
    if s == 0 || !s.is_power_of_two() || !l.is_multiple_of(k * s) {
        return Err(err(format!(
            "{desc}: size {s} (times the factor's {k}) does not tile the last axis ({l})"
        )));
    }
    // The view: the leading axes, the blocks, then one axis per factor.
    let lead = &dims[..dims.len() - 1];
    let mut axes: Vec<(usize, ValueRef)> = Vec::new();
    if let Some(f) = factor {
        axes.push((k, f));
    }
    for p in split(s).into_iter().filter(|&p| p > 1) {
        axes.push((p, sylvester_const(g, p, sylvesters)?));
    }
    if axes.is_empty() {
        // Order 1: the identity.
        g.replace_all_uses(ValueRef::new(id, 0), x);
        g.remove_node(id)?;
        return Ok(());
    }
    let mut view: Vec<Dim> = lead.to_vec();
    view.push(Dim::Known((l / (k * s)) as u64));
    view.extend(axes.iter().map(|&(n, _)| Dim::Known(n as u64)));
    let rank = view.len();
    let typed = |d: Vec<Dim>| vec![TensorType::new(ty.dtype, Shape::Ranked(d))];
    let target = |g: &mut Graph, tail: &[usize], name: &str| -> Result<ValueRef, PassError> {
        let mut t = vec![0i64; lead.len()];
        t.extend(tail.iter().map(|&d| d as i64));
        let w = Weight::from_i64(name.to_string(), vec![t.len() as u64], &t)
            .map_err(|e| err(e.to_string()))?;
        Ok(ValueRef::new(g.add_const(w), 0))
    };
    let base = g.node(id).name.clone();
    let mut tail = vec![l / (k * s)];
    tail.extend(axes.iter().map(|&(n, _)| n));
    let to_view = target(g, &tail, &format!("{base}_view"))?;
    let reshape = |g: &mut Graph, v: ValueRef, t: ValueRef, d: Vec<Dim>, name: String| {
        ValueRef::new(
            g.add_node(
                Op::Reshape(Reshape { allowzero: false }),
                vec![Some(v), Some(t)],
                typed(d),
                name,
            ),
            0,
        )
    };
    let mut cur = reshape(g, x, to_view, view.clone(), format!("{base}_view"));
    // Rotating the last `m` axes right by one brings the axis before the last to the end.
    let m = axes.len();
    let mut perm: Vec<i64> = (0..(rank - m) as i64).collect();
    perm.push(rank as i64 - 1);
    perm.extend((rank - m) as i64..rank as i64 - 1);
    let mut order = view.clone();
    for (i, &(_, matrix)) in axes.iter().enumerate().rev() {
        cur = ValueRef::new(
            g.add_node(
                Op::MatMul,
                vec![Some(cur), Some(matrix)],
                typed(order.clone()),
                format!("{base}_axis{i}"),
            ),
            0,
        );
        order = perm.iter().map(|&p| order[p as usize].clone()).collect();
        cur = ValueRef::new(
            g.add_node(
                Op::Transpose(Transpose {
                    perm: Some(perm.clone()),
                }),
                vec![Some(cur)],
                typed(order.clone()),
                format!("{base}_rotate{i}"),
            ),
            0,
        );
    }
    let back = target(g, &[l], &format!("{base}_back"))?;
    let out = reshape(g, cur, back, dims, format!("{base}_back"));
    g.replace_all_uses(ValueRef::new(id, 0), out);
    g.remove_node(id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_are_powers_of_two_within_the_limit() {
        assert_eq!(split(1), vec![1]);
        assert_eq!(split(32), vec![32]);
        assert_eq!(split(64), vec![64]);
        assert_eq!(split(128), vec![16, 8]);
        assert_eq!(split(4096), vec![64, 64]);
        assert_eq!(split(1 << 13), vec![32, 16, 16]);
    }
}

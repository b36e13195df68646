//! Writing a [`Plan`] into one attention: new k/v projections with one head block per
//! new KV head, q rows and o columns folded with the reconstructions and permuted so
//! that query head `p` reads KV head `p mod G` (the order `Tile` repeats heads in), the
//! head count of the k/v reshapes set to `G`, and `Tile` (repeats `[1, g, 1, 1]`) on K
//! and V where the score and context products read them. Query permutations are exact.
//! With [`Repeat::Fused`] only the projections change, and query position `p` reads KV
//! head `p / g` (GroupQueryAttention's order); the caller replaces the attention core.

use super::plan::{Maps, Plan};
use crate::idioms::{Attention, Idioms};
use crate::pass::PassError;
use crate::prune::structured::apply::{
    bias_slot, const_tensor, set_const, set_shape_element, unshare_shape, write_resized,
};
use crate::prune::structured::depgraph::split_reshape;
use crate::quant::layers::{read_w, Layer};
use compc_ir::{DType, Graph, NodeId, Op, Shape, TensorType, ValueRef, Weight};
use compc_runtime::Tensor;

fn invalid(s: String) -> PassError {
    PassError::Invalid(s)
}

/// `m[d×d] · rows` for a `d × cols` row block (f64 maths, f32 storage).
fn left_mul(m: &[f64], rows: &[f32], d: usize, cols: usize, out: &mut [f64]) {
    for i in 0..d {
        for k in 0..d {
            let x = m[i * d + k];
            if x == 0.0 {
                continue;
            }
            let src = &rows[k * cols..(k + 1) * cols];
            for (o, &s) in out[i * cols..(i + 1) * cols].iter_mut().zip(src) {
                *o += x * s as f64;
            }
        }
    }
}

fn bias_of(g: &Graph, l: &Layer) -> Result<Option<Vec<f32>>, PassError> {
    match l.linear.bias {
        Some((_, b)) => Ok(Some(const_tensor(g, b)?.1.f32_cow().to_vec())),
        None => Ok(None),
    }
}

fn write_bias(g: &mut Graph, l: &Layer, b: Vec<f32>) -> Result<(), PassError> {
    let Some((bnode, bval)) = l.linear.bias else {
        return Ok(());
    };
    let slot = bias_slot(g, l, bnode, bval)?;
    let (w, _) = const_tensor(g, bval)?;
    let t = Tensor::from_f32_as(w.dtype, vec![b.len()], b)?;
    set_const(g, bnode, slot, &t, &w.name)
}

/// Merged rows `Σ_h M_h W^{(h)}` (and bias) of one projection.
fn merge_rows(
    w: &[f32],
    bias: Option<&[f32]>,
    plan_side: &[Maps],
    kv: &[Vec<usize>],
    d: usize,
    cols: usize,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut out = vec![0f64; kv.len() * d * cols];
    let mut bout = bias.map(|_| vec![0f64; kv.len() * d]);
    for (j, members) in kv.iter().enumerate() {
        for (&h, (m, _)) in members.iter().zip(&plan_side[j]) {
            left_mul(
                m,
                &w[h * d * cols..(h + 1) * d * cols],
                d,
                cols,
                &mut out[j * d * cols..(j + 1) * d * cols],
            );
            if let (Some(b), Some(bo)) = (bias, bout.as_mut()) {
                left_mul(m, &b[h * d..(h + 1) * d], d, 1, &mut bo[j * d..(j + 1) * d]);
            }
        }
    }
    (
        out.into_iter().map(|x| x as f32).collect(),
        bout.map(|b| b.into_iter().map(|x| x as f32).collect()),
    )
}

/// How query heads reach their KV head after the rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// `Tile` on K and V in the decomposed attention: query position `p` reads KV head
    /// `p mod G`.
    Tile,
    /// The attention core is replaced by a fused op whose query position `p` reads KV head
    /// `p / g` (consecutive query heads share one KV head).
    Fused,
}

/// Where query position `p` comes from: `(source head, kv head, member index)`.
fn query_order(kv: &[Vec<usize>], repeat: Repeat) -> Vec<(usize, usize, usize)> {
    let groups = kv.len();
    let g = kv.first().map_or(0, |m| m.len());
    (0..groups * g)
        .map(|p| {
            let (r, j) = match repeat {
                Repeat::Tile => (p / groups, p % groups),
                Repeat::Fused => (p % g, p / g),
            };
            (kv[j][r], j, r)
        })
        .collect()
}

/// Inserts `Tile(x, [1, reps, 1, 1])` on input `slot` of `node`.
fn tile_input(
    g: &mut Graph,
    node: NodeId,
    slot: usize,
    reps: i64,
    ai: usize,
) -> Result<(), PassError> {
    let x = g.node(node).input(slot).ok_or_else(|| {
        invalid(format!(
            "attention[{ai}]: {} lost an input",
            g.node(node).describe(node)
        ))
    })?;
    let rank = g
        .value_type(x)
        .and_then(|t| t.shape.dims().map(|d| d.len()));
    if rank != Some(4) {
        return Err(invalid(format!(
            "attention[{ai}]: {} reads heads as a tensor of rank {:?}, expected [batch, heads, ·, ·]",
            g.node(node).describe(node),
            rank
        )));
    }
    let name = format!("{}_repeat_kv", g.node(node).name);
    let w = Weight::from_i64(format!("{name}_repeats"), vec![4], &[1, reps, 1, 1])
        .map_err(|e| invalid(e.to_string()))?;
    let c = g.add_const(w);
    let dtype = g.value_type(x).map_or(DType::F32, |t| t.dtype);
    let tile = g.add_node(
        Op::Tile,
        vec![Some(x), Some(ValueRef::new(c, 0))],
        vec![TensorType {
            dtype,
            shape: Shape::Unranked,
        }],
        name,
    );
    g.set_input(node, slot, Some(ValueRef::new(tile, 0)));
    Ok(())
}

/// Rewrites attention `ai` by `plan`. The caller re-infers types afterwards.
pub fn apply(
    g: &mut Graph,
    idioms: &Idioms,
    layers: &[Option<Layer>],
    ai: usize,
    plan: &Plan,
    repeat: Repeat,
) -> Result<(), PassError> {
    let a: &Attention = &idioms.attention[ai];
    let o = a.o.ok_or_else(|| {
        invalid(format!(
            "attention[{ai}]: no output projection found{}",
            idioms.order_hint("gqa")
        ))
    })?;
    let layer = |i: usize, what: &str| {
        layers[i].as_ref().ok_or_else(|| {
            invalid(format!(
                "attention[{ai}]: the {what} projection is not a float linear with a constant \
                 weight{}",
                idioms.linears[i].order_hint("gqa")
            ))
        })
    };
    let (lq, lk, lv, lo) = (
        layer(a.q, "q")?,
        layer(a.k, "k")?,
        layer(a.v, "v")?,
        layer(o, "output")?,
    );
    let d = a.head_dim.unwrap_or(0) as usize;
    let heads = a.num_heads.unwrap_or(0) as usize;
    let groups = plan.kv.len();
    let reps = heads / groups;
    // Locate everything before changing anything.
    let reshapes = match repeat {
        Repeat::Tile => Some((
            split_reshape(g, idioms.linears[a.k].output, "k", ai)?,
            split_reshape(g, idioms.linears[a.v].output, "v", ai)?,
        )),
        Repeat::Fused => None,
    };
    let order = query_order(&plan.kv, repeat);
    // q: rows of query position p = R_hᵀ W_q^{(h)} (keys' reconstruction folded in).
    let wq = read_w(g, lq)?;
    let bq = bias_of(g, lq)?;
    let cols = lq.cols;
    let mut nq = vec![0f64; heads * d * cols];
    let mut nbq = bq.as_ref().map(|_| vec![0f64; heads * d]);
    for (p, &(h, j, r)) in order.iter().enumerate() {
        let rt = super::linalg::tr(&plan.keys[j][r].1, d, d);
        left_mul(
            &rt,
            &wq[h * d * cols..(h + 1) * d * cols],
            d,
            cols,
            &mut nq[p * d * cols..(p + 1) * d * cols],
        );
        if let (Some(b), Some(nb)) = (bq.as_ref(), nbq.as_mut()) {
            left_mul(
                &rt,
                &b[h * d..(h + 1) * d],
                d,
                1,
                &mut nb[p * d..(p + 1) * d],
            );
        }
    }
    write_resized(
        g,
        lq,
        nq.into_iter().map(|x| x as f32).collect(),
        heads * d,
        cols,
    )?;
    if let Some(nb) = nbq {
        write_bias(g, lq, nb.into_iter().map(|x| x as f32).collect())?;
    }
    // k and v: merged rows.
    for (l, side) in [(lk, &plan.keys), (lv, &plan.values)] {
        let w = read_w(g, l)?;
        let b = bias_of(g, l)?;
        let (nw, nb) = merge_rows(&w, b.as_deref(), side, &plan.kv, d, l.cols);
        write_resized(g, l, nw, groups * d, l.cols)?;
        if let Some(nb) = nb {
            write_bias(g, l, nb)?;
        }
    }
    // o: columns of query position p = W_o^{(h)} R_h (values' reconstruction).
    let wo = read_w(g, lo)?;
    let (rows, ocols) = (lo.rows, lo.cols);
    let mut no = vec![0f32; rows * ocols];
    for (p, &(h, j, r)) in order.iter().enumerate() {
        let rm = &plan.values[j][r].1;
        for row in 0..rows {
            for c in 0..d {
                let mut s = 0f64;
                for k in 0..d {
                    s += wo[row * ocols + h * d + k] as f64 * rm[k * d + c];
                }
                no[row * ocols + p * d + c] = s as f32;
            }
        }
    }
    write_resized(g, lo, no, rows, ocols)?;
    if let (true, Some((rk, rv))) = (groups != heads, reshapes) {
        // q keeps its head count: k and v stop sharing a computed shape with it first.
        unshare_shape(g, rk);
        unshare_shape(g, rv);
        set_shape_element(g, rk, 2, groups as i64)?;
        set_shape_element(g, rv, 2, groups as i64)?;
        tile_input(g, a.scores_matmul, 1, reps as i64, ai)?;
        tile_input(g, a.context_matmul, 1, reps as i64, ai)?;
    }
    Ok(())
}

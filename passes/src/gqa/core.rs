//! The attention core `op=contrib` replaces: from the q/k/v projection outputs
//! `[B, S, ·]` through the split into heads (Reshape + Transpose), rotary embedding,
//! scalings, a causal mask, softmax and the product with V, to the merge of heads
//! (Transpose + Reshape) the output projection reads. Everything GroupQueryAttention
//! cannot express is an error naming the attention and the reason, found before the
//! pass changes anything.

use super::rope::{match_rope, reads_input_data, Rope};
use crate::idioms::matcher::small_const;
use crate::idioms::Idioms;
use crate::pass::PassError;
use compc_ir::op::{BinaryOp, UnaryOp};
use compc_ir::{Dim, Graph, Op, ValueRef};

#[derive(Clone, Debug)]
pub struct Core {
    /// Projection outputs: query `[B, S, H·d]`, key and value `[B, S, KV·d]`.
    pub q: ValueRef,
    pub k: ValueRef,
    pub v: ValueRef,
    /// The rotary tables of the queries (the keys' are checked to be the same).
    pub rope: Option<Rope>,
    /// Product of every constant scaling of the scores, of Q and of K.
    pub scale: f32,
    /// The merged-heads value `[B, S, H·d]` the output projection reads.
    pub merged: ValueRef,
    pub heads: usize,
    pub head_dim: usize,
}

fn scalar(g: &Graph, v: ValueRef) -> Option<f32> {
    match small_const(g, v)?.as_slice() {
        [x] => Some(*x),
        _ => None,
    }
}

/// Strips `Mul`/`Div` by scalar constants, multiplying their factors into `scale`.
fn strip_scalings(g: &Graph, mut v: ValueRef, scale: &mut f64) -> ValueRef {
    loop {
        let n = g.node(v.node);
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            return v;
        };
        match n.op {
            Op::Binary(BinaryOp::Mul) => {
                if let Some(c) = scalar(g, b) {
                    *scale *= c as f64;
                    v = a;
                } else if let Some(c) = scalar(g, a) {
                    *scale *= c as f64;
                    v = b;
                } else {
                    return v;
                }
            }
            Op::Binary(BinaryOp::Div) => match scalar(g, b) {
                Some(c) => {
                    *scale /= c as f64;
                    v = a;
                }
                None => return v,
            },
            _ => return v,
        }
    }
}

fn perm(g: &Graph, v: ValueRef) -> Option<(Vec<i64>, ValueRef)> {
    let n = g.node(v.node);
    match &n.op {
        Op::Transpose(t) => Some((t.perm.clone()?, n.input(0)?)),
        _ => None,
    }
}

fn known(d: &Dim) -> Option<u64> {
    match d {
        Dim::Known(n) => Some(*n),
        _ => None,
    }
}

/// True if `cond` is `j > i` for a key index `j` along the last axis and a query index
/// `i` along the one before: `Greater(Unsqueeze(r, 0), Unsqueeze(r, 1))` (or `Less` the
/// other way round) of one `Range(0, n, 1)`, through Casts.
fn is_causal_condition(g: &Graph, mut cond: ValueRef) -> bool {
    while let Op::Cast(_) = g.node(cond.node).op {
        match g.node(cond.node).input(0) {
            Some(i) => cond = i,
            None => return false,
        }
    }
    let n = g.node(cond.node);
    let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
        return false;
    };
    let (col, row) = match n.op {
        Op::Binary(BinaryOp::Greater) => (a, b),
        Op::Binary(BinaryOp::Less) => (b, a),
        _ => return false,
    };
    let unsq = |v: ValueRef, axis: i64| {
        let n = g.node(v.node);
        match &n.op {
            Op::Unsqueeze(x) if x.axes.as_deref() == Some(&[axis][..]) => n.input(0),
            _ => None,
        }
    };
    let (Some(rc), Some(rr)) = (unsq(col, 0), unsq(row, 1)) else {
        return false;
    };
    let r = g.node(rc.node);
    rc == rr
        && r.op == Op::Range
        && r.input(0).and_then(|s| scalar(g, s)) == Some(0.0)
        && r.input(2).and_then(|s| scalar(g, s)) == Some(1.0)
        && !reads_input_data(g, rc)
}

/// `Transpose([0, 2, 1, 3])` of `Reshape(p, [B, S, heads, d])`: returns `p`, the
/// projection output.
fn heads_of(g: &Graph, v: ValueRef, heads: u64, d: u64) -> Option<ValueRef> {
    let (p, x) = perm(g, v)?;
    if p != [0, 2, 1, 3] {
        return None;
    }
    let r = g.node(x.node);
    if !matches!(r.op, Op::Reshape(_)) {
        return None;
    }
    let dims = g.value_type(x)?.shape.dims()?.to_vec();
    let ok = dims.len() == 4 && known(&dims[2]) == Some(heads) && known(&dims[3]) == Some(d);
    ok.then(|| r.input(0)).flatten()
}

pub fn match_core(g: &Graph, idioms: &Idioms, ai: usize) -> Result<Core, PassError> {
    let a = &idioms.attention[ai];
    let sm = g.node(a.softmax);
    let err = |why: String| {
        PassError::Invalid(format!(
            "gqa op=contrib: attention[{ai}] ({}): {why}; use op=expand",
            sm.describe(a.softmax)
        ))
    };
    let (h, d) = match (a.num_heads, a.head_dim) {
        (Some(h), Some(d)) => (h, d),
        _ => return Err(err("head count or head size not recognised".into())),
    };
    let Op::Softmax(ax) = &sm.op else {
        return Err(err("not anchored at a Softmax".into()));
    };
    if ax.axis != -1 && ax.axis != 3 {
        return Err(err(format!(
            "the softmax runs over axis {}, not the keys",
            ax.axis
        )));
    }
    // Scores: softmax ← (scalings, causal Where) ← Q·Kᵀ.
    let mut scale = 1f64;
    let mut causal = false;
    let mut v = sm
        .input(0)
        .ok_or_else(|| err("softmax without input".into()))?;
    loop {
        v = strip_scalings(g, v, &mut scale);
        let n = g.node(v.node);
        match n.op {
            Op::MatMul => break,
            Op::Where => {
                let (Some(c), Some(fill), Some(x)) = (n.input(0), n.input(1), n.input(2)) else {
                    return Err(err("a Where without three inputs on the scores".into()));
                };
                let fill_ok = scalar(g, fill).is_some_and(|f| f <= -1e4);
                if !fill_ok || !is_causal_condition(g, c) || causal {
                    return Err(err(format!(
                        "the scores are masked by {}, which is not recognised as a causal mask \
                         (Where(j > i, -inf, scores) with j, i from one Range); GroupQueryAttention \
                         applies only its causal mask",
                        n.describe(v.node)
                    )));
                }
                causal = true;
                v = x;
            }
            Op::Binary(BinaryOp::Add) => {
                return Err(err(format!(
                    "the scores get an additive mask ({}){}; GroupQueryAttention applies a causal \
                     mask and nothing else",
                    n.describe(v.node),
                    if causal {
                        ""
                    } else {
                        " and no causal mask: the attention is bidirectional (an encoder's)"
                    }
                )));
            }
            Op::Cast(_) | Op::Unary(UnaryOp::Identity) => {
                v = n
                    .input(0)
                    .ok_or_else(|| err("a Cast without input".into()))?;
            }
            _ => {
                return Err(err(format!(
                    "{} sits between the scores and the softmax",
                    n.describe(v.node)
                )))
            }
        }
    }
    if !causal {
        return Err(err(
            "the attention is not causal (no causal mask on the scores: bidirectional, as in an \
             encoder), but GroupQueryAttention always masks future keys"
                .into(),
        ));
    }
    if v.node != a.scores_matmul {
        return Err(err(
            "the score product is not the one the idiom recorded".into()
        ));
    }
    let mm = g.node(a.scores_matmul);
    let (Some(qa), Some(kb)) = (mm.input(0), mm.input(1)) else {
        return Err(err("the score product lost an input".into()));
    };
    let split = |v: ValueRef,
                 scale: &mut f64,
                 what: &str|
     -> Result<(ValueRef, Option<Rope>), PassError> {
        let x = strip_scalings(g, v, scale);
        let rope = match_rope(g, x).map_err(|e| err(format!("{what}: {e}")))?;
        let x = rope.map_or(x, |r| r.input);
        let x = strip_scalings(g, x, scale);
        let p = heads_of(g, x, h, d).ok_or_else(|| {
            err(format!(
                "the {what} are not Transpose([0, 2, 1, 3]) of a Reshape into [batch, seq, {h}, {d}]"
            ))
        })?;
        Ok((p, rope))
    };
    let (q, q_rope) = split(qa, &mut scale, "queries")?;
    let kb = strip_scalings(g, kb, &mut scale);
    let (k, k_rope) = match perm(g, kb) {
        Some((p, y)) if p == [0, 1, 3, 2] => split(y, &mut scale, "keys")?,
        // k.permute(0, 2, 3, 1) straight from the reshape (no rotary possible).
        Some((p, y)) if p == [0, 2, 3, 1] => {
            let r = g.node(y.node);
            let dims = g
                .value_type(y)
                .and_then(|t| t.shape.dims().map(|d| d.to_vec()));
            let ok = matches!(r.op, Op::Reshape(_))
                && dims.is_some_and(|x| {
                    x.len() == 4 && known(&x[2]) == Some(h) && known(&x[3]) == Some(d)
                });
            match (ok, r.input(0)) {
                (true, Some(p)) => (p, None),
                _ => {
                    return Err(err(
                        "the keys are not split into heads by Reshape + Transpose".into(),
                    ))
                }
            }
        }
        _ => {
            return Err(err(
                "the keys are not transposed for Q·Kᵀ by a Transpose of their last two axes".into(),
            ))
        }
    };
    let rope = match (q_rope, k_rope) {
        (None, None) => None,
        (Some(a), Some(b)) if a.cos_freqs == b.cos_freqs && a.sin_freqs == b.sin_freqs => Some(a),
        (Some(_), Some(_)) => {
            return Err(err("queries and keys use different rotary tables".into()))
        }
        _ => {
            return Err(err(
                "rotary embedding on only one of queries and keys".into()
            ))
        }
    };
    // Context: softmax · V, heads merged back for the output projection.
    let cm = g.node(a.context_matmul);
    if cm.input(0) != Some(ValueRef::new(a.softmax, 0)) {
        return Err(err("the probabilities reach P·V through other ops".into()));
    }
    let vv = cm.input(1).ok_or_else(|| err("P·V lost an input".into()))?;
    let vp = heads_of(g, vv, h, d).ok_or_else(|| {
        err(format!(
            "the values are not Transpose([0, 2, 1, 3]) of a Reshape into [batch, seq, {h}, {d}]"
        ))
    })?;
    let ctx = ValueRef::new(a.context_matmul, 0);
    let users = g.value_users(ctx);
    let merged = match users.as_slice() {
        [(t, 0)] => {
            let tv = ValueRef::new(*t, 0);
            let r = match (perm(g, tv), g.value_users(tv).as_slice()) {
                (Some((p, _)), [(r, 0)]) if p == [0, 2, 1, 3] => Some(*r),
                _ => None,
            };
            r.filter(|r| matches!(g.node(*r).op, Op::Reshape(_)))
                .map(|r| ValueRef::new(r, 0))
        }
        _ => None,
    };
    let merged = merged
        .filter(|m| {
            g.value_type(*m)
                .and_then(|t| t.shape.dims().map(|d| d.to_vec()))
                .is_some_and(|x| x.len() == 3 && known(&x[2]) == Some(h * d))
        })
        .ok_or_else(|| {
            err(
                "P·V is not merged back to [batch, seq, heads·head_dim] by Transpose + Reshape"
                    .into(),
            )
        })?;
    let o =
        a.o.ok_or_else(|| err("no output projection found".into()))?;
    if idioms.linears[o].input != merged {
        return Err(err(
            "the output projection does not read the merged heads directly".into(),
        ));
    }
    for (p, want, what) in [
        (q, idioms.linears[a.q].output, "q"),
        (k, idioms.linears[a.k].output, "k"),
        (vp, idioms.linears[a.v].output, "v"),
    ] {
        if p != want {
            return Err(err(format!(
                "the {what} heads are not split from the {what} projection's output"
            )));
        }
    }
    // onnxruntime's limits (group_query_attention_helper.h).
    if d % 8 != 0 {
        return Err(err(format!(
            "head size {d} is not a multiple of 8, which GroupQueryAttention requires"
        )));
    }
    if rope.is_some() && d % 16 != 0 {
        return Err(err(format!(
            "head size {d} is not a multiple of 16, which GroupQueryAttention's rotary embedding requires"
        )));
    }
    Ok(Core {
        q,
        k,
        v: vp,
        rope,
        scale: scale as f32,
        merged,
        heads: h as usize,
        head_dim: d as usize,
    })
}

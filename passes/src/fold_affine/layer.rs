//! The quantized linears `fold-affine` compensates, with their float twins
//! (`Graph::float_originals`), and the folding of `a ⊙ y + b` into each layer
//! (techniques.md §3.2): `s' = a ⊙ s` on every weight scale of output channel n,
//! `β' = β + b` on the bias. Integer codes and zero points are never touched.
//!
//! Two forms come out of `quant`:
//! - QDQ: `MatMul(x, DequantizeLinear(codes, scale[, zp]))` (+ `Add` of a bias); the
//!   scale is per tensor (promoted to per output channel), per output channel
//!   (`axis` = 1, `[N]`) or blocked along K (`axis` = 0, `[K/g, N]`);
//! - `MatMulNBits`: scales `[N, k_blocks]`, optional bias input `[N]`.

use crate::idioms::{Idioms, LinearKind};
use crate::pass::PassError;
use compc_ir::op::{BinaryOp, Dequantize};
use compc_ir::{DType, Graph, NodeId, Op, TensorType, ValueRef, Weight};
use compc_runtime::Tensor;

/// A quantized linear with a known float twin.
#[derive(Clone, Debug)]
pub struct QLayer {
    pub node: NodeId,
    pub name: String,
    pub nbits: bool,
    /// The layer's float input (before any activation QuantizeLinear/DequantizeLinear,
    /// so the float twin sees what the float model would).
    pub x: ValueRef,
    /// The quantized product: the node's output, before a separate bias `Add` (QDQ) or
    /// including the bias input (MatMulNBits).
    pub y: ValueRef,
    /// Input features K and output channels N.
    pub k: usize,
    pub n: usize,
    /// The float twin as `B = Wᵀ`, `[K, N]`.
    pub twin: compc_ir::WeightId,
    /// A bias `Add` after the product: (add node, input index of the bias constant).
    pub bias_add: Option<(NodeId, usize)>,
}

/// What [`find`] saw.
pub struct Found {
    pub layers: Vec<QLayer>,
    /// Quantized linears in the graph (with or without a twin).
    pub quantized: usize,
    /// Quantized linears left alone, with the reason.
    pub skipped: Vec<(String, String)>,
}

fn err(msg: String) -> PassError {
    PassError::Invalid(msg)
}

/// Conv and Gemm nodes whose weight comes through a DequantizeLinear: quantized, but
/// not compensated here (their float twin's output needs the op itself, not a MatMul).
pub fn quantized_conv_gemm(g: &Graph) -> usize {
    g.node_ids()
        .filter(|&n| {
            let node = g.node(n);
            matches!(node.op, Op::Conv(_) | Op::Gemm(_))
                && node
                    .input(1)
                    .is_some_and(|w| matches!(g.node(w.node).op, Op::DequantizeLinear(_)))
        })
        .count()
}

/// `v` itself, or the float value behind an activation `QuantizeLinear → DequantizeLinear`.
fn float_input(g: &Graph, v: ValueRef) -> ValueRef {
    let dq = g.node(v.node);
    if let (Op::DequantizeLinear(_), Some(q)) = (&dq.op, dq.input(0)) {
        let qn = g.node(q.node);
        if let (Op::QuantizeLinear(_), Some(x)) = (&qn.op, qn.input(0)) {
            return x;
        }
    }
    v
}

/// The quantized linears of `g` in topological order, each with its float twin.
pub fn find(g: &Graph, idioms: &Idioms) -> Found {
    let mut found = Found {
        layers: vec![],
        quantized: 0,
        skipped: vec![],
    };
    for l in &idioms.linears {
        let nbits = match l.kind {
            LinearKind::QdqMatMul => false,
            LinearKind::MatMulNBits => true,
            _ => continue,
        };
        found.quantized += 1;
        let node = g.node(l.node);
        let name = match g.const_weight(l.weight) {
            Some(w) if !w.name.is_empty() => w.name.clone(),
            _ => node.name.clone(),
        };
        let mut skip = |why: &str| found.skipped.push((name.clone(), why.to_string()));
        let (Some(k), Some(n)) = (l.in_features, l.out_features) else {
            skip("its shape is not known");
            continue;
        };
        let (k, n) = (k as usize, n as usize);
        let Some(&twin) = g.float_originals.get(&l.node) else {
            skip("its float weight is not known");
            continue;
        };
        // A node id can be reused: the twin must have the layer's shape.
        let tw = g.weights.try_get(twin);
        if tw.is_none_or(|w| w.dims != [k as u64, n as u64] || !w.dtype.is_float()) {
            skip("the recorded float weight does not match it");
            continue;
        }
        let bias_add = match l.bias {
            Some((add, c)) if add != l.node => g
                .node(add)
                .inputs()
                .iter()
                .position(|v| *v == Some(c))
                .map(|i| (add, i)),
            _ => None,
        };
        found.layers.push(QLayer {
            node: l.node,
            name,
            nbits,
            x: float_input(g, l.input),
            y: ValueRef::new(l.node, 0),
            k,
            n,
            twin,
            bias_add,
        });
    }
    found
}

impl QLayer {
    /// The float twin `B` (`[K, N]`, row-major).
    pub fn twin_b(&self, g: &Graph) -> Result<Vec<f32>, PassError> {
        g.weights
            .get(self.twin)
            .to_f32_vec()
            .map_err(|e| err(format!("layer `{}`: {e}", self.name)))
    }

    /// A bias the quantized output `y` already includes (MatMulNBits' bias input): the
    /// float twin's output must include it too.
    pub fn bias_in_y(&self, g: &Graph) -> Result<Option<Vec<f32>>, PassError> {
        if !self.nbits {
            return Ok(None);
        }
        match g.node(self.node).input(5) {
            Some(b) => Ok(Some(const_f32(g, b, &self.name)?)),
            None => Ok(None),
        }
    }

    /// Folds `a ⊙ y + b` (y as in [`QLayer::y`]) into the layer's scales and bias. With `explicit`, writes the
    /// same map as a `Mul` and an `Add` after the layer instead (the unfused reference
    /// the folded form is checked against). Returns the number of nodes added.
    pub fn apply(
        &self,
        g: &mut Graph,
        a: &[f32],
        b: &[f32],
        explicit: bool,
    ) -> Result<usize, PassError> {
        let has_b = b.iter().any(|&v| v != 0.0);
        if explicit {
            return self.apply_explicit(g, a, has_b.then_some(b));
        }
        if self.nbits {
            self.fold_nbits(g, a, has_b.then_some(b))
        } else {
            self.fold_qdq(g, a, has_b.then_some(b))
        }
    }

    fn fold_nbits(&self, g: &mut Graph, a: &[f32], b: Option<&[f32]>) -> Result<usize, PassError> {
        let sv = g
            .node(self.node)
            .input(2)
            .ok_or_else(|| err(format!("layer `{}`: MatMulNBits has no scales", self.name)))?;
        let mut s = const_f32(g, sv, &self.name)?;
        if s.is_empty() || !s.len().is_multiple_of(self.n) {
            return Err(err(format!(
                "layer `{}`: {} scales are not {} rows",
                self.name,
                s.len(),
                self.n
            )));
        }
        let per = s.len() / self.n;
        for (row, &f) in s.chunks_mut(per).zip(a) {
            row.iter_mut().for_each(|v| *v *= f);
        }
        let c = replace_const(g, sv, s)?;
        g.set_input(self.node, 2, Some(c));
        // y already includes the bias input β, so a ⊙ y + b needs β' = a ⊙ β + b.
        let bias = match (g.node(self.node).input(5), b) {
            (Some(bv), b) => {
                let mut beta = const_f32(g, bv, &self.name)?;
                for (j, x) in beta.iter_mut().enumerate() {
                    *x = *x * a[j] + b.map_or(0.0, |b| b[j]);
                }
                replace_const(g, bv, beta)?
            }
            (None, Some(b)) => {
                let dtype = self.out_type(g)?.dtype;
                let t = Tensor::from_f32_as(dtype, vec![self.n], b.to_vec())?;
                ValueRef::new(g.add_const(t.to_weight(&format!("{}_bias", self.name))?), 0)
            }
            (None, None) => return Ok(0),
        };
        let mut inputs = g.node(self.node).inputs().to_vec();
        inputs.resize(6, None);
        inputs[5] = Some(bias);
        g.set_inputs(self.node, inputs);
        Ok(0)
    }

    fn fold_qdq(&self, g: &mut Graph, a: &[f32], b: Option<&[f32]>) -> Result<usize, PassError> {
        let dqv = g
            .node(self.node)
            .input(1)
            .ok_or_else(|| err(format!("layer `{}` has no weight", self.name)))?;
        let dq = dqv.node;
        let Op::DequantizeLinear(attrs) = g.node(dq).op.clone() else {
            return Err(err(format!(
                "layer `{}`: its weight is not a DequantizeLinear",
                self.name
            )));
        };
        let (Some(sv), zv) = (g.node(dq).input(1), g.node(dq).input(2)) else {
            return Err(err(format!(
                "layer `{}`: DequantizeLinear has no scale",
                self.name
            )));
        };
        let s = const_f32(g, sv, &self.name)?;
        let sdims = g
            .const_weight(sv)
            .map(|w| w.dims.clone())
            .unwrap_or_default();
        let axis = if attrs.axis < 0 {
            attrs.axis + 2
        } else {
            attrs.axis
        };
        let n = self.n;
        // The scale layout decides which entries belong to output channel j.
        let (scaled, new_attrs, zp) = match (sdims.as_slice(), axis, attrs.block_size) {
            ([] | [1], _, _) => {
                // Per tensor: promote to per output channel (exact), with the zero point.
                let sc: Vec<f32> = a.iter().map(|f| f * s[0]).collect();
                let zp = match zv {
                    Some(z) => Some(broadcast_zero_point(g, z, n, &self.name)?),
                    None => None,
                };
                (
                    (sc, vec![n]),
                    Dequantize {
                        axis: 1,
                        block_size: 0,
                    },
                    zp,
                )
            }
            ([d], 1, 0) if *d as usize == n => {
                let sc: Vec<f32> = s.iter().zip(a).map(|(v, f)| v * f).collect();
                ((sc, vec![n]), attrs.clone(), zv)
            }
            ([_, d], 0, bs) if bs > 0 && *d as usize == n => {
                let mut sc = s.clone();
                for row in sc.chunks_mut(n) {
                    row.iter_mut().zip(a).for_each(|(v, f)| *v *= f);
                }
                (
                    (sc, sdims.iter().map(|&d| d as usize).collect()),
                    attrs.clone(),
                    zv,
                )
            }
            _ => {
                return Err(err(format!(
                    "layer `{}`: weight scale of shape {sdims:?} (axis {}, block {}) has no \
                     per-output-channel layout to fold into",
                    self.name, attrs.axis, attrs.block_size
                )))
            }
        };
        let sdtype = g.const_weight(sv).map(|w| w.dtype).unwrap_or(DType::F32);
        let t = Tensor::from_f32_as(sdtype, scaled.1, scaled.0)?;
        let name = g
            .const_weight(sv)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        let sc = g.add_const(t.to_weight(&name)?);
        // A new DequantizeLinear, so codes shared with another reader keep their meaning.
        let codes = g.node(dq).input(0);
        let out = g.node(dq).outputs.clone();
        let dq_name = g.node(dq).name.clone();
        let mut inputs = vec![codes, Some(ValueRef::new(sc, 0))];
        if let Some(z) = zp {
            inputs.push(Some(z));
        }
        let nd = g.add_node(Op::DequantizeLinear(new_attrs), inputs, out, dq_name);
        g.set_input(self.node, 1, Some(ValueRef::new(nd, 0)));
        let Some(b) = b else { return Ok(0) };
        match self.bias_add {
            Some((add, i)) => {
                let bv = g
                    .node(add)
                    .input(i)
                    .ok_or_else(|| err(format!("layer `{}`: its bias input is gone", self.name)))?;
                let mut beta = const_f32(g, bv, &self.name)?;
                beta.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                let c = replace_const(g, bv, beta)?;
                g.set_input(add, i, Some(c));
                Ok(0)
            }
            // No bias to absorb b: the layer gains one (an Add of a constant, the bias a
            // MatMul layer would carry).
            None => {
                let dtype = self.out_type(g)?.dtype;
                let t = Tensor::from_f32_as(dtype, vec![n], b.to_vec())?;
                let c = g.add_const(t.to_weight(&format!("{}_bias", self.name))?);
                self.insert_after(g, BinaryOp::Add, ValueRef::new(c, 0), "bias")?;
                Ok(1)
            }
        }
    }

    fn apply_explicit(
        &self,
        g: &mut Graph,
        a: &[f32],
        b: Option<&[f32]>,
    ) -> Result<usize, PassError> {
        let dtype = self.out_type(g)?.dtype;
        let ta = Tensor::from_f32_as(dtype, vec![self.n], a.to_vec())?;
        let ca = g.add_const(ta.to_weight(&format!("{}_cwac_a", self.name))?);
        // Right after the product, before a separate bias Add: the map was fitted on y.
        let tail = insert_after_value(g, self.y, BinaryOp::Mul, ValueRef::new(ca, 0), &self.name)?;
        let mut added = 1;
        if let Some(b) = b {
            let tb = Tensor::from_f32_as(dtype, vec![self.n], b.to_vec())?;
            let cb = g.add_const(tb.to_weight(&format!("{}_cwac_b", self.name))?);
            insert_after_value(g, tail, BinaryOp::Add, ValueRef::new(cb, 0), &self.name)?;
            added += 1;
        }
        Ok(added)
    }

    fn out_type(&self, g: &Graph) -> Result<TensorType, PassError> {
        g.value_type(self.y)
            .cloned()
            .ok_or_else(|| err(format!("layer `{}`: its output has no type", self.name)))
    }

    fn insert_after(
        &self,
        g: &mut Graph,
        op: BinaryOp,
        c: ValueRef,
        what: &str,
    ) -> Result<ValueRef, PassError> {
        insert_after_value(g, self.y, op, c, &format!("{}_{what}", self.name))
    }
}

/// `op(v, c)` made the new reader of everything that read `v`; returns its value.
fn insert_after_value(
    g: &mut Graph,
    v: ValueRef,
    op: BinaryOp,
    c: ValueRef,
    name: &str,
) -> Result<ValueRef, PassError> {
    let ty = g
        .value_type(v)
        .cloned()
        .ok_or_else(|| err(format!("`{name}`: the value has no type")))?;
    let users = g.value_users(v);
    let node = g.add_node(
        Op::Binary(op),
        vec![Some(v), Some(c)],
        vec![ty],
        format!("{name}_{op:?}").to_lowercase(),
    );
    let nv = ValueRef::new(node, 0);
    for (u, i) in users {
        g.set_input(u, i as usize, Some(nv));
    }
    for o in g.outputs.iter_mut() {
        if o.value == v {
            o.value = nv;
        }
    }
    Ok(nv)
}

/// A constant's values as f32.
fn const_f32(g: &Graph, v: ValueRef, layer: &str) -> Result<Vec<f32>, PassError> {
    let w = g
        .const_weight(v)
        .ok_or_else(|| err(format!("layer `{layer}`: {} is not a constant", v.node)))?;
    w.to_f32_vec()
        .map_err(|e| err(format!("layer `{layer}`: {e}")))
}

/// A new constant like the one at `v` (name, type, shape) holding `data`. New rather than
/// rewritten in place: the old one may have other readers.
fn replace_const(g: &mut Graph, v: ValueRef, data: Vec<f32>) -> Result<ValueRef, PassError> {
    let w = g
        .const_weight(v)
        .ok_or_else(|| err(format!("{} is not a constant", v.node)))?;
    let (name, dtype, dims) = (w.name.clone(), w.dtype, w.dims.clone());
    let t = Tensor::from_f32_as(dtype, dims.iter().map(|&d| d as usize).collect(), data)?;
    Ok(ValueRef::new(g.add_const(t.to_weight(&name)?), 0))
}

/// A per-tensor zero point repeated for `n` output channels (same integer type).
fn broadcast_zero_point(
    g: &mut Graph,
    z: ValueRef,
    n: usize,
    layer: &str,
) -> Result<ValueRef, PassError> {
    let w = g
        .const_weight(z)
        .ok_or_else(|| err(format!("layer `{layer}`: zero point is not a constant")))?;
    let v = w
        .to_i64_vec()
        .map_err(|e| err(format!("layer `{layer}`: {e}")))?;
    let zv: Vec<i32> = vec![v.first().copied().unwrap_or(0) as i32; n];
    let (name, dtype) = (w.name.clone(), w.dtype);
    let bytes = crate::quant::lower_qdq::encode(dtype, &zv);
    let nw = Weight::from_bytes(name, dtype, vec![n as u64], bytes)
        .map_err(|e| err(format!("layer `{layer}`: {e}")))?;
    Ok(ValueRef::new(g.add_const(nw), 0))
}

//! The quantized linears `fold-affine` compensates, with their float twins
//! (`Graph::float_originals`), and the folding of `a ⊙ y + b` into each layer
//! (techniques.md §3.2): `s' = a ⊙ s` on every weight scale of output channel n,
//! `β' = β + b` on the bias. Integer codes and zero points are never touched.
//!
//! The forms that come out of `quant`:
//! - QDQ: `MatMul(x, DequantizeLinear(codes, scale[, zp]))` (+ `Add` of a bias); the
//!   scale is per tensor (promoted to per output channel), per output channel
//!   (`axis` = 1, `[N]`) or blocked along K (`axis` = 0, `[K/g, N]`);
//! - `MatMulNBits`: scales `[N, k_blocks]`, optional bias input `[N]`;
//! - QDQ `Conv` (kernel `[O, I/group, k…]`, scales per output channel on axis 0) and QDQ
//!   `Gemm` (B `[K, N]`, or `[N, K]` with transB): their bias input is part of `y`, so
//!   it becomes `a ⊙ β + b` (created if absent). Their float output is the op itself run
//!   by the runtime on the float twin (see [`Twin`]).

use crate::calib::linalg::matmul;
use crate::idioms::linear::qdq_conv_gemm_codes;
use crate::idioms::{Idioms, LinearKind};
use crate::pass::PassError;
use compc_ir::op::{BinaryOp, Dequantize};
use compc_ir::{DType, Graph, NodeId, Op, TensorType, ValueRef, Weight};
use compc_runtime::Tensor;
use std::collections::HashMap;

/// How a quantized layer is written, which decides where its output channels are and
/// what its bias means.
#[derive(Clone, Debug, PartialEq)]
pub enum Form {
    /// `MatMul` by a QDQ weight `[K, N]`; a bias, if any, is a separate `Add` after `y`.
    QdqMatMul,
    /// `MatMulNBits`; its bias input is part of `y`.
    NBits,
    /// `Conv` by a QDQ kernel `[O, I/group, k…]`; channels on axis 1 of `y`, the bias
    /// input is part of `y`.
    Conv,
    /// `Gemm` by a QDQ B; channels last, `beta·C` is part of `y`.
    Gemm { trans_b: bool },
}

/// A quantized linear with a known float twin.
#[derive(Clone, Debug)]
pub struct QLayer {
    pub node: NodeId,
    pub name: String,
    pub form: Form,
    /// The layer's float input (before any activation QuantizeLinear/DequantizeLinear,
    /// so the float twin sees what the float model would).
    pub x: ValueRef,
    /// The quantized product: the node's output, before a separate bias `Add` (QDQ
    /// MatMul) or including the bias input (MatMulNBits, Conv, Gemm).
    pub y: ValueRef,
    /// Input features K (per group and kernel position for a Conv: `I/group`) and
    /// output channels N.
    pub k: usize,
    pub n: usize,
    /// The float twin in the layer's weight layout: `B = Wᵀ` `[K, N]` for MatMul and
    /// MatMulNBits, the float kernel for Conv, the float B for Gemm.
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
        let form = match l.kind {
            LinearKind::QdqMatMul => Form::QdqMatMul,
            LinearKind::MatMulNBits => Form::NBits,
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
            form,
            x: float_input(g, l.input),
            y: ValueRef::new(l.node, 0),
            k,
            n,
            twin,
            bias_add,
        });
    }
    find_conv_gemm(g, &mut found);
    // Topological order across both kinds (Sequencer stages follow it too).
    if let Ok(order) = g.topo_order() {
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        found.layers.sort_by_key(|l| pos.get(&l.node).copied());
    }
    found
}

/// The quantized Conv and Gemm layers (idiom detection only knows float ones).
fn find_conv_gemm(g: &Graph, found: &mut Found) {
    let Ok(order) = g.topo_order() else { return };
    for id in order {
        let Some(codes) = qdq_conv_gemm_codes(g, id) else {
            continue;
        };
        found.quantized += 1;
        let node = g.node(id);
        let name = match g.const_weight(codes) {
            Some(w) if !w.name.is_empty() => w.name.trim_end_matches("_quantized").to_string(),
            _ => node.name.clone(),
        };
        let mut skip = |why: &str| found.skipped.push((name.clone(), why.to_string()));
        let Some(x) = node.input(0) else {
            skip("it has no input");
            continue;
        };
        let dims = g
            .const_weight(codes)
            .map(|w| w.dims.clone())
            .unwrap_or_default();
        let (form, k, n) = match (&node.op, dims.as_slice()) {
            (Op::Conv(_), [o, i, ..]) if dims.len() >= 3 => (Form::Conv, *i, *o),
            (Op::Gemm(a), _) if a.trans_a => {
                skip("it transposes its input (transA)");
                continue;
            }
            (Op::Gemm(a), [r, c]) => {
                let (k, n) = if a.trans_b { (*c, *r) } else { (*r, *c) };
                (Form::Gemm { trans_b: a.trans_b }, k, n)
            }
            _ => {
                skip(&format!(
                    "its weight of shape {dims:?} is not a linear layer's"
                ));
                continue;
            }
        };
        let Some(&twin) = g.float_originals.get(&id) else {
            skip("its float weight is not known");
            continue;
        };
        let tw = g.weights.try_get(twin);
        if tw.is_none_or(|w| w.dims != dims || !w.dtype.is_float()) {
            skip("the recorded float weight does not match it");
            continue;
        }
        // The bias must be per output channel for the shift to fold into it.
        if let Some(c) = node.input(2) {
            let ok = g.const_weight(c).is_some_and(|w| {
                let e: u64 = w.dims.iter().product();
                (e == n || e == 1) && w.dims.iter().filter(|&&d| d != 1).count() <= 1
            });
            if !ok {
                skip("its bias is not a constant per output channel");
                continue;
            }
        }
        found.layers.push(QLayer {
            node: id,
            name,
            form,
            x: float_input(g, x),
            y: ValueRef::new(id, 0),
            k: k as usize,
            n: n as usize,
            twin,
            bias_add: None,
        });
    }
}

/// The float twin of a layer, ready to compute the float output on tapped inputs.
pub struct Twin {
    op: Op,
    weight: Tensor,
    /// A bias `y` includes (MatMulNBits, Conv and Gemm bias inputs).
    bias: Option<Tensor>,
    form: Form,
    k: usize,
    n: usize,
}

impl Twin {
    /// `y_fp` for the float input `x`, in the layout of `y_q`.
    pub fn output(&self, x: &Tensor) -> Result<Vec<f32>, PassError> {
        match self.form {
            Form::QdqMatMul | Form::NBits => {
                let xv = x.f32_cow();
                let rows = xv.len() / self.k.max(1);
                let b = self.weight.f32_cow();
                let mut y = matmul(&xv, &b, rows, self.k, self.n)?;
                if let Some(beta) = &self.bias {
                    let beta = beta.f32_cow();
                    for row in y.chunks_mut(self.n) {
                        row.iter_mut().zip(beta.iter()).for_each(|(v, c)| *v += c);
                    }
                }
                Ok(y)
            }
            // The runtime's own kernel with the node's attributes: padding, strides,
            // groups, alpha/beta and the bias broadcast are exactly the layer's.
            Form::Conv | Form::Gemm { .. } => {
                let x = if x.dtype() == self.weight.dtype() {
                    std::borrow::Cow::Borrowed(x)
                } else {
                    std::borrow::Cow::Owned(x.cast(self.weight.dtype())?)
                };
                let out = compc_runtime::eval_op(
                    &self.op,
                    &[Some(&x), Some(&self.weight), self.bias.as_ref()],
                    1,
                )?;
                Ok(out
                    .into_iter()
                    .next()
                    .map(|t| t.to_f32_vec())
                    .unwrap_or_default())
            }
        }
    }
}

impl QLayer {
    /// The float twin with the bias `y` includes (the float output must include it too).
    pub fn twin(&self, g: &Graph) -> Result<Twin, PassError> {
        let e = |e: String| err(format!("layer `{}`: {e}", self.name));
        let weight = Tensor::from_weight(g.weights.get(self.twin)).map_err(|x| e(x.to_string()))?;
        let bias = match self.bias_input() {
            Some(i) => match g.node(self.node).input(i) {
                Some(b) => {
                    let w = g
                        .const_weight(b)
                        .ok_or_else(|| e("its bias is not a constant".into()))?;
                    Some(Tensor::from_weight(w).map_err(|x| e(x.to_string()))?)
                }
                None => None,
            },
            None => None,
        };
        Ok(Twin {
            op: g.node(self.node).op.clone(),
            weight,
            bias,
            form: self.form.clone(),
            k: self.k,
            n: self.n,
        })
    }

    /// The input index of a bias that is part of `y`.
    fn bias_input(&self) -> Option<usize> {
        match self.form {
            Form::QdqMatMul => None,
            Form::NBits => Some(5),
            Form::Conv | Form::Gemm { .. } => Some(2),
        }
    }

    /// Values between consecutive channels of `y` (the spatial size of a Conv output;
    /// 1 where channels are the last axis).
    pub fn channel_stride(&self, y: &Tensor) -> usize {
        match self.form {
            Form::Conv => y.shape().get(2..).map_or(1, |s| s.iter().product()),
            _ => 1,
        }
    }

    /// The axis of the stored weight (as DequantizeLinear outputs it) that holds the
    /// output channels.
    fn weight_out_axis(&self) -> usize {
        match self.form {
            Form::QdqMatMul | Form::Gemm { trans_b: false } => 1,
            Form::Conv | Form::Gemm { trans_b: true } => 0,
            Form::NBits => 0,
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
        match self.form {
            Form::NBits => self.fold_nbits(g, a, has_b.then_some(b)),
            _ => self.fold_qdq(g, a, has_b.then_some(b)),
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
        let sdims: Vec<usize> = g
            .const_weight(sv)
            .map(|w| w.dims.iter().map(|&d| d as usize).collect())
            .unwrap_or_default();
        let rank = g
            .node(dq)
            .input(0)
            .and_then(|c| g.const_weight(c))
            .map_or(2, |w| w.dims.len());
        let axis = if attrs.axis < 0 {
            attrs.axis + rank as i64
        } else {
            attrs.axis
        };
        let (n, oa) = (self.n, self.weight_out_axis());
        // The scale layout decides which entries belong to output channel j.
        let (scaled, new_attrs, zp) = match (sdims.as_slice(), attrs.block_size) {
            ([] | [1], _) => {
                // Per tensor: promote to per output channel (exact), with the zero point.
                let sc: Vec<f32> = a.iter().map(|f| f * s[0]).collect();
                let zp = match zv {
                    Some(z) => Some(broadcast_zero_point(g, z, n, &self.name)?),
                    None => None,
                };
                (
                    (sc, vec![n]),
                    Dequantize {
                        axis: oa as i64,
                        block_size: 0,
                    },
                    zp,
                )
            }
            ([d], 0) if *d == n && axis == oa as i64 => {
                let sc: Vec<f32> = s.iter().zip(a).map(|(v, f)| v * f).collect();
                ((sc, vec![n]), attrs.clone(), zv)
            }
            // Blocked along another axis: the scale has the weight's rank, and its
            // coordinate on the output axis is the channel.
            (d, bs) if bs > 0 && d.len() == rank && d[oa] == n && axis != oa as i64 => {
                let inner: usize = d[oa + 1..].iter().product();
                let mut sc = s.clone();
                for (i, v) in sc.iter_mut().enumerate() {
                    *v *= a[(i / inner) % n];
                }
                ((sc, sdims.clone()), attrs.clone(), zv)
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
        match self.form {
            Form::Conv | Form::Gemm { .. } => self.fold_bias_input(g, a, b),
            _ => self.fold_bias_add(g, b),
        }
    }

    /// `β' = β + b` on the separate bias `Add` of a QDQ MatMul (y excludes β).
    fn fold_bias_add(&self, g: &mut Graph, b: Option<&[f32]>) -> Result<usize, PassError> {
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
                let t = Tensor::from_f32_as(dtype, vec![self.n], b.to_vec())?;
                let c = g.add_const(t.to_weight(&format!("{}_bias", self.name))?);
                self.insert_after(g, BinaryOp::Add, ValueRef::new(c, 0), "bias")?;
                Ok(1)
            }
        }
    }

    /// The bias input of a Conv or Gemm, which `y` includes: `β' = a ⊙ β + b` (for Gemm,
    /// `beta·C' = a ⊙ beta·C + b`). A layer without one (or a Gemm with beta = 0) gets
    /// `b` as its bias input.
    fn fold_bias_input(
        &self,
        g: &mut Graph,
        a: &[f32],
        b: Option<&[f32]>,
    ) -> Result<usize, PassError> {
        let beta_attr = match &g.node(self.node).op {
            Op::Gemm(attrs) => attrs.beta,
            _ => 1.0,
        };
        let current = g.node(self.node).input(2).filter(|_| beta_attr != 0.0);
        // Conv's B and a per-channel Gemm C are both `[N]`.
        let shape = vec![self.n];
        let new = match (current, b) {
            (Some(cv), b) => {
                let c = const_f32(g, cv, &self.name)?;
                // A scalar bias broadcasts to every channel.
                let beta: Vec<f32> = (0..self.n)
                    .map(|j| {
                        let cj = if c.len() == 1 { c[0] } else { c[j] };
                        cj * a[j] + b.map_or(0.0, |b| b[j] / beta_attr)
                    })
                    .collect();
                let w = g
                    .const_weight(cv)
                    .ok_or_else(|| err(format!("layer `{}`: bias is not a constant", self.name)))?;
                let (name, dtype) = (w.name.clone(), w.dtype);
                let t = Tensor::from_f32_as(dtype, shape, beta)?;
                g.add_const(t.to_weight(&name)?)
            }
            (None, Some(b)) => {
                let dtype = self.out_type(g)?.dtype;
                let t = Tensor::from_f32_as(dtype, shape, b.to_vec())?;
                let c = g.add_const(t.to_weight(&format!("{}_bias", self.name))?);
                // Without C (or with beta = 0) beta plays no part: make it 1 for the new C.
                if let Op::Gemm(attrs) = &mut g.node_mut(self.node).op {
                    attrs.beta = 1.0;
                }
                c
            }
            (None, None) => return Ok(0),
        };
        let mut inputs = g.node(self.node).inputs().to_vec();
        inputs.resize(3.max(inputs.len()), None);
        inputs[2] = Some(ValueRef::new(new, 0));
        g.set_inputs(self.node, inputs);
        Ok(0)
    }

    fn apply_explicit(
        &self,
        g: &mut Graph,
        a: &[f32],
        b: Option<&[f32]>,
    ) -> Result<usize, PassError> {
        let ty = self.out_type(g)?;
        let dtype = ty.dtype;
        // Broadcast over the channel axis: `[N]` where channels are last, `[N, 1, …]`
        // for a Conv output `[batch, N, spatial…]`.
        let shape = match self.form {
            Form::Conv => {
                let rank = ty.shape.rank().ok_or_else(|| {
                    err(format!(
                        "layer `{}`: its output rank is not known",
                        self.name
                    ))
                })?;
                let mut s = vec![1; rank.saturating_sub(1).max(1)];
                s[0] = self.n;
                s
            }
            _ => vec![self.n],
        };
        let ta = Tensor::from_f32_as(dtype, shape.clone(), a.to_vec())?;
        let ca = g.add_const(ta.to_weight(&format!("{}_cwac_a", self.name))?);
        // Right after the product, before a separate bias Add: the map was fitted on y.
        let tail = insert_after_value(g, self.y, BinaryOp::Mul, ValueRef::new(ca, 0), &self.name)?;
        let mut added = 1;
        if let Some(b) = b {
            let tb = Tensor::from_f32_as(dtype, shape, b.to_vec())?;
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
pub(crate) fn insert_after_value(
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

//! Shape and type inference (ONNX semantics, opsets 13–23). One rule per op, grouped by
//! family; small integer values that feed shapes are followed symbolically (`symbolic.rs`)
//! so dynamic dims survive `Reshape`/`Expand` chains.

mod arity;
mod control;
mod conv;
mod dims;
mod einsum;
mod elementwise;
mod ext;
mod indexing;
mod nn;
mod shape_ops;
mod symbolic;

pub use arity::{arity, Arity};
pub use nn::capacity_tokens;

use crate::graph::{Graph, Node, NodeId, ValueRef};
use crate::op::Op;
use crate::shape::{Dim, Shape, TensorType};
use std::collections::HashMap;
use symbolic::{SymValue, MAX_ELEMS};

#[derive(Debug, thiserror::Error)]
#[error("{node}: {message}")]
pub struct InferError {
    /// The node, as `Node::describe` spells it.
    pub node: String,
    pub message: String,
}

/// Infers the output types of every node in topological order, refining what is there:
/// per dim the more precise of inferred and declared is kept, the inferred element type
/// wins, and a known dim that contradicts a declared known dim is an error.
pub fn infer_graph(g: &mut Graph) -> Result<(), InferError> {
    infer_graph_with(g, None)
}

/// `infer_graph` for types that are only hints, such as an imported file's `value_info`:
/// where a declared type contradicts inference, the inferred type replaces it and a
/// line naming the node and both types is pushed to `overridden` (onnxruntime, too,
/// runs such files and trusts its own inference).
pub fn infer_graph_overriding(
    g: &mut Graph,
    overridden: &mut Vec<String>,
) -> Result<(), InferError> {
    infer_graph_with(g, Some(overridden))
}

fn infer_graph_with(
    g: &mut Graph,
    mut overridden: Option<&mut Vec<String>>,
) -> Result<(), InferError> {
    let order = g.topo_order().map_err(|e| match e {
        crate::graph::GraphError::Cycle(node) => InferError {
            node,
            message: "is on a cycle".into(),
        },
        other => InferError {
            node: "graph".into(),
            message: other.to_string(),
        },
    })?;
    let mut inf = Inferrer::default();
    for id in order {
        control::refine_bodies(g, id).map_err(|message| InferError {
            node: g.node(id).describe(id),
            message,
        })?;
        let Some(types) = inf.infer(g, id)? else {
            continue;
        };
        let node = g.node(id);
        let mut merged = Vec::with_capacity(types.len());
        for (slot, (t, declared)) in types.into_iter().zip(&node.outputs).enumerate() {
            match (merge(t.clone(), declared), overridden.as_deref_mut()) {
                (Ok(m), _) => merged.push(m),
                (Err(m), Some(notes)) => {
                    notes.push(format!("{}: output {slot}: {m}", node.describe(id)));
                    merged.push(t);
                }
                (Err(m), None) => {
                    return Err(InferError {
                        node: node.describe(id),
                        message: format!("output {slot}: {m}"),
                    })
                }
            }
        }
        g.node_mut(id).outputs = merged;
    }
    Ok(())
}

/// Infers the output types of one node from its inputs' stored types. `None`: the op has
/// no rule (custom ops). Values computed from constants and `Shape` are followed through
/// the node's ancestors as `infer_graph` does.
pub fn infer_node(g: &Graph, id: NodeId) -> Result<Option<Vec<TensorType>>, InferError> {
    Inferrer::default().infer(g, id)
}

/// Inference state shared across nodes: the symbolic values found so far.
#[derive(Default)]
pub(crate) struct Inferrer {
    values: HashMap<ValueRef, Option<SymValue>>,
}

/// Recursion limit for values computed on demand, so a long chain cannot overflow the
/// stack; callers that walk in topological order never come near it.
const MAX_DEPTH: usize = 64;

impl Inferrer {
    pub(crate) fn infer(
        &mut self,
        g: &Graph,
        id: NodeId,
    ) -> Result<Option<Vec<TensorType>>, InferError> {
        if !g.contains(id) {
            return Err(InferError {
                node: id.to_string(),
                message: "no such node".into(),
            });
        }
        let node = g.node(id);
        let err = |message: String| InferError {
            node: node.describe(id),
            message,
        };
        let cx = Cx::new(g, node, self).map_err(err)?;
        let Some(result) = rule(&cx) else {
            return Ok(None);
        };
        let mut types = result.map_err(err)?;
        let n = node.outputs.len();
        if n > types.len() {
            return Err(err(format!(
                "has {n} outputs, but `{}` has at most {}",
                node.op.text_name(),
                types.len()
            )));
        }
        types.truncate(n);
        Ok(Some(types))
    }

    fn value(&mut self, g: &Graph, v: ValueRef, depth: usize) -> Option<SymValue> {
        if let Some(known) = self.values.get(&v) {
            return known.clone();
        }
        if v.slot != 0 || depth > MAX_DEPTH || !g.contains(v.node) {
            return None;
        }
        let node = g.node(v.node);
        // Followed values have rank ≤ 1; a declared higher rank rules the node out early.
        let higher_rank = node
            .outputs
            .first()
            .and_then(|t| t.shape.rank())
            .is_some_and(|r| r > 1);
        let computed = if higher_rank || !symbolic::follows(&node.op) {
            None
        } else {
            let vals: Vec<Option<SymValue>> = node
                .inputs()
                .iter()
                .map(|i| i.and_then(|i| self.value(g, i, depth + 1)))
                .collect();
            let tys: Vec<Option<&TensorType>> = node
                .inputs()
                .iter()
                .map(|i| i.and_then(|i| g.value_type(i)))
                .collect();
            symbolic::eval(g, node, &vals, &tys)
        };
        self.values.insert(v, computed.clone());
        computed
    }
}

/// What a rule sees: the node, its inputs' types and whatever is known of their values.
pub(crate) struct Cx<'a> {
    pub g: &'a Graph,
    pub node: &'a Node,
    tys: Vec<Option<&'a TensorType>>,
    vals: Vec<Option<SymValue>>,
}

impl<'a> Cx<'a> {
    fn new(g: &'a Graph, node: &'a Node, inf: &mut Inferrer) -> Result<Cx<'a>, String> {
        let mut tys = Vec::with_capacity(node.inputs().len());
        let mut vals = Vec::with_capacity(node.inputs().len());
        for (i, v) in node.inputs().iter().enumerate() {
            match v {
                None => {
                    tys.push(None);
                    vals.push(None);
                }
                Some(v) => {
                    let t = g.value_type(*v).ok_or_else(|| {
                        format!(
                            "input {i} reads {}#{}, which does not exist",
                            v.node, v.slot
                        )
                    })?;
                    tys.push(Some(t));
                    vals.push(inf.value(g, *v, 0));
                }
            }
        }
        Ok(Cx { g, node, tys, vals })
    }

    /// Input `i`, which the op requires.
    pub fn ty(&self, i: usize) -> Result<&'a TensorType, String> {
        self.opt_ty(i)
            .ok_or_else(|| format!("required input {i} is missing"))
    }

    pub fn opt_ty(&self, i: usize) -> Option<&'a TensorType> {
        self.tys.get(i).copied().flatten()
    }

    pub fn n_inputs(&self) -> usize {
        self.tys.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    pub(crate) fn value(&self, i: usize) -> Option<&SymValue> {
        self.vals.get(i).and_then(|v| v.as_ref())
    }

    /// Input `i` as integers, if every element is known.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.value(i).and_then(SymValue::nums)
    }

    /// Input `i` as floats: known integers, a small constant of any numeric type, or a
    /// Concat of such constants (how torchscript spells Resize scales).
    pub fn floats(&self, i: usize) -> Option<Vec<f32>> {
        if let Some(v) = self.ints(i) {
            return Some(v.into_iter().map(|x| x as f32).collect());
        }
        const_floats(self.g, self.node.input(i)?, 0)
    }

    /// Input `i` used as a shape: its elements as dims, or `None` if its length is
    /// unknown. Negative numbers are rejected (callers that allow them read `value`).
    pub fn shape_value(&self, i: usize, what: &str) -> Result<Option<Vec<Dim>>, String> {
        let Some(v) = self.value(i) else {
            // The length alone still gives the rank.
            return Ok(self.opt_ty(i).and_then(|t| match t.shape.dims() {
                Some([Dim::Known(n)]) => Some(vec![Dim::Unknown; *n as usize]),
                _ => None,
            }));
        };
        v.elems
            .iter()
            .map(|e| {
                e.to_dim()
                    .ok_or_else(|| format!("{what} has a negative entry: {e:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn const_floats(g: &Graph, v: ValueRef, depth: usize) -> Option<Vec<f32>> {
    if let Some(w) = symbolic::weight_of(g, v) {
        return (w.numel() <= MAX_ELEMS as u64 && w.dims.len() <= 1)
            .then(|| w.to_f32_vec().ok())
            .flatten();
    }
    let node = g.node(v.node);
    if depth > 4 || v.slot != 0 || !matches!(node.op, Op::Concat(_)) {
        return None;
    }
    let mut out = Vec::new();
    for i in node.inputs() {
        out.extend(const_floats(g, (*i)?, depth + 1)?);
    }
    (out.len() <= MAX_ELEMS).then_some(out)
}

/// Merges an inferred type with the declared one: the inferred element type wins, and
/// per dim Known > Sym > Unknown.
fn merge(inferred: TensorType, declared: &TensorType) -> Result<TensorType, String> {
    let shape = match (&inferred.shape, &declared.shape) {
        (Shape::Unranked, s) | (s, Shape::Unranked) => s.clone(),
        (Shape::Ranked(a), Shape::Ranked(b)) => {
            let clash = || format!("declared {declared} but inference gives {inferred}");
            if a.len() != b.len() {
                return Err(clash());
            }
            let mut dims = Vec::with_capacity(a.len());
            for (x, y) in a.iter().zip(b) {
                dims.push(match (x, y) {
                    (Dim::Known(p), Dim::Known(q)) if p != q => return Err(clash()),
                    (Dim::Known(_), _)
                    | (Dim::Sym(_), Dim::Sym(_))
                    | (Dim::Sym(_), Dim::Unknown) => x.clone(),
                    _ => y.clone(),
                });
            }
            Shape::Ranked(dims)
        }
    };
    Ok(TensorType::new(inferred.dtype, shape))
}

/// The output types of the node in `cx`, one per output the op can have (callers drop
/// optional outputs the node does not have). `None`: no rule.
fn rule(cx: &Cx) -> Option<Result<Vec<TensorType>, String>> {
    use elementwise as ew;
    let op = &cx.node.op;
    let r = match op {
        Op::Custom(_) => return None,
        Op::Input => Ok(cx.node.outputs.clone()),
        Op::Const(w) => match cx.g.weights.try_get(*w) {
            Some(w) => Ok(vec![TensorType::known(w.dtype, &w.dims)]),
            None => Err(format!("weight {w} does not exist")),
        },
        Op::Unary(k) => ew::unary(cx, *k),
        Op::Binary(k) => ew::binary(cx, *k),
        Op::Variadic(_) => ew::variadic(cx),
        Op::Where => ew::where_(cx),
        Op::Mod(_) => ew::broadcast_like_first(cx, 2),
        Op::Cast(c) => ew::cast(cx, c.to),
        Op::CastLike => cx.ty(1).and_then(|t| ew::cast(cx, t.dtype)),
        Op::QuantizeLinear(q) => ew::quantize(cx, q),
        Op::DequantizeLinear(_) => ew::dequantize(cx),
        Op::DynamicQuantizeLinear => ew::dynamic_quantize(cx),
        Op::Dropout(_) => ew::dropout(cx),
        Op::Softmax(a) | Op::LogSoftmax(a) | Op::Hardmax(a) => ew::same_with_axis(cx, a.axis),
        Op::CumSum(_) => ew::same(cx),
        Op::Clip
        | Op::LeakyRelu(_)
        | Op::Elu(_)
        | Op::Celu(_)
        | Op::ThresholdedRelu(_)
        | Op::HardSigmoid(_)
        | Op::Selu(_)
        | Op::Gelu(_)
        | Op::Trilu(_)
        | Op::ScatterNd(_)
        | Op::ScatterElements(_) => ew::same(cx),
        Op::Hadamard(h) => ew::hadamard(cx, h),
        Op::Reshape(r) => shape_ops::reshape(cx, r),
        Op::Expand => shape_ops::expand(cx),
        Op::Tile => shape_ops::tile(cx),
        Op::Range => shape_ops::range(cx),
        Op::Shape(s) => shape_ops::shape(cx, s),
        Op::Size => Ok(vec![TensorType::new(crate::DType::I64, Shape::scalar())]),
        Op::ConstantOfShape(c) => shape_ops::constant_of_shape(cx, c),
        Op::Transpose(t) => shape_ops::transpose(cx, t),
        Op::Squeeze(a) => shape_ops::squeeze(cx, a),
        Op::Unsqueeze(a) => shape_ops::unsqueeze(cx, a),
        Op::Flatten(f) => shape_ops::flatten(cx, f),
        Op::DepthToSpace(d) => shape_ops::depth_to_space(cx, d.blocksize),
        Op::SpaceToDepth(d) => shape_ops::space_to_depth(cx, d.blocksize),
        Op::Concat(c) => indexing::concat(cx, c),
        Op::Split(s) => indexing::split(cx, s),
        Op::Slice => indexing::slice(cx),
        Op::Gather(a) => indexing::gather(cx, a.axis),
        Op::GatherElements(a) => indexing::gather_elements(cx, a.axis),
        Op::GatherNd(a) => indexing::gather_nd(cx, a.batch_dims),
        Op::Pad(_) => indexing::pad(cx),
        Op::NonZero => indexing::non_zero(cx),
        Op::OneHot(o) => indexing::one_hot(cx, o),
        Op::TopK(t) => indexing::top_k(cx, t),
        Op::MatMul => nn::matmul(cx),
        Op::Gemm(gm) => nn::gemm(cx, gm),
        Op::MatMulNBits(m) => nn::matmul_nbits(cx, m),
        Op::GroupQueryAttention(a) => nn::group_query_attention(cx, a),
        Op::BatchNorm(_) => nn::batch_norm(cx),
        Op::LayerNorm(n) => nn::layer_norm(cx, n),
        Op::RmsNorm(n) => ew::same_with_axis(cx, n.axis),
        Op::InstanceNorm(_) | Op::GroupNorm(_) => ew::same(cx),
        Op::Reduce(_, r) => nn::reduce(cx, r),
        Op::ArgMax(a) | Op::ArgMin(a) => nn::arg_reduce(cx, a),
        Op::Einsum(e) => einsum::einsum(cx, &e.equation),
        Op::RouterTopK(r) => nn::router_top_k(cx, r),
        Op::Conv(c) => conv::conv(cx, c),
        Op::ConvTranspose(c) => conv::conv_transpose(cx, c),
        Op::MaxPool(p) => conv::pool(cx, p, true),
        Op::AveragePool(p) => conv::pool(cx, p, false),
        Op::GlobalAveragePool | Op::GlobalMaxPool => conv::global_pool(cx),
        Op::Resize(r) => conv::resize(cx, r),
        Op::Det => ext::det(cx),
        Op::MatMulInteger => ext::matmul_integer(cx),
        Op::QLinearMatMul => ext::qlinear_matmul(cx),
        Op::IsInf(_) => ext::is_inf(cx),
        Op::Shrink(_) | Op::MeanVarianceNorm(_) | Op::Lrn(_) | Op::ReverseSequence(_) => {
            ew::same(cx)
        }
        Op::BitShift(_) => ew::broadcast_like_first(cx, 2),
        Op::EyeLike(e) => ext::eye_like(cx, e),
        Op::Compress(c) => ext::compress(cx, c),
        Op::Unique(u) => ext::unique(cx, u),
        Op::MaxUnpool(m) => ext::max_unpool(cx, m),
        Op::RoiAlign(r) => ext::roi_align(cx, r),
        Op::NonMaxSuppression(_) => ext::non_max_suppression(cx),
        Op::GridSample(_) => ext::grid_sample(cx),
        Op::ConvInteger(c) => ext::conv_integer(cx, c),
        Op::QLinearConv(c) => ext::qlinear_conv(cx, c),
        Op::NllLoss(l) | Op::SoftmaxCrossEntropyLoss(l) => ext::loss(cx, l),
        Op::Rnn(r) => ext::recurrent(cx, r.hidden_size, &r.direction, r.layout, 2),
        Op::Gru(r) => ext::recurrent(cx, r.hidden_size, &r.direction, r.layout, 2),
        Op::Lstm(r) => ext::recurrent(cx, r.hidden_size, &r.direction, r.layout, 3),
        Op::Dft(d) => ext::dft(cx, d),
        Op::Stft(_) => ext::stft(cx),
        Op::HannWindow(w) | Op::HammingWindow(w) | Op::BlackmanWindow(w) => {
            ext::window(cx, w.output_datatype)
        }
        Op::MelWeightMatrix(m) => ext::mel_weight_matrix(cx, m.output_datatype),
        Op::TfIdfVectorizer(t) => ext::tf_idf(cx, &t.ngram_indexes),
        Op::Adagrad(_) | Op::Momentum(_) => ext::optimizer(cx, 2),
        Op::Adam(_) => ext::optimizer(cx, 3),
        Op::If(i) => control::if_(cx, i),
        Op::Loop(l) => control::loop_(cx, l),
        Op::Scan(sc) => control::scan(cx, sc),
        Op::SequenceMap(m) => control::sequence_map(cx, m),
        Op::SequenceEmpty(_)
        | Op::ConcatFromSequence(_)
        | Op::SplitToSequence(_)
        | Op::Optional(_)
        | Op::SequenceConstruct
        | Op::SequenceAt
        | Op::SequenceInsert
        | Op::SequenceErase
        | Op::SequenceLength
        | Op::OptionalHasElement
        | Op::OptionalGetElement => control::sequence_op(cx),
        Op::StringNormalizer(_) => control::string_normalizer(cx),
    };
    Some(r)
}

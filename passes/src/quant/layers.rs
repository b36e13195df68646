//! The layers `quant` works on: the float linear layers idiom detection found (MatMul and
//! Gemm with a constant 2-D weight, Conv with a constant kernel), minus those `skip=`
//! names, read into and written back from compc's W-form (`rows` = output channels,
//! `cols` = input features, techniques.md §0).

use super::options::{glob_match, QuantConfig};
use crate::calib::linalg::transpose;
use crate::idioms::linear::qdq_conv_gemm_codes;
use crate::idioms::{Idioms, Linear, LinearKind};
use crate::pass::PassError;
use compc_ir::{DType, Graph, NodeId, ValueRef, Weight};
use rayon::prelude::*;
use std::borrow::Cow;

/// How the weight constant stores W.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// `B = Wᵀ`, shape `[in, out]` (MatMul, Gemm with transB = 0).
    InOut,
    /// `W`, shape `[out, in]` (Gemm with transB = 1).
    OutIn,
    /// A Conv kernel `[out, in/group, k...]`; W-form flattens all but the first axis.
    Conv(Vec<u64>),
}

#[derive(Clone, Debug)]
pub struct Layer {
    /// Index into `Idioms::linears`.
    pub index: usize,
    pub linear: Linear,
    /// The weight's name (the node's name when the weight has none).
    pub name: String,
    pub layout: Layout,
    pub rows: usize,
    pub cols: usize,
    /// Element type of the float weight.
    pub dtype: DType,
}

impl Layer {
    pub fn node(&self) -> NodeId {
        self.linear.node
    }

    pub fn is_conv(&self) -> bool {
        matches!(self.layout, Layout::Conv(_))
    }

    /// The input the layer reads (its activation).
    pub fn input(&self, g: &Graph) -> Option<ValueRef> {
        g.node(self.linear.node).input(0)
    }

    /// Float bytes of the weight as stored.
    pub fn float_bytes(&self) -> u64 {
        (self.rows * self.cols) as u64 * (self.dtype.bits() as u64 / 8)
    }

    /// "matmul 256→768", for the report.
    pub fn shape_text(&self) -> String {
        let kind = match self.linear.kind {
            LinearKind::MatMul => "matmul",
            LinearKind::Gemm { .. } => "gemm",
            LinearKind::Conv => "conv",
            LinearKind::QdqMatMul | LinearKind::MatMulNBits => "quantized",
        };
        format!("{kind} {}→{}", self.cols, self.rows)
    }
}

/// The constant node the layer reads its weight from now.
pub fn weight_node(g: &Graph, l: &Layer) -> Option<NodeId> {
    g.node(l.node()).input(1).map(|v| v.node)
}

/// Layer `i` reads the same weight as an earlier-processed layer: the first `j` whose
/// weight was taken from the constant `i` reads now (`taken_from[j]`), in the same layout
/// and shape. Passes that rewrite weights (quant, prune) use it to give all readers of a
/// shared weight (`share-layers`) one result instead of a copy each.
pub fn reader_of_same_weight(
    g: &Graph,
    layers: &[Layer],
    i: usize,
    taken_from: &[Option<NodeId>],
) -> Option<usize> {
    let l = &layers[i];
    let from = weight_node(g, l)?;
    (0..layers.len()).find(|&j| j != i && taken_from[j] == Some(from) && same_form(&layers[j], l))
}

/// The layers other than `i` that read the very weight `i` reads now, in the same form,
/// and are not rewritten yet (`pending(k)`): `share-layers` ties them.
pub fn later_readers(
    g: &Graph,
    layers: &[Layer],
    i: usize,
    pending: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let Some(from) = weight_node(g, &layers[i]) else {
        return vec![];
    };
    (0..layers.len())
        .filter(|&k| {
            k != i
                && pending(k)
                && weight_node(g, &layers[k]) == Some(from)
                && same_form(&layers[k], &layers[i])
        })
        .collect()
}

/// The inputs whose statistics a calibrated stage combines: site 0 is the stage's own
/// input (first read by `members[0]`), then the distinct inputs of the later readers
/// `later(i)` of each member's weight. Returns each site's input and first reader, and
/// for each member the sites its weight's readers see.
pub fn reader_sites(
    g: &Graph,
    layers: &[Layer],
    input: ValueRef,
    members: &[usize],
    later: impl Fn(usize) -> Vec<usize>,
) -> (Vec<(ValueRef, usize)>, Vec<Vec<usize>>) {
    let mut sites = vec![(input, members[0])];
    let mut site_of: Vec<Vec<usize>> = vec![vec![0]; members.len()];
    for (m, &i) in members.iter().enumerate() {
        for k in later(i) {
            let Some(x) = layers[k].input(g) else {
                continue;
            };
            let s = sites.iter().position(|&(v, _)| v == x).unwrap_or_else(|| {
                sites.push((x, k));
                sites.len() - 1
            });
            if !site_of[m].contains(&s) {
                site_of[m].push(s);
            }
        }
    }
    (sites, site_of)
}

/// Whether two layers hold their weights in one layout and shape, so one constant can
/// serve both.
pub fn same_form(a: &Layer, b: &Layer) -> bool {
    a.layout == b.layout && (a.rows, a.cols, a.dtype) == (b.rows, b.cols, b.dtype)
}

/// What [`select`] found.
pub struct Selection {
    pub layers: Vec<Layer>,
    /// Float linears left alone, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Linears already in QDQ or MatMulNBits form.
    pub already_quantized: usize,
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

/// The float linears to quantize, in topological order.
pub fn select(g: &Graph, idioms: &Idioms, cfg: &QuantConfig) -> Selection {
    select_skipping(g, idioms, &cfg.skip)
}

/// The float linears, in topological order, minus those a `skip` glob names (`prune`
/// selects its layers this way too).
pub fn select_skipping(g: &Graph, idioms: &Idioms, patterns: &[String]) -> Selection {
    let mut sel = Selection {
        layers: vec![],
        skipped: vec![],
        already_quantized: 0,
    };
    for (index, l) in idioms.linears.iter().enumerate() {
        let node = g.node(l.node);
        let Some(w) = g.const_weight(l.weight) else {
            continue;
        };
        // The constant's node name is the initializer's name for imported models (and the
        // `loc` of a hand-written one); the weight's own name and the layer node's name
        // are the fallbacks.
        let const_name = &g.node(l.weight.node).name;
        let name = [const_name, &w.name, &node.name]
            .into_iter()
            .find(|n| !n.is_empty())
            .cloned()
            .unwrap_or_default();
        let layout = match l.kind {
            LinearKind::QdqMatMul | LinearKind::MatMulNBits => {
                sel.already_quantized += 1;
                continue;
            }
            LinearKind::MatMul | LinearKind::Gemm { trans_b: false } => Layout::InOut,
            LinearKind::Gemm { trans_b: true } => Layout::OutIn,
            LinearKind::Conv => Layout::Conv(w.dims.clone()),
        };
        let skip = |why: &str| (name.clone(), why.to_string());
        if !is_float(w.dtype) {
            sel.skipped
                .push(skip(&format!("its weight is {}", w.dtype)));
            continue;
        }
        let (rows, cols) = match (&layout, w.dims.as_slice()) {
            (Layout::InOut, [i, o]) => (*o as usize, *i as usize),
            (Layout::OutIn, [o, i]) => (*o as usize, *i as usize),
            (Layout::Conv(_), [o, rest @ ..]) if !rest.is_empty() => {
                (*o as usize, rest.iter().product::<u64>() as usize)
            }
            _ => {
                sel.skipped
                    .push(skip(&format!("its weight has shape {:?}", w.dims)));
                continue;
            }
        };
        // A product with a handful of input features is not a learned layer (RoPE's
        // `positions × inv_freq`, a scalar gain): quantizing it only hurts.
        if cols < 8 || rows == 0 {
            sel.skipped.push(skip(&format!(
                "it has {cols} input feature{} (too few to be a learned layer)",
                if cols == 1 { "" } else { "s" }
            )));
            continue;
        }
        let act_float = node
            .input(0)
            .and_then(|v| g.value_type(v))
            .is_some_and(|t| is_float(t.dtype));
        if !act_float {
            sel.skipped
                .push(skip("its input is not a float activation"));
            continue;
        }
        if patterns
            .iter()
            .any(|p| glob_match(p, &name) || glob_match(p, &w.name) || glob_match(p, &node.name))
        {
            sel.skipped.push(skip("skip= matches it"));
            continue;
        }
        sel.layers.push(Layer {
            index,
            linear: l.clone(),
            name,
            layout,
            rows,
            cols,
            dtype: w.dtype,
        });
    }
    // Idiom detection knows the QDQ MatMul form only; `quant` writes convolutions (and
    // Gemms) as QDQ too, and those count as quantized layers as well.
    sel.already_quantized += g
        .node_ids()
        .filter(|&n| qdq_conv_gemm_codes(g, n).is_some())
        .count();
    sel
}

/// The weight constant the layer reads now.
pub fn weight<'g>(g: &'g Graph, l: &Layer) -> Result<&'g Weight, PassError> {
    g.node(l.linear.node)
        .input(1)
        .and_then(|v| g.const_weight(v))
        .ok_or_else(|| {
            PassError::Invalid(format!(
                "layer `{}`: its weight is no longer a constant",
                l.name
            ))
        })
}

/// The layer's current weight in W-form.
pub fn read_w(g: &Graph, l: &Layer) -> Result<Vec<f32>, PassError> {
    check_finite(g, l)?;
    read_w_unchecked(g, l)
}

/// `read_w` without the scan for NaN and infinite values, for callers whose own pass over
/// the weights reveals them (RTN's weight MSE is not finite then) and who call
/// [`check_finite`] only in that case: on large models the scan is a tenth of RTN's time.
pub fn read_w_unchecked(g: &Graph, l: &Layer) -> Result<Vec<f32>, PassError> {
    let v = stored_f32(g, l)?;
    Ok(match l.layout {
        Layout::InOut => transpose(&v, l.cols, l.rows),
        Layout::OutIn | Layout::Conv(_) => v.into_owned(),
    })
}

/// An error naming the first NaN or infinite element (storage order) of the layer's weight.
pub fn check_finite(g: &Graph, l: &Layer) -> Result<(), PassError> {
    let v = stored_f32(g, l)?;
    let bad = v
        .par_chunks(1 << 16)
        .enumerate()
        .find_map_first(|(c, x)| x.iter().position(|x| !x.is_finite()).map(|i| (c << 16) + i));
    match bad {
        Some(i) => Err(PassError::Invalid(format!(
            "layer `{}`: weight element {i} is {} (NaN and infinite weights cannot be compressed)",
            l.name, v[i]
        ))),
        None => Ok(()),
    }
}

/// [`check_finite`] for every layer. Calibrated passes call it before calibrating, so that
/// a NaN weight is named as such, not as the NaN activations it causes further down (a
/// layer the pass calibrates later, or one it leaves to RTN, may feed them).
pub fn check_all_finite<'a>(
    g: &Graph,
    layers: impl IntoIterator<Item = &'a Layer>,
) -> Result<(), PassError> {
    layers.into_iter().try_for_each(|l| check_finite(g, l))
}

/// The layer's weight as f32 in its storage layout. An f32 weight (memory-mapped or owned)
/// that happens to be 4-byte aligned is read in place; anything else is decoded.
fn stored_f32<'g>(g: &'g Graph, l: &Layer) -> Result<Cow<'g, [f32]>, PassError> {
    let w = weight(g, l)?;
    let bytes = w.bytes().map_err(|e| PassError::Invalid(e.to_string()))?;
    Ok(
        match (w.dtype, bytemuck::try_cast_slice::<u8, f32>(bytes)) {
            (DType::F32, Ok(v)) if cfg!(target_endian = "little") => Cow::Borrowed(v),
            _ => Cow::Owned(
                w.to_f32_vec()
                    .map_err(|e| PassError::Invalid(e.to_string()))?,
            ),
        },
    )
}

/// The W-form matrix in the layer's storage layout.
pub fn to_storage(l: &Layer, w: &[f32]) -> Vec<f32> {
    match l.layout {
        Layout::InOut => transpose(w, l.rows, l.cols),
        Layout::OutIn | Layout::Conv(_) => w.to_vec(),
    }
}

/// Replaces the layer's weight with `w` (W-form, f32), in a new constant of the weight's
/// element type, so a constant shared with other readers is left as it was.
pub fn write_w(g: &mut Graph, l: &Layer, w: &[f32]) -> Result<(), PassError> {
    let old = weight(g, l)?;
    let (name, dims) = (old.name.clone(), old.dims.clone());
    let data = to_storage(l, w);
    let t = compc_runtime::Tensor::from_f32_as(
        l.dtype,
        dims.iter().map(|&d| d as usize).collect(),
        data,
    )?;
    let nw = t.to_weight(&name)?;
    let c = g.add_const(nw);
    g.set_input(l.linear.node, 1, Some(ValueRef::new(c, 0)));
    Ok(())
}

//! Lowering to ONNX's QuantizeLinear/DequantizeLinear form (techniques.md §1.6).
//!
//! Weights become an integer constant read by a `DequantizeLinear` that feeds the float
//! op: per output channel (`axis` = the output axis of the stored weight, a 1-D scale) or
//! blocked along the input axis (`block_size` = group, scale of the weight's rank;
//! opset 21, which the ONNX backend selects). Symmetric grids are written as signed
//! codes without a zero point; asymmetric ones as unsigned codes with one. 3- and 2-bit
//! codes travel in 4-bit containers (ONNX has no narrower type).
//!
//! Activations (static W8A8) get a `QuantizeLinear → DequantizeLinear` pair with a
//! per-tensor uint8 scale and zero point on the edge into the layer.

use super::layers::{Layer, Layout};
use super::qmatrix::QMatrix;
use crate::calib::linalg::transpose;
use crate::pass::PassError;
use compc_ir::op::{Dequantize, Quantize};
use compc_ir::{DType, Graph, Op, TensorType, ValueRef, Weight};

/// The integer type codes of `bits` are stored as.
pub fn code_dtype(bits: u32, sym: bool) -> DType {
    match (bits > 4, sym) {
        (true, true) => DType::I8,
        (true, false) => DType::U8,
        (false, true) => DType::I4,
        (false, false) => DType::U4,
    }
}

/// Little-endian storage of integer values in `dtype` (4-bit types two per byte, low
/// nibble first).
pub fn encode(dtype: DType, v: &[i32]) -> Vec<u8> {
    match dtype {
        DType::I4 | DType::U4 => {
            let mut out = vec![0u8; v.len().div_ceil(2)];
            for (i, &x) in v.iter().enumerate() {
                out[i / 2] |= ((x as u8) & 0xF) << ((i % 2) * 4);
            }
            out
        }
        _ => v.iter().map(|&x| x as u8).collect(),
    }
}

fn weight(name: String, dtype: DType, dims: Vec<u64>, v: &[i32]) -> Result<Weight, PassError> {
    Weight::from_bytes(name, dtype, dims, encode(dtype, v))
        .map_err(|e| PassError::Invalid(e.to_string()))
}

fn float_weight(
    name: String,
    dtype: DType,
    dims: Vec<u64>,
    v: Vec<f32>,
) -> Result<Weight, PassError> {
    let t =
        compc_runtime::Tensor::from_f32_as(dtype, dims.iter().map(|&d| d as usize).collect(), v)?;
    Ok(t.to_weight(&name)?)
}

/// The constants of a QDQ weight: codes, scale, optional zero point, axis, block size.
pub struct QdqWeight {
    pub codes: Weight,
    pub scale: Weight,
    pub zero_point: Option<Weight>,
    pub axis: i64,
    pub block_size: i64,
}

/// Codes, scales and zero points in the stored weight's layout.
struct Arranged {
    codes: Vec<u8>,
    dims: Vec<u64>,
    scale_dims: Vec<u64>,
    scales: Vec<f32>,
    zeros: Vec<u8>,
    axis: i64,
}

/// Builds the QDQ constants of a layer from its quantized matrix.
pub fn qdq_weight(l: &Layer, q: &QMatrix) -> Result<QdqWeight, PassError> {
    let sym = q.grid.sym;
    let dtype = code_dtype(q.grid.bits, sym);
    let mid = q.grid.mid() as i32;
    let signed = |c: u8| if sym { c as i32 - mid } else { c as i32 };
    let (rows, cols, ng) = (q.rows as u64, q.cols as u64, q.groups() as u64);
    let per_channel = q.per_channel();
    // W-form as stored: per-channel scales are 1-D along the output axis; blocked
    // scales have the weight's rank with the input axis divided into groups.
    let a = match (&l.layout, per_channel) {
        (Layout::InOut, true) => Arranged {
            codes: transpose(&q.codes, q.rows, q.cols),
            dims: vec![cols, rows],
            scale_dims: vec![rows],
            scales: q.scales.clone(),
            zeros: q.zeros.clone(),
            axis: 1,
        },
        (Layout::InOut, false) => Arranged {
            codes: transpose(&q.codes, q.rows, q.cols),
            dims: vec![cols, rows],
            scale_dims: vec![ng, rows],
            scales: transpose(&q.scales, q.rows, q.groups()),
            zeros: transpose(&q.zeros, q.rows, q.groups()),
            axis: 0,
        },
        (Layout::OutIn, pc) => Arranged {
            codes: q.codes.clone(),
            dims: vec![rows, cols],
            scale_dims: if pc { vec![rows] } else { vec![rows, ng] },
            scales: q.scales.clone(),
            zeros: q.zeros.clone(),
            axis: if pc { 0 } else { 1 },
        },
        (Layout::Conv(d), true) => Arranged {
            codes: q.codes.clone(),
            dims: d.clone(),
            scale_dims: vec![rows],
            scales: q.scales.clone(),
            zeros: q.zeros.clone(),
            axis: 0,
        },
        (Layout::Conv(_), false) => {
            return Err(PassError::Invalid(format!(
                "layer `{}`: conv kernels are quantized per output channel only",
                l.name
            )))
        }
    };
    let cv: Vec<i32> = a.codes.iter().map(|&c| signed(c)).collect();
    let zero_point = if sym {
        None
    } else {
        let zv: Vec<i32> = a.zeros.iter().map(|&z| z as i32).collect();
        Some(weight(
            format!("{}_zero_point", l.name),
            dtype,
            a.scale_dims.clone(),
            &zv,
        )?)
    };
    Ok(QdqWeight {
        codes: weight(format!("{}_quantized", l.name), dtype, a.dims, &cv)?,
        scale: float_weight(format!("{}_scale", l.name), l.dtype, a.scale_dims, a.scales)?,
        zero_point,
        axis: a.axis,
        block_size: if per_channel { 0 } else { q.group as i64 },
    })
}

/// Rewrites the layer to read its weight through `DequantizeLinear`; returns the bytes
/// of the new constants.
pub fn lower_qdq(g: &mut Graph, l: &Layer, q: &QMatrix) -> Result<u64, PassError> {
    let w = qdq_weight(l, q)?;
    let bytes =
        w.codes.byte_len() + w.scale.byte_len() + w.zero_point.as_ref().map_or(0, |z| z.byte_len());
    let dims = w.codes.dims.clone();
    let (axis, block_size) = (w.axis, w.block_size);
    let out_ty = TensorType::known(l.dtype, &dims);
    let qc = g.add_const(w.codes);
    let sc = g.add_const(w.scale);
    let zc = w.zero_point.map(|z| g.add_const(z));
    let mut inputs = vec![Some(ValueRef::new(qc, 0)), Some(ValueRef::new(sc, 0))];
    if let Some(z) = zc {
        inputs.push(Some(ValueRef::new(z, 0)));
    }
    let dq = g.add_node(
        Op::DequantizeLinear(Dequantize { axis, block_size }),
        inputs,
        vec![out_ty],
        format!("{}_DequantizeLinear", l.name),
    );
    g.set_input(l.linear.node, 1, Some(ValueRef::new(dq, 0)));
    Ok(bytes)
}

/// Inserts `QuantizeLinear → DequantizeLinear` (per-tensor uint8, scale `s`, zero point
/// `z`) on `v` and makes `readers` (node, input index) read the dequantized value.
pub fn insert_activation_qdq(
    g: &mut Graph,
    v: ValueRef,
    readers: &[(compc_ir::NodeId, usize)],
    s: f32,
    z: u8,
    name: &str,
) -> Result<(), PassError> {
    let Some(ty) = g.value_type(v).cloned() else {
        return Err(PassError::Invalid(format!(
            "activation `{name}` has no type"
        )));
    };
    let sc = g.add_const(float_weight(
        format!("{name}_scale"),
        ty.dtype,
        vec![],
        vec![s],
    )?);
    let zc = g.add_const(weight(
        format!("{name}_zero_point"),
        DType::U8,
        vec![],
        &[z as i32],
    )?);
    let qn = g.add_node(
        Op::QuantizeLinear(Quantize {
            axis: 1,
            block_size: 0,
            output_dtype: None,
            saturate: true,
        }),
        vec![
            Some(v),
            Some(ValueRef::new(sc, 0)),
            Some(ValueRef::new(zc, 0)),
        ],
        vec![TensorType::new(DType::U8, ty.shape.clone())],
        format!("{name}_QuantizeLinear"),
    );
    let dq = g.add_node(
        Op::DequantizeLinear(Dequantize {
            axis: 1,
            block_size: 0,
        }),
        vec![
            Some(ValueRef::new(qn, 0)),
            Some(ValueRef::new(sc, 0)),
            Some(ValueRef::new(zc, 0)),
        ],
        vec![ty],
        format!("{name}_DequantizeLinear"),
    );
    for &(node, idx) in readers {
        g.set_input(node, idx, Some(ValueRef::new(dq, 0)));
    }
    Ok(())
}

//! 2-D convolution and pooling through linalg's named ops (`conv_2d_nchw_fchw`,
//! `depthwise_conv_2d_nchw_chw`, `conv_2d_ngchw_gfchw`, `pooling_nchw_max/sum`), with
//! padding as `tensor.pad` and the bias as the accumulator's initial value; 1×1
//! convolutions as matmuls.

use super::builder::{affine_map, elt, identity_map, tensor_type, Emitter, Init, Val};
use super::elementwise::neg_inf;
use super::layout::expand_to;
use super::EmitError;
use compc_ir::op::{Conv, Pool};
use compc_ir::{DType, Dim, NodeId, Shape, TensorType};

fn known(em: &Emitter, d: &Dim, what: &str) -> Result<u64, EmitError> {
    d.known()
        .ok_or_else(|| em.err(format!("{what} must be static for the mlir backend")))
}

fn pair(v: &[i64], default: i64) -> [i64; 2] {
    match v.len() {
        2 => [v[0], v[1]],
        _ => [default, default],
    }
}

/// `tensor.pad` of the two spatial dims of an NCHW tensor.
fn pad_spatial(
    em: &mut Emitter,
    x: &Val,
    lo: [i64; 2],
    hi: [i64; 2],
    value: &str,
) -> Result<Val, EmitError> {
    if lo == [0, 0] && hi == [0, 0] {
        return Ok(x.clone());
    }
    let d = x.dims().to_vec();
    let mut nd = d.clone();
    for i in 0..2 {
        let n = known(em, &d[2 + i], "spatial dims")?;
        nd[2 + i] = Dim::Known((n as i64 + lo[i] + hi[i]) as u64);
    }
    let to = TensorType::new(x.ty.dtype, Shape::Ranked(nd));
    if !em.options().gpu_kernels && x.ty.dtype == DType::F32 && value == "0.0" {
        return pad_into_interior(em, x, lo, &to);
    }
    let t = elt(x.ty.dtype);
    let c = em.op(format!("arith.constant {value} : {t}"));
    let i = [em.fresh(), em.fresh(), em.fresh(), em.fresh()];
    let ssa = em.op(format!(
        "tensor.pad {} low[0, 0, {}, {}] high[0, 0, {}, {}] {{\n  ^bb0({}: index, {}: index, {}: index, {}: index):\n    tensor.yield {c} : {t}\n  }} : {} to {}",
        x.ssa,
        lo[0],
        lo[1],
        hi[0],
        hi[1],
        i[0],
        i[1],
        i[2],
        i[3],
        x.mlir_type(),
        tensor_type(&to)
    ));
    Ok(Val { ssa, ty: to })
}

/// CPU: the padded tensor as a filled buffer whose interior is written by an element-wise
/// copy (`linalg.generic`) into a slice of it. Unlike `tensor.pad`, whose interior
/// bufferizes to a `memref.copy` (the generic strided `memrefCopy`, row by row), the copy
/// is vectorized by the element-wise schedule, and element-wise fusion folds the producer
/// (a BatchNorm, ReLU6, HardSwish) into it, so the producer writes the interior directly.
fn pad_into_interior(
    em: &mut Emitter,
    x: &Val,
    lo: [i64; 2],
    to: &TensorType,
) -> Result<Val, EmitError> {
    let full = em.filled(to, "0.0")?;
    let t = elt(x.ty.dtype);
    let mut sizes = Vec::new();
    for d in x.dims().to_vec() {
        sizes.push(em.dim_operand(&d)?);
    }
    let at = format!(
        "[0, 0, {}, {}] [{}] [1, 1, 1, 1]",
        lo[0],
        lo[1],
        sizes.join(", ")
    );
    let (xt, tt) = (x.mlir_type(), tensor_type(to));
    let slice = em.op(format!(
        "tensor.extract_slice {}{at} : {tt} to {xt}",
        full.ssa
    ));
    let slice = Val {
        ssa: slice,
        ty: x.ty.clone(),
    };
    let r = x.rank();
    let copied = em.generic(
        &[(x, identity_map(r))],
        &x.ty,
        identity_map(r),
        &vec!["parallel"; r],
        Init::Value(&slice),
        // `x + 0.0` with the zero read from the filled destination: an identity copy would
        // be erased before fusion, and a copy that ignores its destination gets a fresh
        // `tensor.empty` for it, which then bufferizes to a buffer of its own plus a
        // `memref.copy` into the interior again.
        |b, a| Ok(b.op(format!("arith.addf {}, {} : {t}", a[0], a[1]))),
    )?;
    let ssa = em.op(format!(
        "tensor.insert_slice {} into {}{at} : {xt} into {tt}",
        copied.ssa, full.ssa
    ));
    Ok(Val {
        ssa,
        ty: to.clone(),
    })
}

fn attrs(strides: [i64; 2], dilations: [i64; 2]) -> String {
    format!(
        "{{dilations = dense<[{}, {}]> : tensor<2xi64>, strides = dense<[{}, {}]> : tensor<2xi64>}}",
        dilations[0], dilations[1], strides[0], strides[1]
    )
}

/// A constant weight re-declared with other dims (same bytes): the depthwise filter
/// `[C, 1, kh, kw]` as `[C, kh, kw]`, the grouped one as `[G, F/G, C/G, kh, kw]`.
fn weight_as(em: &mut Emitter, id: NodeId, dims: &[u64]) -> Result<Val, EmitError> {
    let v =
        em.g.node(id)
            .input(1)
            .ok_or_else(|| em.err("the filter is missing"))?;
    let w =
        em.g.const_weight(v)
            .ok_or_else(|| em.err("grouped convolution needs a constant filter"))?;
    let bytes = w
        .bytes()
        .map_err(|e| em.err(format!("weight {}: {e}", w.name)))?
        .to_vec();
    let name = w.name.clone();
    Ok(em.prepared(&name, w.dtype, dims, bytes))
}

/// The accumulator of a convolution with `f` filters, of type `out` (filters in dim 1):
/// the bias broadcast over every other dim, else zeros.
fn accumulator(em: &mut Emitter, id: NodeId, f: u64, out: &TensorType) -> Result<Val, EmitError> {
    if em.g.node(id).input(2).is_none() {
        return em.filled(out, "0.0");
    }
    let b = em.input(id, 2)?;
    let mut dims = vec![Dim::Known(1); out.shape.dims().map_or(0, |d| d.len())];
    dims[1] = Dim::Known(f);
    let bk = expand_to(em, &b, &TensorType::new(DType::F32, Shape::Ranked(dims)))?;
    em.elementwise(&[&bk], out, |_, a| Ok(a[0].clone()))
}

pub fn conv(em: &mut Emitter, id: NodeId, c: &Conv) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    if x.rank() != 4 || out.dtype != DType::F32 {
        return Err(em.err("only 2-D f32 convolution is lowered"));
    }
    if c.auto_pad != "NOTSET" && c.auto_pad != "VALID" {
        return Err(em.err(format!("conv auto_pad={} is not lowered", c.auto_pad)));
    }
    let wty =
        em.g.node(id)
            .input(1)
            .and_then(|v| em.g.value_type(v).cloned())
            .ok_or_else(|| em.err("filter type unknown"))?;
    let wd: Vec<u64> = wty
        .shape
        .as_known()
        .ok_or_else(|| em.err("the filter shape must be static"))?;
    let (f, cg, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    let strides = pair(&c.strides, 1);
    let dil = pair(&c.dilations, 1);
    let p = if c.pads.len() == 4 {
        [c.pads[0], c.pads[1], c.pads[2], c.pads[3]]
    } else {
        [0; 4]
    };
    let xp = pad_spatial(em, &x, [p[0], p[1]], [p[2], p[3]], "0.0")?;
    let g = c.group as u64;
    let cin = known(em, &x.dims()[1], "channels")?;
    let t = tensor_type(&out);
    let const_filter =
        em.g.node(id)
            .input(1)
            .and_then(|v| em.g.const_weight(v))
            .is_some();
    // CPU only: the GPU backend keeps the convolution it was validated with.
    let cpu = !em.options().gpu_kernels;
    if cpu && g == 1 && kh == 1 && kw == 1 && strides == [1, 1] && p == [0; 4] && const_filter {
        return pointwise_conv(em, id, &x, [f, cin], &out);
    }
    let init = accumulator(em, id, f, &out)?;
    let mut at = attrs(strides, dil);
    if cpu && p != [0; 4] && const_filter {
        // The schedule may fuse the accumulator's producer (the bias broadcast) into the
        // register tiles: the other operands are a constant and the padded buffer, which
        // it does not fuse (an element-wise producer of the input would be recomputed per
        // tile).
        at = at.replacen('{', "{compc.fuse_init, ", 1);
        if g == 1
            && out
                .shape
                .dims()
                .is_some_and(|d| d[3].known().is_some_and(|w| w % 16 == 0))
        {
            // Rows a multiple of 16 wide: the schedule's 16-column tile fits exactly.
            at = at.replacen('{', "{compc.wide, ", 1);
        }
    }
    if g == 1 {
        let w = em.input(id, 1)?;
        let ssa = em.op(format!(
            "linalg.conv_2d_nchw_fchw {at} ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
            xp.ssa,
            w.ssa,
            xp.mlir_type(),
            w.mlir_type(),
            init.ssa
        ));
        return Ok(Val { ssa, ty: out });
    }
    if g == cin && cg == 1 && f == cin {
        let w = weight_as(em, id, &[f, kh, kw])?;
        let ssa = em.op(format!(
            "linalg.depthwise_conv_2d_nchw_chw {at} ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
            xp.ssa,
            w.ssa,
            xp.mlir_type(),
            w.mlir_type(),
            init.ssa
        ));
        return Ok(Val { ssa, ty: out });
    }
    // General groups: split channels into [G, C/G] and filters into [G, F/G].
    let xd = xp.dims().to_vec();
    let xg = expand_to(
        em,
        &xp,
        &TensorType::new(
            DType::F32,
            Shape::Ranked(vec![
                xd[0].clone(),
                Dim::Known(g),
                Dim::Known(cin / g),
                xd[2].clone(),
                xd[3].clone(),
            ]),
        ),
    )?;
    let w = weight_as(em, id, &[g, f / g, cg, kh, kw])?;
    let od = out.shape.dims().unwrap().to_vec();
    let og = TensorType::new(
        DType::F32,
        Shape::Ranked(vec![
            od[0].clone(),
            Dim::Known(g),
            Dim::Known(f / g),
            od[2].clone(),
            od[3].clone(),
        ]),
    );
    let init_g = expand_to(em, &init, &og)?;
    let tg = tensor_type(&og);
    let ssa = em.op(format!(
        "linalg.conv_2d_ngchw_gfchw {at} ins({}, {} : {}, {}) outs({} : {tg}) -> {tg}",
        xg.ssa,
        w.ssa,
        xg.mlir_type(),
        w.mlir_type(),
        init_g.ssa
    ));
    expand_to(em, &Val { ssa, ty: og }, &out)
}

/// A 1×1 convolution (stride 1, no padding) is a matmul per image: `Y[n] = W · X[n]` with
/// W `[F, C]` and X[n] `[C, H·W]`. Emitted as a `linalg.batch_matmul` broadcasting W, the
/// schedule register-tiles it like any matmul (rows of W × runs of contiguous pixels),
/// which the convolution's own loops (a 7-deep nest) do not get.
fn pointwise_conv(
    em: &mut Emitter,
    id: NodeId,
    x: &Val,
    [f, c]: [u64; 2],
    out: &TensorType,
) -> Result<Val, EmitError> {
    // [N, ch, H, W] viewed as [N, ch, H·W].
    let flat = |em: &Emitter, v: &Val, ch: u64| -> Result<TensorType, EmitError> {
        let d = v.dims();
        let hw = known(em, &d[2], "spatial dims")? * known(em, &d[3], "spatial dims")?;
        Ok(TensorType::new(
            DType::F32,
            Shape::Ranked(vec![d[0].clone(), Dim::Known(ch), Dim::Known(hw)]),
        ))
    };
    let x3 = flat(em, x, c)?;
    let f32_filter =
        em.g.node(id)
            .input(1)
            .and_then(|v| em.g.const_weight(v))
            .is_some_and(|w| w.dtype == DType::F32);
    if x3.shape.dims().is_some_and(|d| d[2] == Dim::Known(1)) && f32_filter {
        return pointwise_conv_1x1_map(em, id, x, [f, c], out);
    }
    let x3 = expand_to(em, x, &x3)?;
    let o3 = TensorType::new(
        DType::F32,
        Shape::Ranked(vec![
            x3.dims()[0].clone(),
            Dim::Known(f),
            x3.dims()[2].clone(),
        ]),
    );
    // Built in the matmul's own shape (no reshape between them), so the schedule can fuse
    // it into the register tiles (`compc.fuse_init`): the bias is written to a tile just
    // before the tile accumulates onto it, not in a pass of its own over the output.
    let init3 = accumulator(em, id, f, &o3)?;
    let w = weight_as(em, id, &[f, c])?;
    let maps = [
        affine_map(4, &["d1".into(), "d3".into()]),
        affine_map(4, &["d0".into(), "d3".into(), "d2".into()]),
        affine_map(4, &["d0".into(), "d1".into(), "d2".into()]),
    ];
    let t = tensor_type(&o3);
    let ssa = em.op(format!(
        "linalg.batch_matmul indexing_maps = [{}] {{compc.fuse_init}} ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
        maps.join(", "),
        w.ssa,
        x3.ssa,
        w.mlir_type(),
        x3.mlir_type(),
        init3.ssa
    ));
    expand_to(em, &Val { ssa, ty: o3 }, out)
}

/// A 1×1 convolution of 1×1 maps (a squeeze-excite projection): `Y = X · Wᵀ` with X
/// `[N, C]` and the filter transposed at compile time to `[C, F]`, so the matmul's vector
/// lanes run over the filters. As a per-image `[F, C] × [C, 1]` product every tile would
/// be one masked lane wide.
fn pointwise_conv_1x1_map(
    em: &mut Emitter,
    id: NodeId,
    x: &Val,
    [f, c]: [u64; 2],
    out: &TensorType,
) -> Result<Val, EmitError> {
    let n = x.dims()[0].clone();
    let x2 = TensorType::new(DType::F32, Shape::Ranked(vec![n.clone(), Dim::Known(c)]));
    let x2 = expand_to(em, x, &x2)?;
    let o2 = TensorType::new(DType::F32, Shape::Ranked(vec![n, Dim::Known(f)]));
    let init = accumulator(em, id, f, &o2)?;
    let wt = super::linear::transposed_constant(em, id, 1, [f, c])?
        .ok_or_else(|| em.err("the filter must be a constant f32 weight"))?;
    let ty = tensor_type(&o2);
    let ssa = em.op(format!(
        "linalg.matmul ins({}, {} : {}, {}) outs({} : {ty}) -> {ty}",
        x2.ssa,
        wt.ssa,
        x2.mlir_type(),
        wt.mlir_type(),
        init.ssa
    ));
    expand_to(em, &Val { ssa, ty: o2 }, out)
}

/// MaxPool / AveragePool over H, W. Ceil mode is handled by padding the high side up to
/// what the output size needs; the average divides by a per-position count computed at
/// compile time (padding counts only with `count_include_pad`, the ceil-mode overhang
/// never does, as in onnxruntime).
pub fn pool(em: &mut Emitter, id: NodeId, p: &Pool, is_max: bool) -> Result<Val, EmitError> {
    let x = em.input(id, 0)?;
    let out = em.out_type(id)?;
    if x.rank() != 4 || out.dtype != DType::F32 {
        return Err(em.err("only 2-D f32 pooling is lowered"));
    }
    if p.auto_pad != "NOTSET" && p.auto_pad != "VALID" {
        return Err(em.err(format!("pool auto_pad={} is not lowered", p.auto_pad)));
    }
    let k = pair(&p.kernel_shape, 1);
    let s = pair(&p.strides, 1);
    let d = pair(&p.dilations, 1);
    let pads = if p.pads.len() == 4 {
        [p.pads[0], p.pads[1], p.pads[2], p.pads[3]]
    } else {
        [0; 4]
    };
    let od = out.shape.dims().unwrap().to_vec();
    let mut hi = [0i64; 2];
    let mut in_hw = [0i64; 2];
    let mut out_hw = [0i64; 2];
    for i in 0..2 {
        let n = known(em, &x.dims()[2 + i], "spatial dims")? as i64;
        let o = known(em, &od[2 + i], "spatial dims")? as i64;
        let need = (o - 1) * s[i] + (k[i] - 1) * d[i] + 1;
        hi[i] = (need - n - pads[i]).max(pads[2 + i]);
        in_hw[i] = n;
        out_hw[i] = o;
    }
    let fill = if is_max { neg_inf() } else { "0.0".into() };
    let xp = pad_spatial(em, &x, [pads[0], pads[1]], hi, &fill)?;
    let win = em.empty(&TensorType::new(
        DType::F32,
        Shape::Ranked(vec![Dim::Known(k[0] as u64), Dim::Known(k[1] as u64)]),
    ))?;
    let init = em.filled(&out, &fill)?;
    let name = if is_max {
        "pooling_nchw_max"
    } else {
        "pooling_nchw_sum"
    };
    let t = tensor_type(&out);
    let ssa = em.op(format!(
        "linalg.{name} {} ins({}, {} : {}, {}) outs({} : {t}) -> {t}",
        attrs(s, d),
        xp.ssa,
        win.ssa,
        xp.mlir_type(),
        win.mlir_type(),
        init.ssa
    ));
    let pooled = Val {
        ssa,
        ty: out.clone(),
    };
    if is_max {
        return Ok(pooled);
    }
    // Divisor per output position.
    let mut div = Vec::with_capacity((out_hw[0] * out_hw[1]) as usize);
    for oh in 0..out_hw[0] {
        for ow in 0..out_hw[1] {
            let mut cnt = 0i64;
            for kh in 0..k[0] {
                for kw in 0..k[1] {
                    let ih = oh * s[0] + kh * d[0] - pads[0];
                    let iw = ow * s[1] + kw * d[1] - pads[1];
                    let inside = ih >= 0 && ih < in_hw[0] && iw >= 0 && iw < in_hw[1];
                    let in_pad = ih >= -pads[0]
                        && ih < in_hw[0] + pads[2]
                        && iw >= -pads[1]
                        && iw < in_hw[1] + pads[3];
                    if inside || (p.count_include_pad && in_pad) {
                        cnt += 1;
                    }
                }
            }
            div.push(1.0f32 / cnt.max(1) as f32);
        }
    }
    let dv = em.prepared(
        "pool.divisor",
        DType::F32,
        &[out_hw[0] as u64, out_hw[1] as u64],
        bytemuck::cast_slice(&div).to_vec(),
    );
    em.elementwise(&[&pooled, &dv], &out, |b, a| {
        Ok(b.op(format!("arith.mulf {}, {} : f32", a[0], a[1])))
    })
}

//! The emitter's state and the text-building helpers every op family uses: SSA names,
//! types, index constants, dynamic dims, `tensor.empty`, and `linalg.generic`.

use super::{EmitError, EmitOptions, MlirModule, OutputSpec, Param, ParamSource, ENTRY};
use compc_ir::{DType, Dim, Graph, NodeId, TensorType, ValueRef, WeightId};
use std::collections::HashMap;
use std::fmt::Write;

/// A lowered value: its SSA name and IR type.
#[derive(Clone, Debug)]
pub struct Val {
    pub ssa: String,
    pub ty: TensorType,
}

impl Val {
    pub fn dims(&self) -> &[Dim] {
        self.ty.shape.dims().unwrap_or(&[])
    }
    pub fn rank(&self) -> usize {
        self.dims().len()
    }
    pub fn mlir_type(&self) -> String {
        tensor_type(&self.ty)
    }
}

/// MLIR element type of a dtype (bool is `i1`; unsigned types are signless integers
/// whose ops choose the unsigned forms).
pub fn elt(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        DType::I64 | DType::U64 => "i64",
        DType::I32 | DType::U32 => "i32",
        DType::I16 | DType::U16 => "i16",
        DType::I8 | DType::U8 => "i8",
        DType::Bool => "i1",
        DType::I4 | DType::U4 => "i4",
        DType::Str => "!str",
    }
}

pub fn dims_type(dims: &[Dim], dt: DType) -> String {
    let mut s = String::from("tensor<");
    for d in dims {
        match d {
            Dim::Known(n) => write!(s, "{n}x").unwrap(),
            _ => s.push_str("?x"),
        }
    }
    s.push_str(elt(dt));
    s.push('>');
    s
}

pub fn tensor_type(ty: &TensorType) -> String {
    dims_type(ty.shape.dims().unwrap_or(&[]), ty.dtype)
}

/// An affine map over `rank` loop dims with the given result expressions.
pub fn affine_map(rank: usize, exprs: &[String]) -> String {
    let dims: Vec<String> = (0..rank).map(|i| format!("d{i}")).collect();
    format!(
        "affine_map<({}) -> ({})>",
        dims.join(", "),
        exprs.join(", ")
    )
}

/// The identity map over `rank` dims.
pub fn identity_map(rank: usize) -> String {
    let e: Vec<String> = (0..rank).map(|i| format!("d{i}")).collect();
    affine_map(rank, &e)
}

/// Map of an operand broadcast (numpy rules) against an output of rank `out_rank`:
/// operand dim i aligns with output dim `out_rank - rank + i`; a dim of 1 facing a
/// different output dim reads index 0.
pub fn broadcast_map(operand: &[Dim], out: &[Dim]) -> String {
    let off = out.len() - operand.len();
    let e: Vec<String> = operand
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if *d == Dim::Known(1) && out[off + i] != Dim::Known(1) {
                "0".to_string()
            } else {
                format!("d{}", off + i)
            }
        })
        .collect();
    affine_map(out.len(), &e)
}

/// A float literal written as its exact bit pattern.
pub fn float_lit(x: f32) -> String {
    format!("0x{:08X}", x.to_bits())
}

/// Builds a region body: fresh names, one line per op.
pub struct Body<'a> {
    next: &'a mut usize,
    pub lines: Vec<String>,
}

impl Body<'_> {
    /// Appends `%new = {rhs}` and returns `%new`.
    pub fn op(&mut self, rhs: impl AsRef<str>) -> String {
        *self.next += 1;
        let name = format!("%v{}", self.next);
        self.lines.push(format!("{name} = {}", rhs.as_ref()));
        name
    }
    /// A float constant of type `ty`.
    pub fn fconst(&mut self, x: f32, ty: &str) -> String {
        if ty == "f32" {
            self.op(format!("arith.constant {} : f32", float_lit(x)))
        } else {
            self.op(format!("arith.constant {x:e} : {ty}"))
        }
    }
    pub fn iconst(&mut self, x: i64, ty: &str) -> String {
        self.op(format!("arith.constant {x} : {ty}"))
    }
    pub fn index(&mut self, d: usize) -> String {
        self.op(format!("linalg.index {d} : index"))
    }
}

/// How a `linalg.generic`'s output starts.
pub enum Init<'a> {
    /// Uninitialised (every element is written).
    Empty,
    /// Filled with a scalar literal of the output element type (reductions).
    Fill(String),
    /// An existing tensor value (accumulate into it).
    Value(&'a Val),
}

pub struct Emitter<'g> {
    pub g: &'g Graph,
    /// The node being lowered, for messages.
    pub current: String,
    lines: Vec<String>,
    next: usize,
    vals: HashMap<ValueRef, Val>,
    syms: HashMap<String, String>,
    index_consts: HashMap<i64, String>,
    params: Vec<Param>,
    weight_params: HashMap<WeightId, String>,
    /// Prepared parameters by name, so that a weight several nodes read (layers shared
    /// by `share-layers`, a tied embedding) is prepared and stored once.
    prepared_params: HashMap<String, Vec<usize>>,
    options: EmitOptions,
    /// Private functions the module needs besides `@main` (hand-written GPU kernels),
    /// by name.
    helpers: std::collections::BTreeMap<String, String>,
}

impl<'g> Emitter<'g> {
    pub fn new(g: &'g Graph, options: EmitOptions) -> Self {
        Emitter {
            options,
            helpers: Default::default(),
            g,
            current: String::new(),
            lines: Vec::new(),
            next: 0,
            vals: HashMap::new(),
            syms: HashMap::new(),
            index_consts: HashMap::new(),
            params: Vec::new(),
            weight_params: HashMap::new(),
            prepared_params: HashMap::new(),
        }
    }

    pub fn options(&self) -> EmitOptions {
        self.options
    }

    /// Adds the private function `name` (its text from `text`) unless already there.
    pub fn add_helper(&mut self, name: String, text: impl FnOnce() -> String) {
        self.helpers.entry(name).or_insert_with(text);
    }

    pub fn err(&self, msg: impl Into<String>) -> EmitError {
        EmitError::Node {
            node: self.current.clone(),
            msg: msg.into(),
        }
    }

    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    /// Appends `%new = {rhs}` to the function body.
    pub fn op(&mut self, rhs: impl AsRef<str>) -> String {
        let name = self.fresh();
        self.lines.push(format!("{name} = {}", rhs.as_ref()));
        name
    }

    /// An op without results (a call into a helper that writes its out-argument).
    pub fn op_void(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    pub fn bind(&mut self, v: ValueRef, val: Val) {
        self.vals.insert(v, val);
    }

    pub fn value(&self, v: ValueRef) -> Result<Val, EmitError> {
        self.vals
            .get(&v)
            .cloned()
            .ok_or_else(|| self.err(format!("input {v:?} was not lowered")))
    }

    /// Input `i` of node `id` as a lowered tensor.
    pub fn input(&self, id: NodeId, i: usize) -> Result<Val, EmitError> {
        let v = self
            .g
            .node(id)
            .input(i)
            .ok_or_else(|| self.err(format!("input {i} is missing")))?;
        self.value(v)
    }

    /// The output type of node `id` (slot 0), which must be ranked.
    pub fn out_type(&self, id: NodeId) -> Result<TensorType, EmitError> {
        let ty = self.g.node(id).outputs[0].clone();
        if ty.shape.dims().is_none() {
            return Err(self.err("the output shape is unknown"));
        }
        Ok(ty)
    }

    /// Input `i` of node `id` as compile-time integers, if it is a constant.
    pub fn const_i64(&self, id: NodeId, i: usize) -> Option<Vec<i64>> {
        let v = self.g.node(id).input(i)?;
        self.g.const_weight(v)?.to_i64_vec().ok()
    }

    pub fn const_f32(&self, id: NodeId, i: usize) -> Option<Vec<f32>> {
        let v = self.g.node(id).input(i)?;
        self.g.const_weight(v)?.to_f32_vec().ok()
    }

    pub fn add_param(&mut self, p: Param) -> String {
        let name = format!("%arg{}", self.params.len());
        self.params.push(p);
        name
    }

    /// A parameter holding derived bytes.
    pub fn prepared(&mut self, name: &str, dtype: DType, dims: &[u64], bytes: Vec<u8>) -> Val {
        let dims: Vec<Dim> = dims.iter().map(|&d| Dim::Known(d)).collect();
        let ty = TensorType::new(dtype, compc_ir::Shape::Ranked(dims.clone()));
        // The same name with the same type and bytes is the same parameter (names alone
        // need not be unique: a weight without a name gives an empty prefix).
        let same = |p: &Param| {
            p.dtype == dtype
                && p.dims == dims
                && matches!(&p.source, ParamSource::Prepared(b) if **b == bytes[..])
        };
        if let Some(&i) = self
            .prepared_params
            .get(name)
            .and_then(|ids| ids.iter().find(|&&i| same(&self.params[i])))
        {
            return Val {
                ssa: format!("%arg{i}"),
                ty,
            };
        }
        self.prepared_params
            .entry(name.to_string())
            .or_default()
            .push(self.params.len());
        let ssa = self.add_param(Param {
            name: name.to_string(),
            dtype,
            dims,
            source: ParamSource::Prepared(bytes.into()),
        });
        Val { ssa, ty }
    }

    /// A weight as a value: inline when small, else a function argument (one per weight,
    /// however many nodes read it).
    pub fn constant(&mut self, wid: WeightId) -> Result<Val, EmitError> {
        let w = self.g.weights.get(wid);
        let dims: Vec<Dim> = w.dims.iter().map(|&d| Dim::Known(d)).collect();
        let ty = TensorType::new(w.dtype, compc_ir::Shape::Ranked(dims.clone()));
        if w.numel() <= self.options.inline_limit && !w.dtype.is_packed() {
            let bytes = w
                .bytes()
                .map_err(|e| self.err(format!("weight {}: {e}", w.name)))?;
            let lit = if w.dtype == DType::Bool {
                let items: Vec<&str> = bytes
                    .iter()
                    .map(|&b| if b != 0 { "true" } else { "false" })
                    .collect();
                if dims.is_empty() {
                    items.first().copied().unwrap_or("false").to_string()
                } else {
                    format!("[{}]", items.join(", "))
                }
            } else {
                let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                format!("\"0x{hex}\"")
            };
            let t = tensor_type(&ty);
            let ssa = self.op(format!("arith.constant dense<{lit}> : {t}"));
            return Ok(Val { ssa, ty });
        }
        if let Some(ssa) = self.weight_params.get(&wid) {
            return Ok(Val {
                ssa: ssa.clone(),
                ty,
            });
        }
        let ssa = self.add_param(Param {
            name: w.name.clone(),
            dtype: w.dtype,
            dims,
            source: ParamSource::Weight(wid),
        });
        self.weight_params.insert(wid, ssa.clone());
        Ok(Val { ssa, ty })
    }

    /// An `index` constant (deduplicated).
    pub fn cidx(&mut self, n: i64) -> String {
        if let Some(s) = self.index_consts.get(&n) {
            return s.clone();
        }
        let s = self.op(format!("arith.constant {n} : index"));
        self.index_consts.insert(n, s.clone());
        s
    }

    /// Reads every symbolic dim of the graph inputs once, at the top of the function.
    pub fn bind_input_symbols(&mut self) -> Result<(), EmitError> {
        for p in 0..self.params.len() {
            let dims = self.params[p].dims.clone();
            let ty = dims_type(&dims, self.params[p].dtype);
            for (i, d) in dims.iter().enumerate() {
                if let Dim::Sym(s) = d {
                    if !self.syms.contains_key(s) {
                        let c = self.cidx(i as i64);
                        let v = self.op(format!("tensor.dim %arg{p}, {c} : {ty}"));
                        self.syms.insert(s.clone(), v);
                    }
                }
            }
        }
        Ok(())
    }

    /// The run-time value of a dim as an `index` SSA value.
    pub fn dim_value(&mut self, d: &Dim) -> Result<String, EmitError> {
        match d {
            Dim::Known(n) => Ok(self.cidx(*n as i64)),
            Dim::Sym(s) => {
                if let Some(v) = self.syms.get(s) {
                    return Ok(v.clone());
                }
                if !s.contains('*') {
                    return Err(self.err(format!(
                        "dim {{{s}}} is not a dim of any graph input, so its value is unknown here"
                    )));
                }
                // A product of symbols (a collapsed `batch*seq`): multiply once, reuse.
                let mut acc: Option<String> = None;
                for part in s.split('*') {
                    let v = match part.parse::<i64>() {
                        Ok(n) => self.cidx(n),
                        Err(_) => self.dim_value(&Dim::Sym(part.to_string()))?,
                    };
                    acc = Some(match acc {
                        None => v,
                        Some(a) => self.op(format!("arith.muli {a}, {v} : index")),
                    });
                }
                let v = acc.unwrap();
                self.syms.insert(s.clone(), v.clone());
                Ok(v)
            }
            Dim::Unknown => Err(self.err("a dim is unknown (shape inference left it open)")),
        }
    }

    /// A dim as an operand of a mixed static/dynamic list (`4` or `%v3`).
    pub fn dim_operand(&mut self, d: &Dim) -> Result<String, EmitError> {
        match d {
            Dim::Known(n) => Ok(n.to_string()),
            _ => self.dim_value(d),
        }
    }

    /// `tensor.empty` of a type, with its dynamic dims.
    pub fn empty(&mut self, ty: &TensorType) -> Result<Val, EmitError> {
        let dims = ty.shape.dims().unwrap_or(&[]).to_vec();
        let mut dyn_ops = Vec::new();
        for d in &dims {
            if !matches!(d, Dim::Known(_)) {
                dyn_ops.push(self.dim_value(d)?);
            }
        }
        let t = tensor_type(ty);
        let ssa = self.op(format!("tensor.empty({}) : {t}", dyn_ops.join(", ")));
        Ok(Val {
            ssa,
            ty: ty.clone(),
        })
    }

    /// `linalg.fill` of a fresh tensor with a scalar literal.
    pub fn filled(&mut self, ty: &TensorType, lit: &str) -> Result<Val, EmitError> {
        let e = self.empty(ty)?;
        let et = elt(ty.dtype);
        let c = self.op(format!("arith.constant {lit} : {et}"));
        let t = tensor_type(ty);
        let ssa = self.op(format!(
            "linalg.fill ins({c} : {et}) outs({} : {t}) -> {t}",
            e.ssa
        ));
        Ok(Val {
            ssa,
            ty: ty.clone(),
        })
    }

    /// A `linalg.generic` over `iters` loop dims. `ins` pairs each operand with its map;
    /// the body gets the block arguments (inputs, then the output's current value) and
    /// returns the yielded value.
    pub fn generic(
        &mut self,
        ins: &[(&Val, String)],
        out_ty: &TensorType,
        out_map: String,
        iters: &[&str],
        init: Init,
        body: impl FnOnce(&mut Body, &[String]) -> Result<String, EmitError>,
    ) -> Result<Val, EmitError> {
        let init_val = match init {
            Init::Empty => self.empty(out_ty)?,
            Init::Fill(lit) => self.filled(out_ty, &lit)?,
            Init::Value(v) => v.clone(),
        };
        let mut maps: Vec<String> = ins.iter().map(|(_, m)| m.clone()).collect();
        maps.push(out_map);
        let mut args = Vec::new();
        let mut arg_decls = Vec::new();
        for (v, _) in ins {
            let a = self.fresh();
            arg_decls.push(format!("{a}: {}", elt(v.ty.dtype)));
            args.push(a);
        }
        let oa = self.fresh();
        arg_decls.push(format!("{oa}: {}", elt(out_ty.dtype)));
        args.push(oa);

        let mut b = Body {
            next: &mut self.next,
            lines: Vec::new(),
        };
        let y = body(&mut b, &args)?;
        let body_lines = std::mem::take(&mut b.lines);

        let iter_list: Vec<String> = iters.iter().map(|s| format!("\"{s}\"")).collect();
        let out_t = tensor_type(out_ty);
        let ins_part = if ins.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = ins.iter().map(|(v, _)| v.ssa.as_str()).collect();
            let types: Vec<String> = ins.iter().map(|(v, _)| v.mlir_type()).collect();
            format!("ins({} : {}) ", names.join(", "), types.join(", "))
        };
        let mut text = format!(
            "linalg.generic {{indexing_maps = [{}], iterator_types = [{}]}} {ins_part}outs({} : {out_t}) {{\n  ^bb0({}):\n",
            maps.join(", "),
            iter_list.join(", "),
            init_val.ssa,
            arg_decls.join(", ")
        );
        for l in body_lines {
            writeln!(text, "    {l}").unwrap();
        }
        write!(
            text,
            "    linalg.yield {y} : {}\n  }} -> {out_t}",
            elt(out_ty.dtype)
        )
        .unwrap();
        let ssa = self.op(text);
        Ok(Val {
            ssa,
            ty: out_ty.clone(),
        })
    }

    /// An element-wise `linalg.generic` whose operands broadcast against `out_ty`.
    pub fn elementwise(
        &mut self,
        ins: &[&Val],
        out_ty: &TensorType,
        body: impl FnOnce(&mut Body, &[String]) -> Result<String, EmitError>,
    ) -> Result<Val, EmitError> {
        let out_dims = out_ty.shape.dims().unwrap_or(&[]).to_vec();
        for v in ins {
            if v.rank() > out_dims.len() {
                return Err(self.err("an operand has a higher rank than the result"));
            }
        }
        let pairs: Vec<(&Val, String)> = ins
            .iter()
            .map(|v| (*v, broadcast_map(v.dims(), &out_dims)))
            .collect();
        let iters = vec!["parallel"; out_dims.len()];
        self.generic(
            &pairs,
            out_ty,
            identity_map(out_dims.len()),
            &iters,
            Init::Empty,
            body,
        )
    }

    pub fn finish(self, results: &[Val], outputs: Vec<OutputSpec>) -> MlirModule {
        // A weight whose readers all lowered a prepared copy of it (a convolution's
        // folded or re-laid-out kernel, a panelled matmul weight) is read by nothing, yet
        // would be stored in weights.bin: such parameters are dropped and the rest
        // renumbered. Graph inputs stay, whatever reads them: they are the call's contract.
        let mut used = vec![false; self.params.len()];
        for text in self
            .lines
            .iter()
            .map(String::as_str)
            .chain(results.iter().map(|v| v.ssa.as_str()))
        {
            map_args(text, |i| {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
                None
            });
        }
        let mut renumber = vec![None; self.params.len()];
        let mut params = Vec::new();
        for (i, p) in self.params.into_iter().enumerate() {
            if used[i] || matches!(p.source, ParamSource::Input(_)) {
                renumber[i] = Some(params.len());
                params.push(p);
            }
        }
        let lines: Vec<String> = self
            .lines
            .iter()
            .map(|l| map_args(l, |n| renumber.get(n).copied().flatten()))
            .collect();
        let results: Vec<Val> = results
            .iter()
            .map(|v| Val {
                ssa: map_args(&v.ssa, |n| renumber.get(n).copied().flatten()),
                ty: v.ty.clone(),
            })
            .collect();
        let mut text = String::from("module {\n");
        let args: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, p)| format!("%arg{i}: {}", dims_type(&p.dims, p.dtype)))
            .collect();
        let res_types: Vec<String> = results.iter().map(|v| v.mlir_type()).collect();
        writeln!(
            text,
            "  func.func @{ENTRY}({}) -> ({}) attributes {{llvm.emit_c_interface}} {{",
            args.join(", "),
            res_types.join(", ")
        )
        .unwrap();
        for l in &lines {
            for sub in l.lines() {
                writeln!(text, "    {sub}").unwrap();
            }
        }
        let names: Vec<&str> = results.iter().map(|v| v.ssa.as_str()).collect();
        writeln!(
            text,
            "    return {} : {}",
            names.join(", "),
            res_types.join(", ")
        )
        .unwrap();
        text.push_str("  }\n");
        for h in self.helpers.values() {
            for sub in h.lines() {
                writeln!(text, "  {sub}").unwrap();
            }
        }
        text.push_str("}\n");
        MlirModule {
            text,
            params,
            outputs,
        }
    }
}

/// `text` with every `%argN` replaced by `%argM`, M = `f(N)`, or left as it is where `f`
/// gives `None` (a scan that only records the N returns `None` throughout).
fn map_args(text: &str, mut f: impl FnMut(usize) -> Option<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("%arg") {
        out.push_str(&rest[..at + 4]);
        let digits: String = rest[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        match digits.parse::<usize>().ok().and_then(&mut f) {
            Some(m) => out.push_str(&m.to_string()),
            None => out.push_str(&digits),
        }
        rest = &rest[at + 4 + digits.len()..];
    }
    out.push_str(rest);
    out
}

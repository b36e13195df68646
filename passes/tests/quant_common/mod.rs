//! Helpers shared by the `quant_*` tests: a deterministic generator and small graphs
//! built in code.

#![allow(dead_code)]

use compc_ir::op::{BinaryOp, Gemm, UnaryOp};
use compc_ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
use compc_passes::{CalibData, PassContext, PassManager, PassRecord, Registry};
use compc_runtime::Tensor;

/// Deterministic pseudo-random numbers.
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }

    /// Roughly normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.next()).sum::<f32>() * 0.866
    }
}

pub fn batch_dims(k: u64) -> TensorType {
    TensorType::new(
        DType::F32,
        Shape::Ranked(vec![Dim::Sym("batch".into()), Dim::Known(k)]),
    )
}

fn konst(g: &mut Graph, name: &str, dims: Vec<u64>, v: &[f32]) -> ValueRef {
    ValueRef::new(g.add_const(Weight::from_f32(name, dims, v).unwrap()), 0)
}

/// `y = relu(x·W1 + b1)·W2` with W1 [k, h] and W2 [h, n] (ONNX MatMul layout).
pub fn mlp(rng: &mut Lcg, k: u64, h: u64, n: u64) -> Graph {
    let mut g = Graph::new("mlp");
    g.opsets.insert(String::new(), 17);
    let x = ValueRef::new(g.add_input("x", batch_dims(k)), 0);
    let w1 = konst(
        &mut g,
        "fc1.weight",
        vec![k, h],
        &rng.vec((k * h) as usize, 0.3),
    );
    let b1 = konst(&mut g, "fc1.bias", vec![h], &rng.vec(h as usize, 0.1));
    let w2 = konst(
        &mut g,
        "fc2.weight",
        vec![h, n],
        &rng.vec((h * n) as usize, 0.3),
    );
    let m1 = g.add_node(
        Op::MatMul,
        vec![Some(x), Some(w1)],
        vec![batch_dims(h)],
        "fc1",
    );
    let a1 = g.add_node(
        Op::Binary(BinaryOp::Add),
        vec![Some(ValueRef::new(m1, 0)), Some(b1)],
        vec![batch_dims(h)],
        "fc1_bias",
    );
    let r = g.add_node(
        Op::Unary(UnaryOp::Relu),
        vec![Some(ValueRef::new(a1, 0))],
        vec![batch_dims(h)],
        "relu",
    );
    let m2 = g.add_node(
        Op::MatMul,
        vec![Some(ValueRef::new(r, 0)), Some(w2)],
        vec![batch_dims(n)],
        "fc2",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: ValueRef::new(m2, 0),
    });
    g
}

/// `y = Gemm(x, W, b)` with W stored [n, k] (transB = 1).
pub fn gemm(rng: &mut Lcg, k: u64, n: u64) -> Graph {
    let mut g = Graph::new("gemm");
    g.opsets.insert(String::new(), 17);
    let x = ValueRef::new(g.add_input("x", batch_dims(k)), 0);
    let w = konst(
        &mut g,
        "fc.weight",
        vec![n, k],
        &rng.vec((k * n) as usize, 0.3),
    );
    let b = konst(&mut g, "fc.bias", vec![n], &rng.vec(n as usize, 0.1));
    let op = Op::Gemm(Gemm {
        trans_b: true,
        ..Gemm::default()
    });
    let m = g.add_node(
        op,
        vec![Some(x), Some(w), Some(b)],
        vec![batch_dims(n)],
        "fc",
    );
    g.outputs.push(GraphOutput {
        name: "y".into(),
        value: ValueRef::new(m, 0),
    });
    g
}

/// Random float inputs for every input of `g` (symbolic dims = `batch`).
pub fn inputs(g: &Graph, rng: &mut Lcg, batch: usize) -> Vec<(String, Tensor)> {
    g.inputs()
        .iter()
        .map(|&id| {
            let node = g.node(id);
            let dims: Vec<usize> = node.outputs[0]
                .shape
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.known().map_or(batch, |k| k as usize))
                .collect();
            let n: usize = dims.iter().product();
            (
                node.name.clone(),
                Tensor::from_f32(dims, (0..n).map(|_| rng.normal()).collect()),
            )
        })
        .collect()
}

pub fn calib(g: &Graph, rng: &mut Lcg, samples: usize) -> CalibData {
    CalibData {
        tensors: inputs(g, rng, samples),
    }
}

/// Runs `pipeline` on a copy of `g`.
pub fn run_pipeline(
    g: &Graph,
    pipeline: &str,
    calib: Option<&CalibData>,
) -> Result<(Graph, compc_passes::Ledger), String> {
    let passes = Registry::with_builtin_passes().parse(pipeline)?;
    let mut out = g.clone();
    let mut pm = PassManager::new(passes);
    pm.calib = calib;
    let ledger = pm.run(&mut out).map_err(|e| e.to_string())?;
    Ok((out, ledger))
}

/// Runs one pass directly (errors as the pass reports them).
pub fn run_quant(
    g: &mut Graph,
    options: &str,
    calib: Option<&CalibData>,
) -> Result<PassRecord, String> {
    let reg = Registry::with_builtin_passes();
    let pipe = if options.is_empty() {
        "quant".to_string()
    } else {
        format!("quant{{{options}}}")
    };
    let mut cps = reg.parse(&pipe)?;
    let cp = cps.remove(0);
    let mut cx = PassContext::new();
    cx.calib = calib;
    cp.pass.run(g, &mut cx).map_err(|e| e.to_string())?;
    Ok(cx.record)
}

pub fn run(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<f32> {
    compc_runtime::run(g, inputs).unwrap()[0].1.to_f32_vec()
}

/// Ops in the graph by text name.
pub fn count_ops(g: &Graph, name: &str) -> usize {
    g.node_ids()
        .filter(|&id| g.node(id).op.name() == name)
        .count()
}

//! Soundness of every `egraph-opt` rule on random data: for each rule a small graph that
//! exercises it (random weights, several sizes for the symbolic dims) is run through the
//! pass with only the rule's family, the rule must fire and change the graph, the result
//! must verify, and the reference runtime must give the same outputs before and after.

use compc_ir::{DType, Dim, Graph};
use compc_passes::{LedgerEntry, PassManager, Registry};
use compc_runtime::Tensor;

/// xorshift: repeatable random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Replaces `RAND(2x4)` by a random dense literal of that shape and `POS(4)` by one of
/// positive values (variances, divisors).
fn fill(template: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    loop {
        let next = ["RAND(", "POS("]
            .iter()
            .filter_map(|k| rest.find(k).map(|i| (i, *k)))
            .min();
        let Some((i, key)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        let after = &rest[i + key.len()..];
        let close = after.find(')').expect("closed placeholder");
        let n: usize = after[..close]
            .split('x')
            .map(|d| d.parse::<usize>().expect("a dim"))
            .product();
        let vals: Vec<String> = (0..n)
            .map(|_| {
                let v = rng.f();
                let v = if key == "POS(" { v.abs() + 0.5 } else { v };
                format!("{v:?}")
            })
            .collect();
        out.push_str(&format!("dense<[{}]>", vals.join(", ")));
        rest = &after[close + 1..];
    }
}

fn inputs(g: &Graph, sym: usize, rng: &mut Rng) -> Vec<(String, Tensor)> {
    g.inputs()
        .iter()
        .map(|&id| {
            let node = g.node(id);
            let ty = &node.outputs[0];
            let dims: Vec<usize> = ty
                .shape
                .dims()
                .expect("ranked inputs")
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n as usize,
                    _ => sym,
                })
                .collect();
            let n: usize = dims.iter().product();
            let t = match ty.dtype {
                DType::F32 => Tensor::from_f32(dims, (0..n).map(|_| rng.f() * 3.0).collect()),
                dt => Tensor::from_i64_as(
                    dt,
                    dims,
                    (0..n).map(|_| (rng.next() % 200) as i64 - 100).collect(),
                )
                .expect("an integer input"),
            };
            (node.name.clone(), t)
        })
        .collect()
}

fn run_pass(g: &mut Graph, family: &str) -> LedgerEntry {
    let passes = Registry::with_builtin_passes()
        .parse(&format!("egraph-opt{{rules={family}}}"))
        .unwrap();
    let ledger = PassManager::new(passes).run(g).unwrap();
    ledger.passes.into_iter().next().unwrap()
}

fn close(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Result<(), String> {
    for ((name, x), (_, y)) in a.iter().zip(b) {
        if x.shape() != y.shape() || x.dtype() != y.dtype() {
            return Err(format!("{name}: {:?} vs {:?}", x.shape(), y.shape()));
        }
        for (p, q) in x.to_f32_vec().iter().zip(y.to_f32_vec()) {
            if (p - q).abs() > 1e-5 * (1.0 + p.abs()) {
                return Err(format!("{name}: {p} became {q}"));
            }
        }
    }
    Ok(())
}

/// (rule, family, graph template)
const CASES: &[(&str, &str, &str)] = &[
    (
        "transpose-transpose",
        "shape",
        r#"
graph @g(%x: tensor<{b}x3x4x5xf32>) -> (y: tensor<5x{b}x4x3xf32>) {
  %0 = "transpose"(%x) {perm = [0, 2, 3, 1]} : (tensor<{b}x3x4x5xf32>) -> tensor<{b}x4x5x3xf32>
  %1 = "transpose"(%0) {perm = [2, 0, 1, 3]} : (tensor<{b}x4x5x3xf32>) -> tensor<5x{b}x4x3xf32>
  return %1
}"#,
    ),
    (
        "transpose-identity",
        "shape",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %0 = "transpose"(%x) {perm = [0, 1]} : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  %1 = "relu"(%0) : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  return %1
}"#,
    ),
    (
        "reshape-same",
        "shape",
        r#"
graph @g(%x: tensor<{b}x6xf32>) -> (y: tensor<{b}x6xf32>) {
  %s = "const"() {value = dense<[-1, 6]>} : () -> tensor<2xi64>
  %0 = "reshape"(%x, %s) : (tensor<{b}x6xf32>, tensor<2xi64>) -> tensor<{b}x6xf32>
  %1 = "exp"(%0) : (tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  return %1
}"#,
    ),
    (
        "reshape-chain",
        "shape",
        r#"
graph @g(%x: tensor<{b}x6xf32>) -> (y: tensor<{b}x2x3xf32>) {
  %0 = "unsqueeze"(%x) {axes = [1]} : (tensor<{b}x6xf32>) -> tensor<{b}x1x6xf32>
  %s = "const"() {value = dense<[-1, 2, 3]>} : () -> tensor<3xi64>
  %1 = "reshape"(%0, %s) : (tensor<{b}x1x6xf32>, tensor<3xi64>) -> tensor<{b}x2x3xf32>
  return %1
}"#,
    ),
    (
        "reshape-static",
        "shape",
        r#"
graph @g(%x: tensor<{b}x{s}x6xf32>) -> (y: tensor<{b}x{s}x2x3xf32>) {
  %i = "const"() {value = dense<[0, 1]>} : () -> tensor<2xi64>
  %t = "const"() {value = dense<[2, 3]>} : () -> tensor<2xi64>
  %0 = "shape"(%x) : (tensor<{b}x{s}x6xf32>) -> tensor<3xi64>
  %1 = "gather"(%0, %i) : (tensor<3xi64>, tensor<2xi64>) -> tensor<2xi64>
  %2 = "concat"(%1, %t) {axis = 0} : (tensor<2xi64>, tensor<2xi64>) -> tensor<4xi64>
  %3 = "reshape"(%x, %2) : (tensor<{b}x{s}x6xf32>, tensor<4xi64>) -> tensor<{b}x{s}x2x3xf32>
  return %3
}"#,
    ),
    (
        "shape-slice",
        "shape",
        r#"
graph @g(%x: tensor<{b}x{s}x6xf32>) -> (y: tensor<1xi64>, z: tensor<1xi64>) {
  %i = "const"() {value = dense<[1]>} : () -> tensor<i64>
  %j = "const"() {value = dense<[-1]>} : () -> tensor<1xi64>
  %0 = "shape"(%x) : (tensor<{b}x{s}x6xf32>) -> tensor<3xi64>
  %1 = "gather"(%0, %i) : (tensor<3xi64>, tensor<i64>) -> tensor<i64>
  %2 = "unsqueeze"(%1) {axes = [0]} : (tensor<i64>) -> tensor<1xi64>
  %3 = "shape"(%x) {end = 2} : (tensor<{b}x{s}x6xf32>) -> tensor<2xi64>
  %4 = "gather"(%3, %j) : (tensor<2xi64>, tensor<1xi64>) -> tensor<1xi64>
  return %2, %4
}"#,
    ),
    (
        "binary-neutral",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %one = "const"() {value = dense<[[1.0, 1.0, 1.0]]>} : () -> tensor<1x3xf32>
  %zero = "const"() {value = dense<[0.0]>} : () -> tensor<f32>
  %0 = "mul"(%x, %one) : (tensor<{b}x3xf32>, tensor<1x3xf32>) -> tensor<{b}x3xf32>
  %1 = "sub"(%0, %zero) : (tensor<{b}x3xf32>, tensor<f32>) -> tensor<{b}x3xf32>
  %2 = "pow"(%1, %one) : (tensor<{b}x3xf32>, tensor<1x3xf32>) -> tensor<{b}x3xf32>
  return %2
}"#,
    ),
    (
        "cast-same-type",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %0 = "cast"(%x) {to = f32} : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  %1 = "cast_like"(%0, %x) : (tensor<{b}x3xf32>, tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  return %1
}"#,
    ),
    (
        "expand-same-shape",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %s = "const"() {value = dense<[3]>} : () -> tensor<1xi64>
  %0 = "expand"(%x, %s) : (tensor<{b}x3xf32>, tensor<1xi64>) -> tensor<{b}x3xf32>
  return %0
}"#,
    ),
    (
        "identity-op",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %0 = "identity"(%x) : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  %1 = "dropout"(%0) : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  return %1
}"#,
    ),
    (
        "concat-single",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %0 = "concat"(%x) {axis = 0} : (tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  return %0
}"#,
    ),
    (
        "slice-everything",
        "identity",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %st = "const"() {value = dense<[0, 0]>} : () -> tensor<2xi64>
  %en = "const"() {value = dense<[9223372036854775807, 3]>} : () -> tensor<2xi64>
  %0 = "slice"(%x, %st, %en) : (tensor<{b}x3xf32>, tensor<2xi64>, tensor<2xi64>) -> tensor<{b}x3xf32>
  return %0
}"#,
    ),
    (
        "quantize-dequantize",
        "quant",
        r#"
graph @g(%q: tensor<{b}x4xi8>) -> (y: tensor<{b}x4xi8>) {
  %s = "const"() {value = dense<[0.013, 0.2, 0.05, 1.7]>} : () -> tensor<4xf32>
  %z = "const"() {value = dense<[3, -2, 0, 7]>} : () -> tensor<4xi8>
  %0 = "dequantize_linear"(%q, %s, %z) : (tensor<{b}x4xi8>, tensor<4xf32>, tensor<4xi8>) -> tensor<{b}x4xf32>
  %1 = "quantize_linear"(%0, %s, %z) : (tensor<{b}x4xf32>, tensor<4xf32>, tensor<4xi8>) -> tensor<{b}x4xi8>
  return %1
}"#,
    ),
    (
        "matmul-scale-out",
        "scale",
        r#"
graph @g(%x: tensor<{b}x{s}x8xf32>) -> (y: tensor<{b}x{s}x6xf32>) {
  %w = "const"() {value = RAND(8x6)} : () -> tensor<8x6xf32>
  %c = "const"() {value = RAND(1x1x6)} : () -> tensor<1x1x6xf32>
  %0 = "matmul"(%x, %w) : (tensor<{b}x{s}x8xf32>, tensor<8x6xf32>) -> tensor<{b}x{s}x6xf32>
  %1 = "mul"(%c, %0) : (tensor<1x1x6xf32>, tensor<{b}x{s}x6xf32>) -> tensor<{b}x{s}x6xf32>
  return %1
}"#,
    ),
    (
        "matmul-scale-in",
        "scale",
        r#"
graph @g(%x: tensor<{b}x8xf32>) -> (y: tensor<{b}x6xf32>) {
  %w = "const"() {value = RAND(8x6)} : () -> tensor<8x6xf32>
  %c = "const"() {value = POS(8)} : () -> tensor<8xf32>
  %0 = "div"(%x, %c) : (tensor<{b}x8xf32>, tensor<8xf32>) -> tensor<{b}x8xf32>
  %1 = "matmul"(%0, %w) : (tensor<{b}x8xf32>, tensor<8x6xf32>) -> tensor<{b}x6xf32>
  return %1
}"#,
    ),
    (
        "conv-scale-out",
        "scale",
        r#"
graph @g(%x: tensor<{b}x2x5x5xf32>) -> (y: tensor<{b}x3x3x3xf32>) {
  %w = "const"() {value = RAND(3x2x3x3)} : () -> tensor<3x2x3x3xf32>
  %c = "const"() {value = RAND(1x3x1x1)} : () -> tensor<1x3x1x1xf32>
  %0 = "conv"(%x, %w) : (tensor<{b}x2x5x5xf32>, tensor<3x2x3x3xf32>) -> tensor<{b}x3x3x3xf32>
  %1 = "mul"(%0, %c) : (tensor<{b}x3x3x3xf32>, tensor<1x3x1x1xf32>) -> tensor<{b}x3x3x3xf32>
  return %1
}"#,
    ),
    (
        "scalar-toward-weights",
        "scalar+scale",
        r#"
graph @g(%x: tensor<{b}x{s}x8xf32>, %k: tensor<{b}x2x4x{s}xf32>) -> (y: tensor<{b}x2x{s}x{s}xf32>) {
  %w = "const"() {value = RAND(8x8)} : () -> tensor<8x8xf32>
  %bias = "const"() {value = RAND(8)} : () -> tensor<8xf32>
  %shape = "const"() {value = dense<[0, 0, 2, 4]>} : () -> tensor<4xi64>
  %c = "const"() {value = dense<[2.0]>} : () -> tensor<f32>
  %0 = "matmul"(%x, %w) : (tensor<{b}x{s}x8xf32>, tensor<8x8xf32>) -> tensor<{b}x{s}x8xf32>
  %1 = "add"(%bias, %0) : (tensor<8xf32>, tensor<{b}x{s}x8xf32>) -> tensor<{b}x{s}x8xf32>
  %2 = "reshape"(%1, %shape) : (tensor<{b}x{s}x8xf32>, tensor<4xi64>) -> tensor<{b}x{s}x2x4xf32>
  %3 = "transpose"(%2) {perm = [0, 2, 1, 3]} : (tensor<{b}x{s}x2x4xf32>) -> tensor<{b}x2x{s}x4xf32>
  %4 = "matmul"(%3, %k) : (tensor<{b}x2x{s}x4xf32>, tensor<{b}x2x4x{s}xf32>) -> tensor<{b}x2x{s}x{s}xf32>
  %5 = "div"(%4, %c) : (tensor<{b}x2x{s}x{s}xf32>, tensor<f32>) -> tensor<{b}x2x{s}x{s}xf32>
  return %5
}"#,
    ),
    (
        "matmul-chain",
        "linear",
        r#"
graph @g(%x: tensor<{b}x4xf32>) -> (y: tensor<{b}x3xf32>) {
  %a = "const"() {value = RAND(4x6)} : () -> tensor<4x6xf32>
  %c = "const"() {value = RAND(6x3)} : () -> tensor<6x3xf32>
  %0 = "matmul"(%x, %a) : (tensor<{b}x4xf32>, tensor<4x6xf32>) -> tensor<{b}x6xf32>
  %1 = "matmul"(%0, %c) : (tensor<{b}x6xf32>, tensor<6x3xf32>) -> tensor<{b}x3xf32>
  return %1
}"#,
    ),
    (
        "matmul-identity",
        "linear",
        r#"
graph @g(%x: tensor<{b}x3xf32>) -> (y: tensor<{b}x3xf32>) {
  %i = "const"() {value = dense<[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]>} : () -> tensor<3x3xf32>
  %0 = "matmul"(%x, %i) : (tensor<{b}x3xf32>, tensor<3x3xf32>) -> tensor<{b}x3xf32>
  return %0
}"#,
    ),
    (
        "hadamard-hadamard",
        "linear",
        r#"
graph @g(%x: tensor<{b}x8xf32>) -> (y: tensor<{b}x8xf32>) {
  %0 = "hadamard"(%x) {size = 4} : (tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  %1 = "hadamard"(%0) {size = 4} : (tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  return %1
}"#,
    ),
    (
        "matmul-factor",
        "linear",
        r#"
graph @g(%x: tensor<{b}x6xf32>, %y: tensor<{b}x6xf32>) -> (z: tensor<{b}x3xf32>) {
  %w = "const"() {value = RAND(6x3)} : () -> tensor<6x3xf32>
  %0 = "matmul"(%x, %w) : (tensor<{b}x6xf32>, tensor<6x3xf32>) -> tensor<{b}x3xf32>
  %1 = "matmul"(%y, %w) : (tensor<{b}x6xf32>, tensor<6x3xf32>) -> tensor<{b}x3xf32>
  %2 = "add"(%0, %1) : (tensor<{b}x3xf32>, tensor<{b}x3xf32>) -> tensor<{b}x3xf32>
  return %2
}"#,
    ),
    (
        "rotation-through-rms-norm",
        "linear",
        r#"
graph @g(%x: tensor<{b}x{s}x4xf32>) -> (y: tensor<{b}x{s}x4xf32>) {
  %q = "const"() {value = dense<[[0.5, 0.5, -0.5, 0.5], [0.5, -0.5, -0.5, -0.5], [0.5, 0.5, 0.5, -0.5], [0.5, -0.5, 0.5, 0.5]]>} : () -> tensor<4x4xf32>
  %qt = "const"() {value = dense<[[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5], [-0.5, -0.5, 0.5, 0.5], [0.5, -0.5, -0.5, 0.5]]>} : () -> tensor<4x4xf32>
  %s = "const"() {value = dense<[1.5, 1.5, 1.5, 1.5]>} : () -> tensor<4xf32>
  %0 = "matmul"(%x, %q) : (tensor<{b}x{s}x4xf32>, tensor<4x4xf32>) -> tensor<{b}x{s}x4xf32>
  %1 = "rms_normalization"(%0, %s) {epsilon = 1e-6} : (tensor<{b}x{s}x4xf32>, tensor<4xf32>) -> tensor<{b}x{s}x4xf32>
  %2 = "matmul"(%1, %qt) : (tensor<{b}x{s}x4xf32>, tensor<4x4xf32>) -> tensor<{b}x{s}x4xf32>
  return %2
}"#,
    ),
    (
        "conv-batchnorm",
        "conv-bn",
        r#"
graph @g(%x: tensor<{b}x2x5x5xf32>) -> (y: tensor<{b}x3x3x3xf32>) {
  %w = "const"() {value = RAND(3x2x3x3)} : () -> tensor<3x2x3x3xf32>
  %bias = "const"() {value = RAND(3)} : () -> tensor<3xf32>
  %g = "const"() {value = RAND(3)} : () -> tensor<3xf32>
  %b = "const"() {value = RAND(3)} : () -> tensor<3xf32>
  %m = "const"() {value = RAND(3)} : () -> tensor<3xf32>
  %v = "const"() {value = POS(3)} : () -> tensor<3xf32>
  %0 = "conv"(%x, %w, %bias) : (tensor<{b}x2x5x5xf32>, tensor<3x2x3x3xf32>, tensor<3xf32>) -> tensor<{b}x3x3x3xf32>
  %1 = "batch_normalization"(%0, %g, %b, %m, %v) {epsilon = 0.001} : (tensor<{b}x3x3x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<{b}x3x3x3xf32>
  return %1
}"#,
    ),
    (
        "conv-bias-add",
        "conv-bn",
        r#"
graph @g(%x: tensor<{b}x2x5x5xf32>) -> (y: tensor<{b}x3x2x3xf32>) {
  %w = "const"() {value = RAND(3x2x3x3)} : () -> tensor<3x2x3x3xf32>
  %c = "const"() {value = RAND(3x1x1)} : () -> tensor<3x1x1xf32>
  %0 = "conv"(%x, %w) {strides = [2, 1]} : (tensor<{b}x2x5x5xf32>, tensor<3x2x3x3xf32>) -> tensor<{b}x3x2x3xf32>
  %1 = "add"(%c, %0) : (tensor<3x1x1xf32>, tensor<{b}x3x2x3xf32>) -> tensor<{b}x3x2x3xf32>
  return %1
}"#,
    ),
    (
        "bias-add-gemm",
        "bias",
        r#"
graph @g(%x: tensor<{b}x4xf32>) -> (y: tensor<{b}x3xf32>) {
  %w = "const"() {value = RAND(4x3)} : () -> tensor<4x3xf32>
  %c = "const"() {value = RAND(1x3)} : () -> tensor<1x3xf32>
  %0 = "matmul"(%x, %w) : (tensor<{b}x4xf32>, tensor<4x3xf32>) -> tensor<{b}x3xf32>
  %1 = "add"(%0, %c) : (tensor<{b}x3xf32>, tensor<1x3xf32>) -> tensor<{b}x3xf32>
  return %1
}"#,
    ),
    (
        "gelu-erf",
        "fused",
        r#"
graph @g(%x: tensor<{b}x6xf32>) -> (y: tensor<{b}x6xf32>) {
  %r = "const"() {value = dense<[0.70710677]>} : () -> tensor<f32>
  %one = "const"() {value = dense<[1.0]>} : () -> tensor<f32>
  %half = "const"() {value = dense<[0.5]>} : () -> tensor<f32>
  %0 = "mul"(%x, %r) : (tensor<{b}x6xf32>, tensor<f32>) -> tensor<{b}x6xf32>
  %1 = "erf"(%0) : (tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %2 = "add"(%one, %1) : (tensor<f32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %3 = "mul"(%x, %half) : (tensor<{b}x6xf32>, tensor<f32>) -> tensor<{b}x6xf32>
  %4 = "mul"(%2, %3) : (tensor<{b}x6xf32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  return %4
}"#,
    ),
    (
        "gelu-tanh",
        "fused",
        r#"
graph @g(%x: tensor<{b}x6xf32>) -> (y: tensor<{b}x6xf32>) {
  %beta = "const"() {value = dense<[0.7978846]>} : () -> tensor<f32>
  %kappa = "const"() {value = dense<[0.044715]>} : () -> tensor<f32>
  %one = "const"() {value = dense<[1.0]>} : () -> tensor<f32>
  %half = "const"() {value = dense<[0.5]>} : () -> tensor<f32>
  %0 = "mul"(%x, %x) : (tensor<{b}x6xf32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %1 = "mul"(%x, %0) : (tensor<{b}x6xf32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %2 = "mul"(%kappa, %1) : (tensor<f32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %3 = "add"(%x, %2) : (tensor<{b}x6xf32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %4 = "mul"(%beta, %3) : (tensor<f32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %5 = "tanh"(%4) : (tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %6 = "add"(%one, %5) : (tensor<f32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %7 = "mul"(%x, %6) : (tensor<{b}x6xf32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  %8 = "mul"(%half, %7) : (tensor<f32>, tensor<{b}x6xf32>) -> tensor<{b}x6xf32>
  return %8
}"#,
    ),
    (
        "rms-norm",
        "fused",
        r#"
graph @g(%x: tensor<{b}x{s}x8xf32>) -> (y: tensor<{b}x{s}x8xf32>) {
  %eps = "const"() {value = dense<[1e-5]>} : () -> tensor<f32>
  %w = "const"() {value = RAND(8)} : () -> tensor<8xf32>
  %0 = "mul"(%x, %x) : (tensor<{b}x{s}x8xf32>, tensor<{b}x{s}x8xf32>) -> tensor<{b}x{s}x8xf32>
  %1 = "reduce_mean"(%0) {axes = [2]} : (tensor<{b}x{s}x8xf32>) -> tensor<{b}x{s}x1xf32>
  %2 = "add"(%eps, %1) : (tensor<f32>, tensor<{b}x{s}x1xf32>) -> tensor<{b}x{s}x1xf32>
  %3 = "sqrt"(%2) : (tensor<{b}x{s}x1xf32>) -> tensor<{b}x{s}x1xf32>
  %4 = "reciprocal"(%3) : (tensor<{b}x{s}x1xf32>) -> tensor<{b}x{s}x1xf32>
  %5 = "mul"(%4, %x) : (tensor<{b}x{s}x1xf32>, tensor<{b}x{s}x8xf32>) -> tensor<{b}x{s}x8xf32>
  %6 = "mul"(%w, %5) : (tensor<8xf32>, tensor<{b}x{s}x8xf32>) -> tensor<{b}x{s}x8xf32>
  return %6
}"#,
    ),
    (
        "layer-norm",
        "fused",
        r#"
graph @g(%x: tensor<{b}x8xf32>) -> (y: tensor<{b}x8xf32>) {
  %eps = "const"() {value = dense<[1e-5]>} : () -> tensor<f32>
  %g = "const"() {value = RAND(8)} : () -> tensor<8xf32>
  %be = "const"() {value = RAND(8)} : () -> tensor<8xf32>
  %0 = "reduce_mean"(%x) {axes = [-1]} : (tensor<{b}x8xf32>) -> tensor<{b}x1xf32>
  %1 = "sub"(%x, %0) : (tensor<{b}x8xf32>, tensor<{b}x1xf32>) -> tensor<{b}x8xf32>
  %2 = "mul"(%1, %1) : (tensor<{b}x8xf32>, tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  %3 = "reduce_mean"(%2) {axes = [-1]} : (tensor<{b}x8xf32>) -> tensor<{b}x1xf32>
  %4 = "add"(%3, %eps) : (tensor<{b}x1xf32>, tensor<f32>) -> tensor<{b}x1xf32>
  %5 = "sqrt"(%4) : (tensor<{b}x1xf32>) -> tensor<{b}x1xf32>
  %6 = "div"(%1, %5) : (tensor<{b}x8xf32>, tensor<{b}x1xf32>) -> tensor<{b}x8xf32>
  %7 = "mul"(%g, %6) : (tensor<8xf32>, tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  %8 = "add"(%be, %7) : (tensor<8xf32>, tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  return %8
}"#,
    ),
];

#[test]
fn every_rule_is_sound_on_random_inputs() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (rule, family, template) in CASES {
        for trial in 0..3 {
            let text = fill(template, &mut rng);
            let before = compc_ir::text::parse(&text)
                .unwrap_or_else(|e| panic!("{rule}: the test graph does not parse: {e}"));
            let mut g = before.clone();
            let entry = run_pass(&mut g, family);
            compc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{rule}: {e}"));
            let fired = entry
                .record
                .notes
                .iter()
                .any(|n| n.contains(&format!("{rule} ×")));
            assert!(fired, "{rule} did not fire: {:?}", entry.record.notes);
            assert!(entry.changed, "{rule}: the graph did not change");
            for sym in [1, 3, 5] {
                let ins = inputs(&before, sym, &mut rng);
                let want = compc_runtime::run(&before, &ins).unwrap();
                let got = compc_runtime::run(&g, &ins)
                    .unwrap_or_else(|e| panic!("{rule}: the result does not run: {e}"));
                close(&got, &want).unwrap_or_else(|e| {
                    panic!(
                        "{rule} (trial {trial}, dims {sym}): {e}\n{}",
                        compc_ir::text::print(&g)
                    )
                });
            }
        }
    }
}

/// Every rule the pass has is covered above.
#[test]
fn every_rule_has_a_case() {
    for rw in compc_passes::egraph::rules::all() {
        let name = rw.name.to_string();
        assert!(
            CASES.iter().any(|(r, _, _)| *r == name),
            "rule `{name}` has no soundness case"
        );
    }
}

/// Graphs the rules must leave alone: broadcasts that grow the value, training-mode
/// dropout, a quantize with another scale.
#[test]
fn lookalikes_are_left_alone() {
    let cases = [
        (
            "identity",
            r#"
graph @g(%x: tensor<3xf32>) -> (y: tensor<2x3xf32>) {
  %one = "const"() {value = dense<[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]>} : () -> tensor<2x3xf32>
  %0 = "mul"(%x, %one) : (tensor<3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  return %0
}"#,
        ),
        (
            "identity",
            r#"
graph @g(%x: tensor<3xf32>) -> (y: tensor<3xf32>) {
  %r = "const"() {value = dense<[0.5]>} : () -> tensor<f32>
  %t = "const"() {value = dense<[true]>} : () -> tensor<bool>
  %0 = "dropout"(%x, %r, %t) : (tensor<3xf32>, tensor<f32>, tensor<bool>) -> tensor<3xf32>
  return %0
}"#,
        ),
        (
            "linear",
            r#"
graph @g(%x: tensor<2x3xf32>) -> (y: tensor<2x3xf32>) {
  %i = "const"() {value = dense<[[1.0, 0.0, 0.0], [0.0, 1.001, 0.0], [0.0, 0.0, 1.0]]>} : () -> tensor<3x3xf32>
  %0 = "matmul"(%x, %i) : (tensor<2x3xf32>, tensor<3x3xf32>) -> tensor<2x3xf32>
  return %0
}"#,
        ),
        (
            // Q·P is not the identity, and a scale that differs per channel does not
            // commute with a rotation.
            "linear",
            r#"
graph @g(%x: tensor<2x4xf32>) -> (y: tensor<2x4xf32>) {
  %q = "const"() {value = dense<[[0.5, 0.5, -0.5, 0.5], [0.5, -0.5, -0.5, -0.5], [0.5, 0.5, 0.5, -0.5], [0.5, -0.5, 0.5, 0.5]]>} : () -> tensor<4x4xf32>
  %qt = "const"() {value = dense<[[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5], [-0.5, -0.5, 0.5, 0.5], [0.5, -0.5, -0.5, 0.5]]>} : () -> tensor<4x4xf32>
  %s = "const"() {value = dense<[1.0, 1.0, 1.0, 1.0]>} : () -> tensor<4xf32>
  %t = "const"() {value = dense<[1.0, 2.0, 1.0, 1.0]>} : () -> tensor<4xf32>
  %0 = "matmul"(%x, %q) : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  %1 = "rms_normalization"(%0, %s) {epsilon = 1e-6} : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %2 = "matmul"(%1, %q) : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  %3 = "rms_normalization"(%0, %t) {epsilon = 1e-6} : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %4 = "matmul"(%3, %qt) : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  %5 = "add"(%2, %4) : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  return %5
}"#,
        ),
    ];
    for (family, text) in cases {
        let before = compc_ir::text::parse(text).unwrap();
        let mut g = before.clone();
        let entry = run_pass(&mut g, family);
        assert!(
            !entry.changed,
            "{text}\nbecame\n{}",
            compc_ir::text::print(&g)
        );
    }
}

/// Graphs with the awkward parts real models have — multi-output and custom ops in the
/// middle, unknown and unranked dims, weights known by hash only, empty tensors — go
/// through without a panic and still verify; where they can run, outputs are unchanged.
#[test]
fn awkward_graphs_do_not_break_the_pass() {
    let cases = [
        r#"
graph @split_and_custom(%x: tensor<{b}x8xf32>) -> (y: tensor<{b}x4xf32>, z: tensor<{b}x4xf32>) {
  %0 = "identity"(%x) : (tensor<{b}x8xf32>) -> tensor<{b}x8xf32>
  %1:2 = "split"(%0) {axis = 1, num_outputs = 2} : (tensor<{b}x8xf32>) -> (tensor<{b}x4xf32>, tensor<{b}x4xf32>)
  %2 = "custom:com.example:Foo"(%1#0) : (tensor<{b}x4xf32>) -> tensor<{b}x4xf32>
  %3 = "identity"(%2) : (tensor<{b}x4xf32>) -> tensor<{b}x4xf32>
  %4 = "transpose"(%1#1) {perm = [1, 0]} : (tensor<{b}x4xf32>) -> tensor<4x{b}xf32>
  %5 = "transpose"(%4) {perm = [1, 0]} : (tensor<4x{b}xf32>) -> tensor<{b}x4xf32>
  return %3, %5
}"#,
        r#"
graph @unknown_dims(%x: tensor<?x?xf32>, %u: tensor<*xf32>) -> (y: tensor<?x4xf32>, z: tensor<*xf32>) {
  %one = "const"() {value = dense<[1.0]>} : () -> tensor<f32>
  %s = "const"() {value = dense<[-1, 4]>} : () -> tensor<2xi64>
  %0 = "mul"(%x, %one) : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
  %1 = "reshape"(%0, %s) : (tensor<?x?xf32>, tensor<2xi64>) -> tensor<?x4xf32>
  %2 = "reshape"(%1, %s) : (tensor<?x4xf32>, tensor<2xi64>) -> tensor<?x4xf32>
  %e = "const"() {value = dense<[1, 4]>} : () -> tensor<2xi64>
  %3 = "expand"(%2, %e) : (tensor<?x4xf32>, tensor<2xi64>) -> tensor<?x4xf32>
  %4 = "relu"(%u) : (tensor<*xf32>) -> tensor<*xf32>
  %5 = "identity"(%4) : (tensor<*xf32>) -> tensor<*xf32>
  return %3, %5
}"#,
        r#"
graph @weights_by_hash(%x: tensor<{b}x64xf32>) -> (y: tensor<{b}x64xf32>) {
  %w = "const"() {sha = "9f2c0a1b2c3d4e5f", weight = @fc.weight} : () -> tensor<64x64xf32>
  %v = "const"() {sha = "0123456789abcdef", weight = @fc2.weight} : () -> tensor<64x64xf32>
  %c = "const"() {value = dense<[2.0]>} : () -> tensor<f32>
  %0 = "matmul"(%x, %w) : (tensor<{b}x64xf32>, tensor<64x64xf32>) -> tensor<{b}x64xf32>
  %1 = "mul"(%0, %c) : (tensor<{b}x64xf32>, tensor<f32>) -> tensor<{b}x64xf32>
  %2 = "matmul"(%1, %v) : (tensor<{b}x64xf32>, tensor<64x64xf32>) -> tensor<{b}x64xf32>
  return %2
}"#,
        r#"
graph @empty(%x: tensor<0x4xf32>) -> (y: tensor<0x4xf32>) {
  %s = "const"() {value = dense<[0, 4]>} : () -> tensor<2xi64>
  %0 = "reshape"(%x, %s) {allowzero = 1} : (tensor<0x4xf32>, tensor<2xi64>) -> tensor<0x4xf32>
  %1 = "transpose"(%0) {perm = [1, 0]} : (tensor<0x4xf32>) -> tensor<4x0xf32>
  %2 = "transpose"(%1) {perm = [1, 0]} : (tensor<4x0xf32>) -> tensor<0x4xf32>
  return %2
}"#,
        r#"
graph @outputs_are_inputs(%x: tensor<3xf32>) -> (a: tensor<3xf32>, b: tensor<3xf32>) {
  %0 = "identity"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  %1 = "identity"(%0) : (tensor<3xf32>) -> tensor<3xf32>
  return %0, %1
}"#,
    ];
    let mut rng = Rng(7);
    for text in cases {
        let before = compc_ir::text::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut g = before.clone();
        run_pass(&mut g, "all");
        compc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let runnable = !text.contains("custom:") && !text.contains("sha =") && !text.contains('*');
        if runnable {
            let ins = inputs(&before, 2, &mut rng);
            let want = compc_runtime::run(&before, &ins).unwrap();
            let got = compc_runtime::run(&g, &ins).unwrap();
            close(&got, &want).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
}

//! A cost model: floating-point operations and bytes moved by one node, from concrete
//! shapes. `compc eval` reports FLOPs per token with it; the e-graph optimizer extracts by
//! it. Counts follow the usual conventions (a multiply-add is 2 FLOPs; element-wise ops
//! 1 per output element; data movement 0 FLOPs), which is what comparisons need.

use crate::dtype::DType;
use crate::op::Op;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub flops: u64,
    /// Bytes read from inputs plus bytes written to outputs.
    pub bytes: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.flops = self.flops.saturating_add(o.flops);
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
}

/// A concrete tensor shape with its element type.
pub type Concrete<'a> = (DType, &'a [u64]);

fn numel(d: &[u64]) -> u64 {
    d.iter().fold(1u64, |a, &x| a.saturating_mul(x))
}

fn bytes(t: &Concrete) -> u64 {
    t.0.storage_bytes(numel(t.1)).unwrap_or(u64::MAX)
}

/// Cost of one node. `inputs[i]` is `None` for an omitted optional input.
pub fn node_cost(op: &Op, inputs: &[Option<Concrete>], outputs: &[Concrete]) -> Cost {
    let out_numel: u64 = outputs.iter().map(|o| numel(o.1)).sum();
    let in0 = inputs.first().copied().flatten();
    let in1 = inputs.get(1).copied().flatten();
    let in_numel = in0.map(|t| numel(t.1)).unwrap_or(0);
    let flops = match op {
        Op::Input | Op::Const(_) => 0,
        Op::MatMul => {
            let k = in0.and_then(|t| t.1.last().copied()).unwrap_or(0);
            out_numel.saturating_mul(k).saturating_mul(2)
        }
        Op::Gemm(a) => {
            let k = in0
                .map(|t| {
                    if a.trans_a { t.1.first() } else { t.1.last() }
                        .copied()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            out_numel.saturating_mul(2 * k + 1)
        }
        Op::MatMulNBits(a) => out_numel.saturating_mul(2 * a.k.max(0) as u64),
        // Q·Kᵀ and P·V over all S keys (the causal half is not subtracted): 4·S per
        // output element.
        Op::GroupQueryAttention(_) => {
            let s = in0.and_then(|t| t.1.get(1).copied()).unwrap_or(0);
            out_numel.saturating_mul(4 * s)
        }
        Op::Conv(_) => {
            // Weight [M, C/group, k...]: each output element is a dot product of C/group·Πk.
            let per = in1.map(|w| numel(w.1.get(1..).unwrap_or(&[]))).unwrap_or(0);
            out_numel.saturating_mul(2 * per)
        }
        Op::ConvTranspose(_) => {
            let per = in1.map(|w| numel(w.1.get(1..).unwrap_or(&[]))).unwrap_or(0);
            in_numel.saturating_mul(2 * per)
        }
        Op::MaxPool(p) | Op::AveragePool(p) => out_numel.saturating_mul(numel(
            &p.kernel_shape
                .iter()
                .map(|&k| k.max(0) as u64)
                .collect::<Vec<_>>(),
        )),
        Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Reduce(..)
        | Op::ArgMax(_)
        | Op::ArgMin(_) => in_numel,
        Op::Softmax(_) | Op::LogSoftmax(_) => in_numel.saturating_mul(5),
        // x², the sum, the scaling by 1/√(mean + ε) and by the weight: what the
        // decomposition `x · rsqrt(mean(x²) + ε) · w` counts, so fusing it is not costed
        // as more arithmetic.
        Op::RmsNorm(_) => in_numel.saturating_mul(4),
        Op::LayerNorm(_) | Op::BatchNorm(_) | Op::InstanceNorm(_) | Op::GroupNorm(_) => {
            in_numel.saturating_mul(5)
        }
        Op::Hadamard(_) => {
            let n = in0.and_then(|t| t.1.last().copied()).unwrap_or(1).max(1);
            in_numel.saturating_mul(64 - n.leading_zeros() as u64)
        }
        Op::Einsum(_) => {
            out_numel.saturating_mul(2 * in0.and_then(|t| t.1.last().copied()).unwrap_or(1))
        }
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Variadic(_)
        | Op::Mod(_)
        | Op::Where
        | Op::Clip
        | Op::Gelu(_)
        | Op::LeakyRelu(_)
        | Op::Elu(_)
        | Op::Celu(_)
        | Op::Selu(_)
        | Op::ThresholdedRelu(_)
        | Op::HardSigmoid(_)
        | Op::Hardmax(_)
        | Op::QuantizeLinear(_)
        | Op::DequantizeLinear(_)
        | Op::DynamicQuantizeLinear
        | Op::CumSum(_)
        | Op::Resize(_) => out_numel,
        // Data movement, indexing and shape arithmetic.
        _ => 0,
    };
    let read: u64 = inputs.iter().flatten().map(bytes).sum();
    let written: u64 = outputs.iter().map(bytes).sum();
    Cost {
        flops,
        bytes: read.saturating_add(written),
    }
}

//! Lowerings: MatMulNBits packing and QDQ constants (techniques.md §1.6 invariants).

mod quant_common;

use compc_ir::{Graph, Op};
use compc_passes::quant::lower_nbits::{pack, unpack};
use compc_passes::quant::rtn::rtn;
use compc_passes::quant::Grid;
use compc_runtime::{eval_op, Tensor};
use quant_common::{count_ops, inputs, mlp, run, run_quant, Lcg};

#[test]
fn pack_unpack_round_trip() {
    let mut rng = Lcg(21);
    for bits in [2u32, 4, 8] {
        for n in [1usize, 2, 3, 7, 16, 33, 128] {
            let codes: Vec<u8> = (0..n)
                .map(|_| ((rng.next() + 1.0) * 200.0) as u8 & ((1u16 << bits) - 1) as u8)
                .collect();
            let mut bytes = vec![0u8; (n * bits as usize).div_ceil(8)];
            pack(&codes, bits, &mut bytes);
            assert_eq!(unpack(&bytes, bits, n), codes, "{bits} bits, {n} codes");
        }
    }
}

#[test]
fn four_bit_packing_puts_the_first_code_in_the_low_nibble() {
    let mut b = [0u8; 2];
    pack(&[0x1, 0x2, 0xF, 0x0], 4, &mut b);
    assert_eq!(b, [0x21, 0x0F]);
    let mut b2 = [0u8; 1];
    pack(&[1, 2, 3, 0], 2, &mut b2);
    assert_eq!(b2, [0b00_11_10_01]);
}

/// Output of `x · B` where the graph's only linear is read back as QDQ or NBits.
fn lowered(g: &Graph, options: &str) -> Graph {
    let mut q = g.clone();
    run_quant(&mut q, options, None).unwrap();
    q
}

#[test]
fn matmul_nbits_equals_blocked_dequantize_linear_plus_matmul() {
    let mut rng = Lcg(22);
    for (bits, group, sym) in [
        (4, 32, false),
        (4, 128, true),
        (2, 64, false),
        (8, 32, false),
        (3, 32, true),
    ] {
        let g = mlp(&mut rng, 256, 96, 40);
        let opts = format!("method=rtn,bits={bits},group={group},sym={sym}");
        let nb = lowered(&g, &format!("{opts},format=nbits"));
        let qdq = lowered(&g, &format!("{opts},format=qdq"));
        assert_eq!(count_ops(&nb, "matmul_nbits"), 2, "{opts}");
        assert_eq!(count_ops(&qdq, "dequantize_linear"), 2, "{opts}");
        assert_eq!(count_ops(&qdq, "matmul_nbits"), 0);
        let x = inputs(&g, &mut rng, 5);
        let (a, b) = (run(&nb, &x), run(&qdq, &x));
        let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-5 * scale.max(1.0), "{opts}: {p} vs {q}");
        }
    }
}

#[test]
fn dequantized_constants_equal_the_quantizers_fake_quant_exactly() {
    let mut rng = Lcg(23);
    let g = mlp(&mut rng, 64, 32, 16);
    let w1 = g
        .weights
        .iter()
        .find(|(_, w)| w.name == "fc1.weight")
        .map(|(_, w)| w.to_f32_vec().unwrap())
        .unwrap();
    // W-form of fc1 (stored [64, 32] = Wᵀ).
    let wt: Vec<f32> = (0..32 * 64).map(|k| w1[(k % 64) * 32 + k / 64]).collect();
    for (bits, group, sym) in [(8, 0, true), (4, 32, false), (4, 0, true), (8, 32, false)] {
        let q = lowered(
            &g,
            &format!("method=rtn,bits={bits},group={group},sym={sym},format=qdq"),
        );
        let want = rtn(&wt, 32, 64, group, Grid::new(bits, sym)).dequantize();
        let dq = q
            .node_ids()
            .find(|&id| {
                matches!(q.node(id).op, Op::DequantizeLinear(_))
                    && q.node(id).name.starts_with("fc1")
            })
            .unwrap();
        let node = q.node(dq);
        let args: Vec<Option<Tensor>> = node
            .inputs()
            .iter()
            .map(|v| v.map(|v| Tensor::from_weight(q.const_weight(v).unwrap()).unwrap()))
            .collect();
        let refs: Vec<Option<&Tensor>> = args.iter().map(|t| t.as_ref()).collect();
        let got = eval_op(&node.op, &refs, 1).unwrap().remove(0).to_f32_vec();
        // got is [64, 32] (B-form): compare transposed.
        for r in 0..32 {
            for c in 0..64 {
                assert_eq!(
                    got[c * 32 + r].to_bits(),
                    want[r * 64 + c].to_bits(),
                    "int{bits} g{group} sym {sym} at ({r},{c})"
                );
            }
        }
    }
}

#[test]
fn nbits_bias_is_folded_into_the_op() {
    let mut rng = Lcg(24);
    let g = mlp(&mut rng, 128, 64, 32);
    let nb = lowered(&g, "method=rtn,format=nbits,group=32");
    // fc1's bias Add became MatMulNBits' bias input.
    assert_eq!(count_ops(&nb, "add"), 0);
    let with_bias = nb
        .node_ids()
        .filter(|&id| matches!(nb.node(id).op, Op::MatMulNBits(_)))
        .filter(|&id| nb.node(id).input(5).is_some())
        .count();
    assert_eq!(with_bias, 1);
    compc_ir::verify::verify(&nb).unwrap();
}

//! Hadamard constructions (`H Hᵀ = n I` exactly) and the rotations built from them
//! (`QᵀQ = I` in float64), plus the online `hadamard` op with a Kronecker factor against
//! the dense matrix it stands for.

use compc_ir::op::Hadamard as HadamardOp;
use compc_ir::Op;
use compc_passes::rotate::hadamard::{factor, hadamard, paley1, paley2, sylvester};
use compc_passes::rotate::rotation::Rotation;
use compc_runtime::Tensor;

#[test]
fn every_construction_is_hadamard() {
    for n in [1, 2, 4, 8, 64, 256] {
        assert_eq!(
            sylvester(n).unwrap().orthogonality_defect(),
            0,
            "Sylvester {n}"
        );
    }
    assert!(sylvester(12).is_none());
    // Paley I over prime fields and GF(27), GF(343); Paley II over GF(13), GF(17), GF(25).
    for q in [3, 7, 11, 19, 27, 43, 59, 107, 139, 343] {
        let h = paley1(q).unwrap_or_else(|| panic!("Paley I {q}"));
        assert_eq!(h.n, q + 1);
        assert_eq!(h.orthogonality_defect(), 0, "Paley I q={q}");
    }
    for q in [5, 13, 17, 25] {
        let h = paley2(q).unwrap_or_else(|| panic!("Paley II {q}"));
        assert_eq!(h.n, 2 * (q + 1));
        assert_eq!(h.orthogonality_defect(), 0, "Paley II q={q}");
    }
    assert!(paley1(15).is_none() && paley2(7).is_none());
    // Model sizes: 768 = 12·64, 688 = 344·2, 96 = 12·8, 52 (Paley II over GF(25)).
    for (n, k) in [(768, 12), (688, 344), (96, 12), (52, 52), (28, 28)] {
        let (hk, m) = factor(n).unwrap();
        assert_eq!(hk.map_or(1, |h| h.n), k, "factor of {n}");
        assert_eq!(k * m, n);
        if n <= 100 {
            assert_eq!(hadamard(n).unwrap().orthogonality_defect(), 0, "order {n}");
        }
    }
    // 11008 = 344·32 and 14336 = 28·512: the factors alone (each is Hadamard, hence so is
    // their Kronecker product).
    assert_eq!(
        factor(11008).map(|(h, m)| (h.map(|h| h.n), m)),
        Some((Some(344), 32))
    );
    assert_eq!(
        factor(14336).map(|(h, m)| (h.map(|h| h.n), m)),
        Some((Some(28), 512))
    );
    // 156 and 172 alone have no construction here.
    assert!(hadamard(156).is_none() && hadamard(172).is_none());
}

fn max_defect_qtq(r: &Rotation) -> f64 {
    let n = r.n;
    let q = r.dense();
    let mut worst = 0f64;
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n).map(|k| q[k * n + i] * q[k * n + j]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((dot - want).abs());
        }
    }
    worst
}

#[test]
fn rotations_are_orthogonal() {
    // Sylvester, Paley ⊗ Sylvester, and the block-diagonal fallback (172 = 43·4).
    for (n, how) in [(64, "Sylvester"), (96, "Paley"), (172, "block-diagonal")] {
        let r = Rotation::random_hadamard(n, 3).unwrap();
        assert!(r.how.contains(how), "{n}: {}", r.how);
        let d = max_defect_qtq(&r);
        assert!(d < 1e-10, "{n}: ‖QᵀQ − I‖ = {d}");
    }
    // Different seeds give different signs; the same seed the same rotation.
    let (a, b) = (
        Rotation::random_hadamard(64, 1).unwrap(),
        Rotation::random_hadamard(64, 2).unwrap(),
    );
    assert_ne!(a.signs, b.signs);
    assert_eq!(a.signs, Rotation::random_hadamard(64, 1).unwrap().signs);
}

#[test]
fn online_op_with_factor_matches_the_dense_rotation() {
    for n in [96usize, 64] {
        let r = Rotation::hadamard(n).unwrap();
        let rows = 3;
        let x: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let xt = Tensor::from_f32(vec![rows, n], x.clone());
        let op = Op::Hadamard(HadamardOp { size: r.s as i64 });
        let out = match r.factor_f32() {
            Some((k, f)) => {
                let ft = Tensor::from_f32(vec![k, k], f);
                compc_runtime::ops::eval_op(&op, &[Some(&xt), Some(&ft)], 1).unwrap()
            }
            None => compc_runtime::ops::eval_op(&op, &[Some(&xt)], 1).unwrap(),
        };
        let got = out[0].to_f32_vec();
        let q = r.dense();
        for i in 0..rows {
            for j in 0..n {
                let want: f64 = (0..n).map(|k| x[i * n + k] as f64 * q[k * n + j]).sum();
                let d = (got[i * n + j] as f64 - want).abs();
                assert!(d < 1e-5, "n={n} [{i},{j}]: {} vs {want}", got[i * n + j]);
            }
        }
    }
}

/// The online op rewritten as small MatMuls and Transposes (`hadamards_to_matmuls`, what
/// native compilation lowers) computes the same as the op: with and without a Kronecker
/// factor, one block or several per row, a Sylvester part split in two or three factors,
/// and a symbolic leading dim.
#[test]
fn online_op_as_matmuls_matches_the_op() {
    use compc_ir::graph::GraphOutput;
    use compc_ir::{DType, Dim, Graph, Shape, TensorType, ValueRef};
    use compc_passes::rotate::hadamard_matmuls::hadamards_to_matmuls;
    // (last axis, size attribute, Kronecker factor order)
    for (l, size, k) in [
        (96usize, 0i64, 12usize),
        (688, 0, 344),
        (512, 128, 1),
        (4096, 0, 1),
        (8192, 0, 1),
        (192, 16, 12),
    ] {
        let mut g = Graph::new("h");
        let ty = TensorType::new(
            DType::F32,
            Shape::Ranked(vec![
                Dim::Sym("batch".into()),
                Dim::Known(2),
                Dim::Known(l as u64),
            ]),
        );
        let x = g.add_input("x", ty.clone());
        let mut inputs = vec![Some(ValueRef::new(x, 0))];
        let mut factor_t = None;
        if k > 1 {
            let f = hadamard(k).map(|h| h.data).unwrap_or_else(|| {
                let (hk, _) = factor(k).unwrap();
                hk.unwrap().data
            });
            let norm = 1.0 / (k as f32).sqrt();
            let fv: Vec<f32> = f.iter().map(|&e| e as f32 * norm).collect();
            let t = Tensor::from_f32(vec![k, k], fv);
            let c = g.add_const(t.to_weight("factor").unwrap());
            inputs.push(Some(ValueRef::new(c, 0)));
            factor_t = Some(t);
        }
        let h = g.add_node(Op::Hadamard(HadamardOp { size }), inputs, vec![ty], "h");
        g.outputs.push(GraphOutput {
            name: "y".into(),
            value: ValueRef::new(h, 0),
        });
        let rows = 3 * 2;
        let xv: Vec<f32> = (0..rows * l)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let xt = Tensor::from_f32(vec![3, 2, l], xv);
        let op = Op::Hadamard(HadamardOp { size });
        let want = compc_runtime::ops::eval_op(&op, &[Some(&xt), factor_t.as_ref()], 1).unwrap()[0]
            .to_f32_vec();
        let mut rewritten = g.clone();
        assert_eq!(hadamards_to_matmuls(&mut rewritten).unwrap(), 1);
        let text = compc_ir::text::print(&rewritten);
        assert!(!text.contains("hadamard\""), "{text}");
        let got = compc_runtime::run(&rewritten, &[("x".into(), xt)]).unwrap()[0]
            .1
            .to_f32_vec();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "l={l} size={size} k={k}: off by {worst}");
    }
}

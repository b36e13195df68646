//! Every op, fed odd inputs (scalars, empty tensors, wrong types, missing inputs), must
//! return a result or an error, never panic.

mod common;
use common::*;
use compc_ir::attr::{Attr, Attrs};
use compc_ir::Op;
use compc_runtime::{eval_op, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn samples() -> Vec<Tensor> {
    vec![
        f(&[], &[1.5]),
        f(&[0], &[]),
        f(&[2, 0, 3], &[]),
        f(&[1, 1, 2, 2], &[1., -2., 3., 4.]),
        f(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        i(&[1], &[-100]),
        i(&[2], &[1, 0]),
        i(&[], &[0]),
        i(&[4], &[0, 0, i64::MAX, i64::MIN]),
        Tensor::from_bool(vec![2], vec![true, false]),
        i(&[1], &[1 << 40]),
        i(&[1], &[3]),
        f(&[1, 2, 1, 3], &[0.5, 1., 2., 3., 4., 5.]),
    ]
}

fn ops() -> Vec<Op> {
    let mut v: Vec<Op> = Op::all_names()
        .into_iter()
        .filter_map(|n| Op::from_name(n, Attrs::new()).ok())
        .collect();
    let with = |name: &str, attrs: &[(&str, Attr)]| {
        Op::from_name(
            name,
            attrs
                .iter()
                .map(|(k, a)| (k.to_string(), a.clone()))
                .collect(),
        )
        .unwrap()
    };
    v.push(with(
        "max_pool",
        &[
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("ceil_mode", Attr::Int(1)),
        ],
    ));
    v.push(with(
        "average_pool",
        &[
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ],
    ));
    v.push(with(
        "matmul_nbits",
        &[
            ("K", Attr::Int(2)),
            ("N", Attr::Int(2)),
            ("bits", Attr::Int(4)),
            ("block_size", Attr::Int(16)),
        ],
    ));
    v.push(with("resize", &[("mode", Attr::Str("linear".into()))]));
    v.push(with("resize", &[("mode", Attr::Str("cubic".into()))]));
    v.push(with(
        "einsum",
        &[("equation", Attr::Str("ij,jk->ik".into()))],
    ));
    v.push(with(
        "einsum",
        &[("equation", Attr::Str("...,->...".into()))],
    ));
    v.push(with("depth_to_space", &[("blocksize", Attr::Int(2))]));
    v.push(with("split", &[("num_outputs", Attr::Int(0))]));
    v.push(with("hadamard", &[("size", Attr::Int(-4))]));
    v.push(with("group_normalization", &[("num_groups", Attr::Int(1))]));
    v.push(with("pad", &[("mode", Attr::Str("reflect".into()))]));
    v
}

#[test]
fn no_op_panics_on_odd_inputs() {
    let s = samples();
    let mut panics = Vec::new();
    let mut ok_count = 0usize;
    for op in ops() {
        let m = s.len();
        // Every pair of samples, plus neighbour lists of other lengths: cheap, and each
        // sample reaches each input position.
        let pairs = (0..m * m).map(|c| vec![c % m, c / m]);
        let others = (0..m).flat_map(|c| {
            [0usize, 1, 3, 5].map(|n| (0..n).map(|k| (c + 2 * k) % m).collect::<Vec<_>>())
        });
        for idx in pairs.chain(others) {
            {
                let ins: Vec<Option<&Tensor>> = idx.iter().map(|&k| Some(&s[k])).collect();
                for outs in [1usize, 3] {
                    let r = catch_unwind(AssertUnwindSafe(|| eval_op(&op, &ins, outs)));
                    if matches!(r, Ok(Ok(_))) {
                        ok_count += 1;
                    }
                    if r.is_err() {
                        let shapes: Vec<String> = ins
                            .iter()
                            .flatten()
                            .map(|t| format!("{}{:?}", t.dtype(), t.shape()))
                            .collect();
                        panics.push(format!("{} {:?}", op.name(), shapes));
                    }
                }
            }
        }
        // Optional inputs left out in the middle.
        let mid: Vec<Option<&Tensor>> = vec![Some(&s[3]), None, Some(&s[4])];
        if catch_unwind(AssertUnwindSafe(|| eval_op(&op, &mid, 1))).is_err() {
            panics.push(format!("{} with a missing middle input", op.name()));
        }
    }
    // Guards against the test silently exercising only error paths.
    assert!(ok_count > 1000, "only {ok_count} evaluations succeeded");
    panics.dedup();
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

//! Inference and verification never panic: every op, odd attributes, wrong input counts
//! and hostile input types and values must give a result or an error.

use compc_ir::attr::{Attr, Attrs};
use compc_ir::infer::{infer_graph, infer_node};
use compc_ir::verify::verify;
use compc_ir::{DType, Dim, Graph, NodeId, Op, Shape, TensorType, ValueRef, Weight};

/// Small deterministic generator (64-bit LCG): the test is reproducible without a
/// dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn pool(g: &mut Graph) -> Vec<NodeId> {
    let sym = |s: &str| Dim::Sym(s.into());
    let types = [
        TensorType::known(DType::F32, &[]),
        TensorType::known(DType::F32, &[0]),
        TensorType::known(DType::F32, &[3]),
        TensorType::known(DType::F32, &[2, 3]),
        TensorType::known(DType::F32, &[1, 3, 5, 5]),
        TensorType::known(DType::F16, &[2, 0, 4]),
        TensorType::new(
            DType::F32,
            Shape::Ranked(vec![sym("n"), Dim::Known(4), Dim::Unknown]),
        ),
        TensorType::unranked(DType::F32),
        TensorType::known(DType::Bool, &[2, 3]),
        TensorType::known(DType::I64, &[2]),
        TensorType::known(DType::U8, &[4, 2, 8]),
    ];
    let mut ids: Vec<NodeId> = types
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(format!("in{i}"), t.clone()))
        .collect();
    let consts: [&[i64]; 9] = [
        &[],
        &[-1],
        &[0, -1],
        &[2, 3],
        &[i64::MAX],
        &[i64::MIN, 5],
        &[-7, 100, 0, 2],
        &[0; 8],
        &[1],
    ];
    for (i, c) in consts.iter().enumerate() {
        ids.push(g.add_const(Weight::from_i64(format!("c{i}"), vec![c.len() as u64], c).unwrap()));
    }
    ids.push(g.add_const(Weight::from_i64("s0", vec![], &[0]).unwrap()));
    ids.push(g.add_const(Weight::from_i64("s1", vec![], &[-3]).unwrap()));
    ids.push(g.add_const(Weight::from_f32("f", vec![2], &[0.5, f32::NAN]).unwrap()));
    ids.push(g.add_const(Weight::from_bytes("b", DType::I4, vec![3], vec![0x21, 0x0f]).unwrap()));
    let shape = g.add_node(
        Op::Shape(Default::default()),
        vec![Some(ids[6].into())],
        vec![TensorType::known(DType::I64, &[3])],
        "",
    );
    ids.push(shape);
    ids
}

/// Every op with default attributes, plus variants with attributes that make no sense.
fn ops() -> Vec<Op> {
    let mut v: Vec<Op> = Op::all_names()
        .into_iter()
        .filter_map(|n| Op::from_name(n, Attrs::new()).ok())
        .collect();
    let with = |name: &str, attrs: &[(&str, Attr)]| {
        let a: Attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Op::from_name(name, a).unwrap()
    };
    let big = Attr::Int(i64::MAX);
    let neg = Attr::Int(-5);
    v.extend([
        with(
            "conv",
            &[
                ("strides", Attr::Ints(vec![0, 1])),
                ("pads", Attr::Ints(vec![-1; 4])),
            ],
        ),
        with(
            "conv",
            &[
                ("dilations", Attr::Ints(vec![i64::MAX, 1])),
                ("group", Attr::Int(0)),
            ],
        ),
        with(
            "conv_transpose",
            &[
                ("output_shape", Attr::Ints(vec![-3, 4])),
                ("group", neg.clone()),
            ],
        ),
        with(
            "max_pool",
            &[
                ("kernel_shape", Attr::Ints(vec![0, i64::MAX])),
                ("ceil_mode", Attr::Int(1)),
            ],
        ),
        with(
            "average_pool",
            &[
                ("kernel_shape", Attr::Ints(vec![9, 9])),
                ("auto_pad", Attr::Str("SAME_UPPER".into())),
            ],
        ),
        with("split", &[("num_outputs", Attr::Int(0))]),
        with(
            "split",
            &[("split", Attr::Ints(vec![-1, 4])), ("axis", big.clone())],
        ),
        with("gather", &[("axis", Attr::Int(i64::MIN))]),
        with("gather_nd", &[("batch_dims", big.clone())]),
        with("concat", &[("axis", neg.clone())]),
        with("transpose", &[("perm", Attr::Ints(vec![5, -9]))]),
        with("squeeze", &[("axes", Attr::Ints(vec![i64::MAX]))]),
        with("unsqueeze", &[("axes", Attr::Ints(vec![0, 0]))]),
        with("flatten", &[("axis", big.clone())]),
        with("depth_to_space", &[("blocksize", big.clone())]),
        with("space_to_depth", &[("blocksize", Attr::Int(0))]),
        with("hadamard", &[("size", neg.clone())]),
        with(
            "einsum",
            &[("equation", Attr::Str("...ii,...->...i".into()))],
        ),
        with("einsum", &[("equation", Attr::Str("a.b,->".into()))]),
        with(
            "matmul_nbits",
            &[
                ("K", big.clone()),
                ("N", Attr::Int(3)),
                ("bits", Attr::Int(4)),
                ("block_size", Attr::Int(0)),
            ],
        ),
        with("router_top_k", &[("capacity", Attr::Float(f32::NAN))]),
        with(
            "resize",
            &[
                ("axes", Attr::Ints(vec![3, 3])),
                ("keep_aspect_ratio_policy", Attr::Str("not_smaller".into())),
            ],
        ),
        with(
            "layer_normalization",
            &[("stash_type", Attr::Int(99)), ("axis", big)],
        ),
        with("one_hot", &[("axis", neg)]),
    ]);
    v
}

#[test]
fn no_panics_on_hostile_graphs() {
    let mut g = Graph::new("fuzz");
    let values = pool(&mut g);
    let mut rng = Lcg(7);
    for op in ops() {
        for _ in 0..60 {
            let n_in = rng.next(5);
            let inputs: Vec<Option<ValueRef>> = (0..n_in)
                .map(|_| match rng.next(8) {
                    0 => None,
                    _ => Some(values[rng.next(values.len())].into()),
                })
                .collect();
            let outputs = vec![TensorType::unranked(DType::F32); rng.next(4)];
            let id = g.add_node(op.clone(), inputs, outputs, "");
            let _ = infer_node(&g, id);
            let _ = verify(&g);
            let mut copy = g.clone();
            let _ = infer_graph(&mut copy);
            let _ = verify(&copy);
            g.remove_node(id).unwrap();
        }
    }
}

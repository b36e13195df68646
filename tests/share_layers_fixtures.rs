//! `share-layers` on the LM fixture: every=1 leaves the graph as it was, full-rank LoRA
//! reproduces the original, every=2 halves the unique block weights (one initializer
//! read by two MatMuls, in compc and in the exported model), and the exported model runs
//! in onnxruntime with compc's outputs; `quant`, `prune`, `rotate` and `gqa` after it keep
//! one copy of each shared weight.

mod common;

use common::{close, lm, lm_ids, oracle_available, ort_outputs, ort_run, read_npz, try_pipeline};
use compc::ir::Graph;
use compc::passes::share_layers::{sources, Init};
use compc::passes::GraphStats;
use compc::runtime::Tensor;

fn logits(g: &Graph, inputs: &[(String, Tensor)]) -> Vec<f32> {
    compc::runtime::run(g, inputs).unwrap()[0].1.to_f32_vec()
}

#[test]
fn source_lists() {
    // L = 6, K = 3 (B = 2), CYCLE: average ties {0, 2, 4} and {1, 3, 5}.
    assert_eq!(sources(Init::Average, 6, 2, 0), vec![0, 2, 4]);
    assert_eq!(sources(Init::Average, 6, 2, 1), vec![1, 3, 5]);
    assert_eq!(sources(Init::Lower, 6, 2, 1), vec![1]);
    // L = 18, B = 9: [0, 2, 4, 6, 8, 11, 13, 15, 17] (ties to even, as numpy rounds).
    let step: Vec<usize> = (0..9)
        .map(|j| sources(Init::Stepwise, 18, 9, j)[0])
        .collect();
    assert_eq!(step, vec![0, 2, 4, 6, 8, 11, 13, 15, 17]);
}

#[test]
fn every_one_is_identity_and_full_rank_lora_reproduces() {
    let g = lm();
    let text = compc::ir::text::print(&g);
    let out = try_pipeline(&g, "share-layers{every=1}", None).unwrap();
    assert_eq!(compc::ir::text::print(&out), text);
    // The small decoder fixture (2 blocks, d = 64, RoPE) keeps the SVDs quick in debug builds.
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let before = logits(&dec, &inputs);
    for init in ["average", "stepwise", "lower"] {
        let full = try_pipeline(
            &dec,
            &format!("share-layers{{every=2,init={init},lora_rank=1024}}"),
            None,
        )
        .unwrap();
        assert!(
            close(&logits(&full, &inputs), &before, 1e-4, 1e-4),
            "{init}: full-rank LoRA changed the model"
        );
    }
    let pure = try_pipeline(&dec, "share-layers{every=2,init=average}", None).unwrap();
    assert!(
        !close(&logits(&pure, &inputs), &before, 1e-2, 1e-2),
        "sharing without LoRA should change the model"
    );
    assert!(GraphStats::of(&pure).parameters < GraphStats::of(&dec).parameters);
}

#[test]
fn every_two_halves_block_weights_and_runs_in_onnxruntime() {
    let lm = lm();
    let lm_inputs = lm_ids(2, 16, 7000);
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let dec_inputs = read_npz(&common::inputs_path("decoder", "b3"));
    for (g, inputs, p) in [
        (&lm, &lm_inputs, "share-layers{every=2,init=stepwise}"),
        (&lm, &lm_inputs, "share-layers{every=4,init=lower}"),
        (
            &dec,
            &dec_inputs,
            "share-layers{every=2,init=average,lora_rank=8}",
        ),
    ] {
        let out = try_pipeline(g, p, None).unwrap();
        let (a, b) = (
            GraphStats::of(g).parameters,
            GraphStats::of(&out).parameters,
        );
        assert!(b < a, "{p}: {a} → {b}");
        // The 4 blocks' linears: 4·(4·256² + 3·256·688) parameters; every=2 removes half.
        if p.contains("every=2,init=stepwise") {
            let block = 4 * (4 * 256 * 256 + 3 * 256 * 688) as u64;
            assert_eq!(a - b, block / 2, "{p}");
        }
        let ours = logits(&out, inputs);
        if oracle_available() {
            let dir = tempfile::tempdir().unwrap();
            let model = dir.path().join("m.onnx");
            compc::onnx::export::export_file(&out, &model, &Default::default()).unwrap();
            let inp = dir.path().join("in.npz");
            compc::runtime::npz::write_npz(&inp, inputs).unwrap();
            let o = dir.path().join("out.npz");
            ort_run(&model, &inp, &o).unwrap_or_else(|e| panic!("onnxruntime: {e}"));
            let ort = read_npz(&o)[0].1.to_f32_vec();
            assert!(close(&ort, &ours, 1e-4, 1e-3), "{p}: onnxruntime disagrees");
            // Shared weights are stored once in the file.
            let bytes = std::fs::metadata(&model).unwrap().len();
            assert!(bytes < 4 * a, "{p}: the file holds {bytes} bytes");
        }
    }
}

#[test]
fn bad_every_is_an_error() {
    let e = try_pipeline(&lm(), "share-layers{every=3}", None).unwrap_err();
    assert!(
        e.contains("every=3 does not divide the 4 transformer blocks"),
        "{e}"
    );
    // After quant the block linears are quantized: the refusal says to share first.
    let e = try_pipeline(&lm(), "quant{method=rtn},share-layers", None).unwrap_err();
    assert!(e.contains("run share-layers before quant"), "{e}");
    // Without blocks the refusal says what was recognised instead.
    let cnn = compc::driver::load_model(&common::model_path("cnn", "torchscript")).unwrap();
    let e = try_pipeline(&cnn, "share-layers", None).unwrap_err();
    assert!(
        e.contains("; found 18 linear, 0 norm, 0 attention, 3 mlp") && e.contains("--idioms"),
        "{e}"
    );
    // A routed block is no longer a block: the count says why it is 1 of 2.
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let e = try_pipeline(&dec, "mod-routers{router=norm,layers=0},share-layers", None).unwrap_err();
    assert!(
        e.contains("every=2 does not divide the 1 transformer blocks")
            && e.contains("2 attention layers were found, but only 1"),
        "{e}"
    );
}

/// The operand lists of the `op` nodes in `text` (compc's IR text, where a node reads
/// `%out = "op"(%a, %b, …) {…} : (…) -> …`).
fn operand_lists<'t>(text: &'t str, op: &str) -> Vec<Vec<&'t str>> {
    let head = format!("\"{op}\"(");
    text.lines()
        .filter_map(|l| {
            let args = l.split(head.as_str()).nth(1)?.split(')').next()?;
            Some(args.split(", ").collect())
        })
        .collect()
}

/// How many items `v` has, and how many distinct ones.
fn count_distinct<T: Ord>(mut v: Vec<T>) -> (usize, usize) {
    let n = v.len();
    v.sort();
    v.dedup();
    (n, v.len())
}

/// The `op` nodes holding quantized weights (MatMulNBits, DequantizeLinear), and how many
/// distinct sets of constants they read (MatMulNBits: every operand but A).
fn quantized_constants(g: &Graph, op: &str) -> (usize, usize) {
    let text = compc::ir::text::print(g);
    let skip = usize::from(op == "matmul_nbits");
    count_distinct(
        operand_lists(&text, op)
            .into_iter()
            .map(|args| args[skip.min(args.len())..].join(", "))
            .collect(),
    )
}

/// `share-layers` then `quant`: a weight two blocks read is quantized once, and both
/// readers read the same codes (one MatMulNBits constant, or one DequantizeLinear), so
/// the quantized model keeps the sharing: smaller than `quant` alone, by about the shared
/// half of the block weights, and onnxruntime agrees with compc.
#[test]
fn quantizing_shared_layers_keeps_one_copy_of_each_weight() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = compc::passes::CalibData {
        tensors: inputs.clone(),
    };
    for (quant, op) in [
        ("quant{bits=4,method=rtn,group=32}", "matmul_nbits"),
        ("quant{bits=8}", "dequantize_linear"),
        ("quant{bits=4,group=32}", "matmul_nbits"),
    ] {
        let alone = try_pipeline(&dec, quant, Some(&calib)).unwrap();
        let shared = try_pipeline(&dec, &format!("share-layers,{quant}"), Some(&calib)).unwrap();
        let (a, s) = (
            GraphStats::of(&alone).weight_bytes,
            GraphStats::of(&shared).weight_bytes,
        );
        // The decoder's two blocks share every linear: the second block's codes go.
        assert!(
            s * 10 < a * 8,
            "{quant}: {a} bytes alone, {s} after share-layers"
        );
        // The second block's 7 linears read the first block's codes, scales and zero
        // points: 7 fewer distinct sets of quantized constants than `quant` alone makes.
        let (n_alone, d_alone) = quantized_constants(&alone, op);
        let (n_shared, d_shared) = quantized_constants(&shared, op);
        assert_eq!(d_alone, n_alone, "{quant}: quant alone shares nothing");
        assert_eq!(d_shared, d_alone - 7, "{quant}: {d_shared} of {n_shared}");
        let ours = logits(&shared, &inputs);
        if let Some(ort) = ort_outputs(&shared, &inputs) {
            assert!(
                close(&ort[0], &ours, 1e-4, 1e-4),
                "{quant}: onnxruntime disagrees"
            );
        }
    }
}

/// `share-layers` then unstructured `prune`: a weight two blocks read is pruned once (by
/// its first reader's scores) and both read the pruned weight, so the model stays as
/// small as after `share-layers`, at the requested sparsity.
#[test]
fn pruning_shared_layers_keeps_one_copy_of_each_weight() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = compc::passes::CalibData {
        tensors: inputs.clone(),
    };
    let shared = try_pipeline(&dec, "share-layers", None).unwrap();
    let bytes = GraphStats::of(&shared).weight_bytes;
    for prune in [
        "prune{method=magnitude}",
        "prune{method=wanda}",
        "prune{method=sparsegpt}",
        "prune{method=wanda,scope=global}",
        "prune{pattern=2:4}",
    ] {
        let out = try_pipeline(&dec, &format!("share-layers,{prune}"), Some(&calib)).unwrap();
        assert_eq!(GraphStats::of(&out).weight_bytes, bytes, "{prune}");
        // Every layer at the target (global scope spreads it unevenly over layers).
        let meta = out
            .metadata
            .get("compc.sparsity")
            .cloned()
            .unwrap_or_default();
        let per_layer: Vec<f64> = meta
            .rsplit("; ")
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|e| e.split('=').nth(1)?.parse().ok())
            .collect();
        assert_eq!(per_layer.len(), 14, "{prune}: {meta}");
        if !prune.contains("global") {
            assert!(
                per_layer.iter().all(|s| (s - 0.5).abs() < 0.01),
                "{prune}: {meta}"
            );
        }
        let ours = logits(&out, &inputs);
        assert!(ours.iter().all(|x| x.is_finite()), "{prune}");
    }
}

/// `share-layers` then `rotate`: readers of a shared weight whose rotated copies are
/// byte-identical read one constant again (the norm scales rotate folds into q/k/v and
/// gate/up differ per block, so those copies stay apart), and the result still computes
/// what the rotated model computes.
#[test]
fn rotating_shared_layers_stores_identical_copies_once() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let alone = try_pipeline(&dec, "rotate", None).unwrap();
    let shared = try_pipeline(&dec, "share-layers", None).unwrap();
    let both = try_pipeline(&dec, "share-layers,rotate", None).unwrap();
    let bytes = |g: &Graph| GraphStats::of(g).weight_bytes;
    assert!(
        bytes(&both) < bytes(&alone),
        "{} after share-layers,rotate against {} after rotate",
        bytes(&both),
        bytes(&alone)
    );
    let (want, got) = (logits(&shared, &inputs), logits(&both, &inputs));
    assert!(
        close(&got, &want, 1e-4, 1e-4),
        "rotation changed the outputs"
    );
}

/// `share-layers` then `gqa`: attentions tied to one set of projections are planned
/// together (mean pooling agrees per site anyway; `method=align` sums the sites' Gram
/// matrices), so each tie's pooled k and v projections stay one constant: the tied
/// model loses exactly half the f32 bytes `gqa` removes from the untied one (two blocks
/// over one shared block), and the exported model runs in onnxruntime with compc's
/// outputs.
#[test]
fn gqa_on_shared_layers_keeps_one_copy_of_each_projection() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = compc::passes::CalibData {
        tensors: inputs.clone(),
    };
    let f32_bytes = |g: &Graph| GraphStats::of(g).bytes_by_dtype["f32"];
    let shared = try_pipeline(&dec, "share-layers", None).unwrap();
    for gqa in ["gqa{groups=2,method=mean}", "gqa{groups=2,method=align}"] {
        let untied = try_pipeline(&dec, gqa, Some(&calib)).unwrap();
        let tied = try_pipeline(&dec, &format!("share-layers,{gqa}"), Some(&calib)).unwrap();
        let removed_untied = f32_bytes(&dec) - f32_bytes(&untied);
        assert!(removed_untied > 0, "{gqa}");
        assert_eq!(
            f32_bytes(&shared) - f32_bytes(&tied),
            removed_untied / 2,
            "{gqa}"
        );
        let ours = logits(&tied, &inputs);
        if let Some(ort) = ort_outputs(&tied, &inputs) {
            assert!(
                close(&ort[0], &ours, 1e-4, 1e-3),
                "{gqa}: onnxruntime disagrees"
            );
        }
    }
}

/// How many matmuls read a constant weight, and how many distinct constants they read.
fn matmul_weights(g: &Graph) -> (usize, usize) {
    let text = compc::ir::text::print(g);
    // `%63 = "const"() {sha = "…", …}` names the constants by their value id.
    let consts: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter(|l| l.contains("= \"const\"()"))
        .filter_map(|l| {
            let id = l.trim().split(' ').next()?;
            let sha = l.split("sha = \"").nth(1)?.split('"').next()?;
            Some((id, sha))
        })
        .collect();
    count_distinct(
        operand_lists(&text, "matmul")
            .iter()
            .filter_map(|args| consts.get(args.get(1)?).copied())
            .collect(),
    )
}

/// `share-layers{norms=shared}` ties the norm scales like the linears (one copy per
/// shared block), so `rotate`, which folds them into q/k/v and gate/up, leaves every tied
/// linear shared: as many distinct matmul weights after `rotate` as before it (with
/// per-position norms the folded copies differ and come apart), and the rotated model
/// computes what the shared one does.
#[test]
fn shared_norms_keep_rotated_weights_shared() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let position = try_pipeline(&dec, "share-layers", None).unwrap();
    let shared = try_pipeline(&dec, "share-layers{norms=shared}", None).unwrap();
    // Two blocks tied into one: block 1's two RMSNorm scales (d = 64) are gone.
    assert_eq!(
        GraphStats::of(&position).parameters - GraphStats::of(&shared).parameters,
        2 * 64
    );
    let (readers, distinct) = matmul_weights(&shared);
    assert!(distinct < readers, "{readers} readers, {distinct} weights");
    let rotated = try_pipeline(&dec, "share-layers{norms=shared},rotate", None).unwrap();
    assert_eq!(matmul_weights(&rotated), (readers, distinct));
    let rotated_position = try_pipeline(&dec, "share-layers,rotate", None).unwrap();
    assert!(matmul_weights(&rotated_position).1 > distinct);
    let (want, got) = (logits(&shared, &inputs), logits(&rotated, &inputs));
    assert!(
        close(&got, &want, 1e-4, 1e-4),
        "rotation changed the outputs"
    );
}

/// Seeded values in (-1, 1), for the synthetic graphs below.
fn lcg_values(seed: u64, n: usize) -> Vec<f32> {
    let mut u = common::uniform(seed);
    (0..n).map(|_| (2.0 * u() - 1.0) as f32).collect()
}

/// `inputs` (name, rows) each read by a matmul with one shared 64×16 weight.
fn shared_weight_graph(inputs: &[&str]) -> Graph {
    let w: Vec<String> = lcg_values(11, 64 * 16)
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect();
    let ty = "tensor<{batch}x64xf32>";
    let out = "tensor<{batch}x16xf32>";
    let args: Vec<String> = inputs.iter().map(|n| format!("%{n}: {ty}")).collect();
    let rets: Vec<String> = inputs.iter().map(|n| format!("y_{n}: {out}")).collect();
    let mut text = format!(
        "graph @shared({}) -> ({}) {{\n  %w = \"const\"() {{value = dense<[{}]>}} : () -> tensor<64x16xf32>\n",
        args.join(", "),
        rets.join(", "),
        w.join(", ")
    );
    for (i, n) in inputs.iter().enumerate() {
        text += &format!("  %{i} = \"matmul\"(%{n}, %w) : ({ty}, tensor<64x16xf32>) -> {out}\n");
    }
    let ids: Vec<String> = (0..inputs.len()).map(|i| format!("%{i}")).collect();
    text += &format!("  return {}\n}}\n", ids.join(", "));
    compc::ir::text::parse(&text).unwrap()
}

/// Calibrated on the inputs of every reader: `pipeline` on the shared-weight graph
/// with readers `a` (inputs `X₁`) and `b` (`X₂`) gives both readers the weight it gives a
/// single reader calibrated on `[X₁; X₂]` (whose statistics pool the same tokens; GPTQ
/// and SparseGPT do not depend on the Hessian's scale). `X₂` stresses a few channels
/// `X₁` does not, so the first reader's statistics alone give another weight.
fn assert_calibrated_on_all_readers(pipeline: &str) {
    let rows = 256;
    let x1 = lcg_values(1, rows * 64);
    let mut x2 = lcg_values(2, rows * 64);
    for (k, v) in x2.iter_mut().enumerate() {
        if k % 64 < 4 {
            *v *= 20.0;
        }
    }
    let t = |x: &[f32], r: usize| Tensor::from_f32(vec![r, 64], x.to_vec());
    let both: Vec<f32> = x1.iter().chain(&x2).copied().collect();
    let two = try_pipeline(
        &shared_weight_graph(&["a", "b"]),
        pipeline,
        Some(&compc::passes::CalibData {
            tensors: vec![("a".into(), t(&x1, rows)), ("b".into(), t(&x2, rows))],
        }),
    )
    .unwrap();
    let one = try_pipeline(
        &shared_weight_graph(&["c"]),
        pipeline,
        Some(&compc::passes::CalibData {
            tensors: vec![("c".into(), t(&both, 2 * rows))],
        }),
    )
    .unwrap();
    let first_only = try_pipeline(
        &shared_weight_graph(&["c"]),
        pipeline,
        Some(&compc::passes::CalibData {
            tensors: vec![("c".into(), t(&x1, rows))],
        }),
    )
    .unwrap();
    // The quantized weights, read through the identity: row k of the output is W's row k.
    let eye: Vec<f32> = (0..64 * 64)
        .map(|i| f32::from(u8::from(i / 64 == i % 64)))
        .collect();
    let weights = |g: &Graph, names: &[&str]| -> Vec<Vec<f32>> {
        let inputs: Vec<(String, Tensor)> =
            names.iter().map(|n| (n.to_string(), t(&eye, 64))).collect();
        compc::runtime::run(g, &inputs)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t.to_f32_vec())
            .collect()
    };
    let two_w = weights(&two, &["a", "b"]);
    let one_w = weights(&one, &["c"]).remove(0);
    // The same zeros, and values equal up to the order of float sums (SparseGPT's
    // updates); a different code or mask moves an entry by far more.
    let same = |a: &[f32], b: &[f32]| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .all(|(x, y)| (*x == 0.0) == (*y == 0.0) && (x - y).abs() <= 1e-5 * scale)
    };
    assert_eq!(
        two_w[0], two_w[1],
        "{pipeline}: the two readers read different weights"
    );
    assert!(
        same(&two_w[0], &one_w),
        "{pipeline}: not the weight of the pooled statistics"
    );
    assert!(
        !same(&weights(&first_only, &["c"]).remove(0), &one_w),
        "{pipeline}: X₂ should change the weight"
    );
}

/// GPTQ on a weight several layers read sums their Hessians: the shared codes minimise
/// the error at every reader, not the first's.
#[test]
fn gptq_on_a_shared_weight_sums_its_readers_hessians() {
    assert_calibrated_on_all_readers("quant{method=gptq,bits=3,group=32}");
}

/// Wanda (per row and global) scores a weight several layers read by `‖X_j‖` over all
/// their tokens, and SparseGPT prunes it on the sum of their Hessians.
#[test]
fn pruning_a_shared_weight_uses_all_its_readers_inputs() {
    for p in [
        "prune{method=wanda,layers=all}",
        "prune{method=wanda,layers=all,scope=global}",
        "prune{method=sparsegpt,layers=all}",
    ] {
        assert_calibrated_on_all_readers(p);
    }
}

/// `share-layers` then `low-rank`: the readers of a shared weight get one factorisation
/// (stored once), so the tied model loses exactly half the parameters `low-rank` removes
/// from the untied one (two blocks over one shared block; output PCA's new biases are
/// merged the same way), and it still runs in onnxruntime with compc's outputs.
#[test]
fn low_rank_on_shared_layers_keeps_one_copy_of_each_factor() {
    let dec = compc::driver::load_model(&common::model_path("decoder", "torchscript")).unwrap();
    let inputs = read_npz(&common::inputs_path("decoder", "b3"));
    let calib = compc::passes::CalibData {
        tensors: inputs.clone(),
    };
    let params = |g: &Graph| GraphStats::of(g).parameters;
    let shared = try_pipeline(&dec, "share-layers", None).unwrap();
    for lr in [
        "low-rank{ratio=0.5}",
        "low-rank{ratio=0.5,method=svdllm}",
        "low-rank{ratio=0.5,method=pca-out}",
    ] {
        let untied = try_pipeline(&dec, lr, Some(&calib)).unwrap();
        let tied = try_pipeline(&dec, &format!("share-layers,{lr}"), Some(&calib)).unwrap();
        let removed_untied = params(&dec) - params(&untied);
        assert!(removed_untied > 0, "{lr}");
        assert_eq!(params(&shared) - params(&tied), removed_untied / 2, "{lr}");
        let ours = logits(&tied, &inputs);
        if let Some(ort) = ort_outputs(&tied, &inputs) {
            assert!(
                close(&ort[0], &ours, 1e-4, 1e-3),
                "{lr}: onnxruntime disagrees"
            );
        }
    }
}

/// Data-aware low-rank methods factor a weight several layers read on the statistics
/// of all their inputs.
#[test]
fn low_rank_of_a_shared_weight_uses_all_its_readers_inputs() {
    for p in [
        "low-rank{rank=8,layers=all,method=asvd}",
        "low-rank{rank=8,layers=all,method=svdllm}",
        "low-rank{rank=8,layers=all,method=pca-out}",
    ] {
        assert_calibrated_on_all_readers(p);
    }
}

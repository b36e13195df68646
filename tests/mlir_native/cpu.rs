//! The MLIR CPU backend against the reference runtime: every fixture family (CNN,
//! encoder, RoPE decoder; both exporters), at batch 1 and 3 (dynamic batch and sequence
//! dims), JIT-compiled and through the shared library `--target cpu` writes.
//! Tolerance: 1e-4 relative to the largest output magnitude.

use crate::common::*;
use compc::runtime::Tensor;

fn check(model: &str, exporter: &str, got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    check_scaled(&format!("{model}.{exporter}"), got, want, 1e-4);
}

/// The JIT-compiled `native` against the reference runtime on `g`, on `model`'s batch-1
/// and batch-3 inputs.
fn check_cases(
    model: &str,
    what: &str,
    g: &compc::ir::Graph,
    native: &compc::runtime::native::NativeModel,
) {
    for case in CASES {
        let inputs = read_npz(&inputs_path(model, case));
        let want = compc::runtime::run(g, &inputs).unwrap();
        let got = native.run(&inputs).unwrap();
        check(model, what, &got, &want);
    }
}

#[test]
fn jit_matches_reference_runtime_on_all_fixtures() {
    for model in MODELS {
        for exporter in EXPORTERS {
            let g = compc::driver::load_model(&model_path(model, exporter)).unwrap();
            let native =
                compc::native::jit(&g).unwrap_or_else(|e| panic!("{model}.{exporter}: {e:#}"));
            // The CNN works per image, so batch 3 runs one image at a time; the
            // transformers (batch and sequence dims) run whole.
            assert_eq!(
                native.manifest().split_batch.is_some(),
                model == "cnn",
                "{model}.{exporter}: split_batch"
            );
            check_cases(model, exporter, &g, &native);
        }
    }
}

/// A batch-separable model's samples run side by side on several threads, with exactly
/// the outputs of one thread (each sample is the same call of the same code).
#[test]
fn cnn_samples_on_threads_match_one_thread_exactly() {
    let g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let inputs = read_npz(&inputs_path("cnn", "b3"));
    let one = compc::native::jit(&g).unwrap().run(&inputs).unwrap();
    let three = compc::native::jit(&g)
        .unwrap()
        .with_threads(3)
        .unwrap()
        .run(&inputs)
        .unwrap();
    assert_eq!(one.len(), three.len());
    for ((n1, t1), (n3, t3)) in one.iter().zip(&three) {
        assert_eq!(n1, n3);
        assert_eq!(
            t1.to_bytes(),
            t3.to_bytes(),
            "{n1}: threads changed the output"
        );
    }
    let want = compc::runtime::run(&g, &inputs).unwrap();
    check("cnn", "torchscript", &three, &want);
}

/// Weight-only int4 and int8 (`MatMulNBits`): the b1 case (7 rows of A) unpacks the codes
/// in the FMA loop, the b3 case (36 rows) dequantizes each column tile once into a scratch
/// buffer that its row tiles read.
#[test]
fn quantized_matmul_nbits_matches_reference_runtime() {
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    for pipeline in [
        "quant{bits=4,method=rtn}",
        "quant{bits=8,method=rtn,group=32,format=nbits}",
    ] {
        let q = run_pipeline(&g, pipeline, None);
        let text = compc::ir::text::print(&q);
        assert!(text.contains("matmul_nbits"), "{pipeline}: no MatMulNBits");
        let native = compc::native::jit(&q).unwrap_or_else(|e| panic!("{pipeline}: {e:#}"));
        let mlir = compc::native::emit_mlir(&q).unwrap().text;
        assert!(
            mlir.contains("arith.shrui") || pipeline.contains("bits=8"),
            "in-loop unpacking"
        );
        assert!(
            mlir.contains("%scr = memref.alloc()"),
            "dequantized scratch"
        );
        check_cases("decoder", pipeline, &q, &native);
    }
}

/// QDQ outputs of `quant`: convolution weight codes (per channel or blocked) are
/// dequantized into float constants before lowering, so BatchNormalization still folds
/// into the CNN's convolutions, and MatMul weights become MatMulNBits; static activation
/// quantization (`act_bits=8`, SmoothQuant) lowers its run-time
/// QuantizeLinear/DequantizeLinear pairs element-wise.
#[test]
fn qdq_models_compile_and_match_reference_runtime() {
    for (model, pipeline, act) in [
        ("cnn", "quant{bits=8}", false),
        ("cnn", "quant{bits=3,act_bits=8}", true),
        ("decoder", "quant{format=qdq}", false),
        ("decoder", "quant{method=smoothquant}", true),
    ] {
        let g = compc::driver::load_model(&model_path(model, "torchscript")).unwrap();
        let calib = compc::passes::CalibData {
            tensors: read_npz(&inputs_path(model, "b3")),
        };
        let q = run_pipeline(&g, pipeline, Some(&calib));
        assert!(
            compc::ir::text::print(&q).contains("dequantize_linear"),
            "{model} {pipeline}: no QDQ"
        );
        let mlir = compc::native::emit_mlir(&q).unwrap().text;
        assert_eq!(
            mlir.contains("math.roundeven"),
            act,
            "{model} {pipeline}: run-time quantization"
        );
        let native = compc::native::jit(&q).unwrap_or_else(|e| panic!("{pipeline}: {e:#}"));
        check_cases(model, pipeline, &q, &native);
    }
}

/// QDQ MatMul weights (8-bit `quant`, or `format=qdq`; per channel or blocked, signed or
/// with zero points) become MatMulNBits before lowering: the compiled folder keeps their
/// integer codes instead of f32, and the outputs still match the reference runtime.
#[test]
fn qdq_matmul_weights_stay_integer_codes_when_compiled() {
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weights_bin = |g: &compc::ir::Graph, name: &str| {
        let out = dir.path().join(name);
        std::fs::create_dir(&out).unwrap();
        compc::native::compile_cpu(g, &out).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        std::fs::metadata(out.join("weights.bin")).unwrap().len()
    };
    let float_bytes = weights_bin(&g, "float");
    for (i, (pipeline, at_most)) in [
        ("quant{bits=8,method=rtn}", 0.45),
        ("quant{bits=8,method=rtn,sym=false,group=32}", 0.55),
        ("quant{bits=4,method=rtn,format=qdq}", 0.35),
    ]
    .into_iter()
    .enumerate()
    {
        let q = run_pipeline(&g, pipeline, None);
        assert!(
            compc::ir::text::print(&q).contains("dequantize_linear"),
            "{pipeline}: no QDQ"
        );
        let prepared = compc::ir::text::print(&compc::native::prepare(&q).unwrap());
        assert!(
            prepared.contains("matmul_nbits") && !prepared.contains("dequantize_linear"),
            "{pipeline}: the QDQ MatMuls were not rewritten"
        );
        let bytes = weights_bin(&q, &format!("q{i}"));
        assert!(
            (bytes as f64) < at_most * float_bytes as f64,
            "{pipeline}: weights.bin holds {bytes} bytes against {float_bytes} for f32"
        );
        let native = compc::native::jit(&q).unwrap_or_else(|e| panic!("{pipeline}: {e:#}"));
        check_cases("decoder", pipeline, &q, &native);
    }
}

/// The report of a `--target cpu` run has a native-code section: the compiled files with
/// their sizes, and what lowering rewrote (here the QDQ MatMuls of 8-bit `quant` and
/// rotate's online Hadamards); report.json carries the same as `native`.
#[test]
fn the_report_says_what_native_compilation_wrote_and_rewrote() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_compc"))
        .arg(model_path("decoder", "torchscript"))
        .args([
            "-p",
            "rotate,quant{bits=8,method=rtn}",
            "--target",
            "cpu",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{stderr}");
    assert!(stderr.contains("compiled for cpu: model.so"), "{stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let weights = std::fs::metadata(out.join("weights.bin")).unwrap().len();
    for want in [
        "## Native code (`--target cpu`)".to_string(),
        format!("- `weights.bin`: {weights} bytes"),
        "15 QDQ MatMul weight(s) became MatMulNBits".to_string(),
        "2 online Hadamard(s) became small MatMuls".to_string(),
    ] {
        assert!(md.contains(&want), "report.md lacks {want:?}:\n{md}");
    }
    assert!(!md.contains("dequantized to f32"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["native"]["target"], "cpu");
    assert_eq!(json["native"]["files"]["weights.bin"], weights);
    assert_eq!(json["native"]["rewrites"]["qdq_matmuls_to_nbits"], 15);
    assert_eq!(json["native"]["rewrites"]["hadamards_to_matmuls"], 2);
    // Without --target there is no such section.
    let plain = dir.path().join("p");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_compc"))
        .arg(model_path("decoder", "torchscript"))
        .args(["-p", "quant{bits=8,method=rtn}", "-o"])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    let md = std::fs::read_to_string(plain.join("report.md")).unwrap();
    assert!(!md.contains("## Native code"), "{md}");
}

/// 2-bit MatMulNBits (`quant{bits=2}`) compiles: its codes are widened to 4-bit containers
/// with explicit zero points, which changes no value (the widened graph gives exactly
/// the reference runtime's outputs), and the native outputs match.
#[test]
fn two_bit_matmul_nbits_compiles_widened_to_four_bits() {
    use compc::passes::quant::widen_nbits::widen_two_bit_nbits;
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    for pipeline in [
        "quant{bits=2,method=rtn}",
        "quant{bits=2,method=rtn,sym=true,group=32}",
    ] {
        let q = run_pipeline(&g, pipeline, None);
        let mut widened = q.clone();
        assert!(
            widen_two_bit_nbits(&mut widened).unwrap() > 0,
            "{pipeline}: no 2-bit layer"
        );
        let native = compc::native::jit(&q).unwrap_or_else(|e| panic!("{pipeline}: {e:#}"));
        for case in CASES {
            let inputs = read_npz(&inputs_path("decoder", case));
            let want = compc::runtime::run(&q, &inputs).unwrap();
            let same = compc::runtime::run(&widened, &inputs).unwrap();
            for ((_, a), (_, b)) in want.iter().zip(&same) {
                assert_eq!(
                    a.to_f32_vec(),
                    b.to_f32_vec(),
                    "{pipeline}: widening changed the outputs"
                );
            }
            let got = native.run(&inputs).unwrap();
            check("decoder", pipeline, &got, &want);
        }
    }
}

/// `rotate`'s online Hadamard (before each down projection) compiles: native compilation
/// rewrites it as small MatMuls and Transposes, and the outputs match the reference
/// runtime. The decoder's MLP width is 176 = 11·16 (a Kronecker factor), the LM's 688 =
/// 344·2.
#[test]
fn rotated_models_compile_with_their_online_hadamard() {
    let lm_path = fixtures().join("lm/lm.torchscript.onnx");
    for (name, path) in [
        ("decoder", model_path("decoder", "torchscript")),
        ("lm", lm_path),
    ] {
        let g = compc::driver::load_model(&path).unwrap();
        let r = run_pipeline(&g, "rotate", None);
        assert!(
            compc::ir::text::print(&r).contains("\"hadamard\""),
            "{name}: no online Hadamard"
        );
        let native = compc::native::jit(&r).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let inputs = if name == "lm" {
            let ids: Vec<i64> = (0..2 * 40).map(|i| (i * 37 % 251) as i64).collect();
            vec![("input_ids".to_string(), Tensor::from_i64(vec![2, 40], ids))]
        } else {
            read_npz(&inputs_path("decoder", "b3"))
        };
        let want = compc::runtime::run(&r, &inputs).unwrap();
        let got = native.run(&inputs).unwrap();
        check(name, "rotate", &got, &want);
    }
}

/// `gqa`'s output repeats each KV head with `Tile` over the head axis (lowered as a
/// gather of `o mod n`).
#[test]
fn grouped_query_attention_outputs_compile() {
    for model in ["encoder", "decoder"] {
        let g = compc::driver::load_model(&model_path(model, "torchscript")).unwrap();
        let calib = compc::passes::CalibData {
            tensors: read_npz(&inputs_path(model, "b3")),
        };
        let q = run_pipeline(&g, "gqa{groups=2}", Some(&calib));
        assert!(
            compc::ir::text::print(&q).contains("\"tile\""),
            "{model}: no Tile"
        );
        let native = compc::native::jit(&q).unwrap_or_else(|e| panic!("{model}: {e:#}"));
        check_cases(model, "gqa", &q, &native);
    }
}

/// The user's path: `compc MODEL --target cpu -o OUT`, then `compc run OUT`.
#[test]
fn target_cpu_writes_a_library_that_compc_run_executes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("enc");
    let bin = env!("CARGO_BIN_EXE_compc");
    let st = std::process::Command::new(bin)
        .arg(model_path("cnn", "dynamo"))
        .args(["--target", "cpu", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "model.so",
        "weights.bin",
        "manifest.json",
        "model.mlir",
        "model.onnx",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for case in CASES {
        let res = dir.path().join(format!("out.{case}.npz"));
        let st = std::process::Command::new(bin)
            .arg("run")
            .arg(&out)
            .arg("--inputs")
            .arg(inputs_path("cnn", case))
            .arg("--output")
            .arg(&res)
            .status()
            .unwrap();
        assert!(st.success());
        let got = read_npz(&res);
        let want = read_npz(&expected_path("cnn", "dynamo", case));
        // The expected files come from onnxruntime on the original model.
        check("cnn", "dynamo (aot vs onnxruntime)", &got, &want);
    }
    // A wrong input shape is a clear error, not a crash.
    let res = dir.path().join("bad.npz");
    let o = std::process::Command::new(bin)
        .arg("run")
        .arg(&out)
        .arg("--inputs")
        .arg(inputs_path("encoder", "b1"))
        .arg("--output")
        .arg(&res)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("input_ids") || e.contains("input"), "{e}");
}

/// MatMuls by constant f32 weights go through the panel kernel (`cpu_matmul`): one- and
/// two-vector panels (N = 48, 64), an odd K, and row counts that leave a partial 8-row
/// tile (1, 11 and 22 rows of A), against the reference runtime.
#[test]
fn matmul_by_a_constant_weight_reads_panels_and_matches_reference_runtime() {
    use compc::ir::{DType, Dim, Graph, GraphOutput, Op, Shape, TensorType, ValueRef, Weight};
    for (k, n) in [(5u64, 48u64), (7, 64)] {
        let mut g = Graph::new("panels");
        g.opsets.insert(String::new(), 17);
        let dims = |last: u64| {
            Shape::Ranked(vec![
                Dim::Sym("batch".into()),
                Dim::Sym("seq".into()),
                Dim::Known(last),
            ])
        };
        let x = g.add_input("x", TensorType::new(DType::F32, dims(k)));
        let vals: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let w = g.add_const(Weight::from_f32("w", vec![k, n], &vals).unwrap());
        let mm = g.add_node(
            Op::MatMul,
            vec![Some(ValueRef::new(x, 0)), Some(ValueRef::new(w, 0))],
            vec![TensorType::new(DType::F32, dims(n))],
            "mm",
        );
        g.outputs.push(GraphOutput {
            name: "y".into(),
            value: ValueRef::new(mm, 0),
        });
        let mlir = compc::native::emit_mlir(&g).unwrap().text;
        assert!(
            mlir.contains("@compc_cpu_matmul_n"),
            "k {k} n {n}: no panel kernel"
        );
        let native = compc::native::jit(&g).unwrap();
        for (b, s) in [(1usize, 1usize), (1, 11), (2, 11)] {
            let xs: Vec<f32> = (0..b * s * k as usize)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
                .collect();
            let inputs = vec![(
                "x".to_string(),
                Tensor::from_f32(vec![b, s, k as usize], xs),
            )];
            let want = compc::runtime::run(&g, &inputs).unwrap();
            let got = native.run(&inputs).unwrap();
            check_scaled(&format!("k {k} n {n} rows {}", b * s), &got, &want, 1e-5);
        }
    }
}

/// Layers shared by `share-layers` read one weight from several MatMuls: the panels the
/// CPU kernel reads are prepared once per weight, not once per reader, so the compiled
/// weights are no bigger than the shared model's.
#[test]
fn shared_layers_compile_with_each_weight_stored_once() {
    let g = compc::driver::load_model(&model_path("decoder", "torchscript")).unwrap();
    let calib = compc::passes::CalibData {
        tensors: read_npz(&inputs_path("decoder", "b3")),
    };
    let q = run_pipeline(&g, "share-layers", Some(&calib));
    let m = compc::native::emit_mlir(&q).unwrap();
    let mut names: Vec<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a parameter is stored twice");
    assert!(
        m.params.iter().any(|p| p.name.ends_with(".panels")),
        "no panelled weight"
    );
    let native = compc::native::jit(&q).unwrap();
    check_cases("decoder", "share-layers", &q, &native);
}

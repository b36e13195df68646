#!/usr/bin/env python3
"""Node counts of compc's `egraph-opt` beside onnxruntime's own graph optimization.

    python3 scripts/compare_egraph.py [--compc PATH] [--ops] [MODEL.onnx ...]

For each model (default: the trained LM in tests/fixtures/lm/ and the encoder and decoder
fixtures, each from both exporters) it counts the ONNX nodes of
- the model as exported,
- compc's output with `-p egraph-opt`,
- onnxruntime's ORT_ENABLE_EXTENDED optimized model (SessionOptions.optimized_model_filepath,
  CPU provider), and
- onnxruntime's ORT_ENABLE_EXTENDED applied to compc's output,
and prints one markdown table. Constant nodes are not counted (onnxruntime turns them into
initializers). `--ops` also prints each model's op-type histogram.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile

import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_models() -> list[str]:
    models = []
    for e in ("torchscript", "dynamo"):
        lm = os.path.join(ROOT, f"tests/fixtures/lm/lm.{e}.onnx")
        if os.path.exists(lm):
            models.append(lm)
    for m in ("encoder", "decoder"):
        for e in ("torchscript", "dynamo"):
            models.append(os.path.join(ROOT, f"tests/fixtures/models/{m}.{e}.onnx"))
    return models


def find_compc() -> str:
    for profile in ("release", "debug"):
        for target in (os.environ.get("CARGO_TARGET_DIR"), os.path.join(ROOT, "target")):
            if target:
                p = os.path.join(target, profile, "compc")
                if os.path.exists(p):
                    return p
    sys.exit("compc binary not found: build it (cargo build --release) or pass --compc")


def ops(path: str) -> collections.Counter:
    model = onnx.load(path, load_external_data=False)
    return collections.Counter(
        f"{n.domain + ':' if n.domain else ''}{n.op_type}"
        for n in model.graph.node
        if n.op_type != "Constant"
    )


def ort_extended(src: str, dst: str) -> None:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = dst
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def compc_opt(compc: str, src: str, outdir: str) -> str:
    subprocess.run(
        [compc, src, "-p", "egraph-opt", "-o", outdir, "--force"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return os.path.join(outdir, "model.onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--compc", default=None)
    ap.add_argument("--ops", action="store_true", help="print op histograms")
    args = ap.parse_args()
    compc = args.compc or find_compc()
    models = args.models or default_models()
    print(f"onnxruntime {ort.__version__}, compc {compc}\n")
    print("| model | exported | compc egraph-opt | ORT extended | ORT extended after compc |")
    print("|---|---:|---:|---:|---:|")
    hists = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(models):
            name = os.path.basename(src)
            ours = compc_opt(compc, src, os.path.join(tmp, f"out{i}"))
            theirs = os.path.join(tmp, f"ort{i}.onnx")
            ort_extended(src, theirs)
            both = os.path.join(tmp, f"both{i}.onnx")
            ort_extended(ours, both)
            counts = [ops(p) for p in (src, ours, theirs, both)]
            totals = [sum(c.values()) for c in counts]
            print(f"| {name} | " + " | ".join(str(t) for t in totals) + " |")
            hists.append((name, counts))
    if args.ops:
        for name, counts in hists:
            print(f"\n{name}")
            keys = sorted(set().union(*counts), key=lambda k: (-counts[0][k], k))
            print("| op | exported | compc | ORT extended | ORT after compc |")
            print("|---|---:|---:|---:|---:|")
            for k in keys:
                print(f"| {k} | " + " | ".join(str(c[k]) for c in counts) + " |")


if __name__ == "__main__":
    main()

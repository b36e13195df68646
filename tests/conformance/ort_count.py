#!/usr/bin/env python3
"""Runs the ONNX backend node test cases in stock onnxruntime with the comparison rule
compc's conformance runner uses, and prints the pass count and the failing cases.

    python3 tests/conformance/ort_count.py [DIR] [--write-failures FILE] [--write-count FILE]

DIR defaults to the data/node folder of Debian's libonnx-testdata package. The rule:
floats equal after NaN/inf equality within rtol 1e-3 / atol 1e-5, integers, bools and
shapes exactly.
"""
import argparse
import ctypes
import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

DEFAULT_DIR = "/usr/share/libonnx-testdata/data/node"


def read_value(path, type_proto):
    """A .pb file as the Python value onnxruntime takes for a graph input of `type_proto`."""
    with open(path, "rb") as f:
        data = f.read()
    kind = type_proto.WhichOneof("value") if type_proto is not None else "tensor_type"
    if kind == "sequence_type":
        s = onnx.SequenceProto()
        s.ParseFromString(data)
        return numpy_helper.to_list(s)
    if kind == "optional_type":
        o = onnx.OptionalProto()
        o.ParseFromString(data)
        return numpy_helper.to_optional(o)
    t = onnx.TensorProto()
    t.ParseFromString(data)
    a = numpy_helper.to_array(t)
    return a


def is_bf16(vi):
    return (
        vi.type.WhichOneof("value") == "tensor_type"
        and vi.type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    )


def run_bf16(sess, inputs, outputs, feeds):
    """numpy has no bfloat16: the suite stores such data as uint16 bit patterns, and they
    go in and come out of onnxruntime as OrtValues of the declared type."""
    vals = {}
    for vi in inputs:
        if vi.name not in feeds:
            continue
        a = np.ascontiguousarray(feeds[vi.name])
        if is_bf16(vi):
            vals[vi.name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                a.view(np.uint16), onnx.TensorProto.BFLOAT16
            )
        else:
            vals[vi.name] = ort.OrtValue.ortvalue_from_numpy(a)
    res = sess.run_with_ort_values([o.name for o in outputs], vals)
    got = []
    for o, v in zip(outputs, res):
        if is_bf16(o):
            n = v.tensor_size_in_bytes()
            raw = ctypes.string_at(v.data_ptr(), n)
            got.append(np.frombuffer(raw, dtype=np.uint16).reshape(v.shape()))
        else:
            got.append(v.numpy())
    return got


def close(expected, got):
    """The comparison rule shared with the Rust runner (src/conformance.rs)."""
    if isinstance(expected, list):
        return isinstance(got, list) and len(expected) == len(got) and all(
            close(e, g) for e, g in zip(expected, got)
        )
    if expected is None:
        return got is None
    if got is None:
        return False
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return False
    if expected.dtype.kind in "fc":
        if got.dtype.kind not in "fc":
            return False
        e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
        g = got.astype(e.dtype)
        nan_e, nan_g = np.isnan(e), np.isnan(g)
        if not np.array_equal(nan_e, nan_g):
            return False
        inf_e, inf_g = np.isinf(e), np.isinf(g)
        if not np.array_equal(inf_e, inf_g) or not np.array_equal(e[inf_e], g[inf_g]):
            return False
        fin = ~(nan_e | inf_e)
        return bool(np.all(np.abs(e[fin] - g[fin]) <= 1e-5 + 1e-3 * np.abs(e[fin])))
    if expected.dtype.kind in "OSU":
        return expected.tolist() == got.tolist()
    return expected.dtype == got.dtype and np.array_equal(expected, got)


def run_case(case_dir):
    """None when the case passes, else a one-line reason."""
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # noqa: BLE001 - every load error is a failing case
        return "load: " + str(e).splitlines()[0][:200]
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    outputs = list(model.graph.output)
    for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
        feeds = {}
        for i, vi in enumerate(inputs):
            p = os.path.join(ds, f"input_{i}.pb")
            if os.path.exists(p):
                feeds[vi.name] = read_value(p, vi.type)
        expected = []
        for i, vi in enumerate(outputs):
            p = os.path.join(ds, f"output_{i}.pb")
            expected.append(read_value(p, vi.type) if os.path.exists(p) else None)
        try:
            if any(is_bf16(v) for v in inputs + outputs):
                got = run_bf16(sess, inputs, outputs, feeds)
            else:
                got = sess.run([o.name for o in outputs], feeds)
        except Exception as e:  # noqa: BLE001
            return "run: " + str(e).splitlines()[0][:200]
        for o, e, g in zip(outputs, expected, got):
            if e is not None and not close(e, g):
                return f"output `{o.name}` differs"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    ap.add_argument("--write-failures")
    ap.add_argument("--write-count")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    cases = sorted(
        d for d in glob.glob(os.path.join(a.dir, "*")) if os.path.exists(os.path.join(d, "model.onnx"))
    )
    if not cases:
        sys.exit(f"no cases under {a.dir}")
    failed = []
    for c in cases:
        name = os.path.basename(c)
        try:
            why = run_case(c)
        except Exception as e:  # noqa: BLE001
            why = "error: " + str(e).splitlines()[0][:200]
        if why is not None:
            failed.append(name)
            if a.verbose:
                print(f"FAIL {name}: {why}")
    passed = len(cases) - len(failed)
    print(f"onnxruntime {ort.__version__}: {passed}/{len(cases)} passed")
    for f in failed:
        print("  " + f)
    if a.write_failures:
        with open(a.write_failures, "w") as f:
            f.write("".join(x + "\n" for x in failed))
    if a.write_count:
        with open(a.write_count, "w") as f:
            f.write(f"{passed}\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peer timing for benches/onnx_io.rs: median latency of stock onnxruntime (CPU) on one
model and input set, with the thread count given, printed as JSON."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inputs, reps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    with np.load(inputs) as z:
        feed = {k: z[k] for k in z.files}
    sess.run(None, feed)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_ms": 1000 * float(np.median(times)), "reps": reps}))


if __name__ == "__main__":
    main()

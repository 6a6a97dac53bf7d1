"""Runs ONNX models under emulated arm64 for ``test_arm64_parity`` (numpy + onnxruntime only).

Usage: ``python arm64_runner.py jobs.json``; each job is ``{"model", "input", "output"}``
(absolute paths; ``input``/``output`` are ``.npy``). Prints the platform as JSON.
"""

from __future__ import annotations

import json
import platform
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    """Run every job with one intra-op thread, as the workers do."""
    with open(sys.argv[1]) as fh:
        jobs = json.load(fh)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    for job in jobs:
        session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
        x = np.load(job["input"])
        out = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.save(job["output"], out)
    print(json.dumps({"machine": platform.machine(), "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()

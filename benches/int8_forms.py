#!/usr/bin/env python3
"""onnxruntime side of the int8-form comparison (benches/README.md, "int8 forms"): times each
ONNX file on N×2×224×224 (batch 1 and 8, 1 and 2 threads) and compares its outputs with the
first (fp32) file's on real 224×224 crops (max and mean absolute difference of dY, dX and the
cell-probability logit).

    python benches/int8_forms.py models/nuclei_light.onnx /tmp/q_weights.onnx /tmp/q_qdq.onnx /tmp/q_qoperator.onnx
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018" / "test"


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def real_batch(n=8):
    """Normalised 224×224 crops of test images (1st–99th percentile to 0–1)."""
    from cellpose import io, transforms
    files = sorted(DATA.glob("*_img.png"))[::12][:n]
    out = np.zeros((len(files), 2, 224, 224), np.float32)
    for k, f in enumerate(files):
        img = io.imread(str(f)).astype(np.float32)
        if img.ndim == 3:
            img = img[..., :3].mean(-1)
        img = transforms.normalize99(img)[:224, :224]
        out[k, 0, : img.shape[0], : img.shape[1]] = img
    return out


def main():
    paths = sys.argv[1:]
    x_real = real_batch()
    ref = session(paths[0], 2).run(None, {"image": x_real})[0]
    for p in paths:
        for threads in (1, 2):
            s = session(p, threads)
            for batch in (1, 8):
                n = batch * 2 * 224 * 224
                x = (((np.arange(n) * 7919) % 1000) / 1000.0).astype(np.float32).reshape(batch, 2, 224, 224)
                for _ in range(2):
                    s.run(None, {"image": x})
                ts = []
                for _ in range(10 if batch == 1 else 4):
                    t = time.perf_counter()
                    s.run(None, {"image": x})
                    ts.append(time.perf_counter() - t)
                print(f"ort {Path(p).name} threads={threads} batch={batch} median_ms={statistics.median(ts) * 1e3:.2f}")
        y = session(p, 2).run(None, {"image": x_real})[0]
        d = np.abs(y - ref)
        print(f"ort {Path(p).name} vs fp32 on real crops: max_abs dY/dX {d[:, :2].max():.4f} "
              f"cellprob {d[:, 2].max():.4f}; mean_abs dY/dX {d[:, :2].mean():.5f} cellprob {d[:, 2].mean():.5f}; "
              f"flow range {np.abs(ref[:, :2]).max():.2f}")


if __name__ == "__main__":
    main()

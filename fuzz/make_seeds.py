#!/usr/bin/env python3
"""Seeds of the `model_from_bytes` fuzz target: small ONNX files of the Cellpose network
(offline tooling; needs torch, onnx and cellpose==3.1.1.3, as models/).

A randomly initialised CPnet with tiny widths (2, 4, 8, 8, 8) exported as the shipped
models are (`models/export.py`, with a size model), its int8 form with activation scales
(`models/quantize.py`), and damaged copies: truncated, metadata edited to invalid values,
a size model of the wrong length; and the minimal network the frame and volume targets
segment most inputs with (`minimal_network`, 784 bytes). The files run from 64 bytes to
140 kB (the tiny fp32 CPnet), so that libFuzzer mutates them quickly (the shipped 2 MB files are added as seeds by `fuzz/README.md`'s command, not
committed twice).

    python fuzz/make_seeds.py fuzz/corpus/model_from_bytes
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from cellpose import resnet_torch

ROOT = Path(__file__).resolve().parent.parent  # the checkout's root, where the package `models` is


def main():
    out = Path(sys.argv[1]).resolve()  # the tools below run from the checkout's root
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = resnet_torch.CPnet([2, 4, 8, 8, 8], 3, 3, diam_mean=17.0)
    net.diam_labels.data = torch.Tensor([20.0])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ck = tmp / "tiny.pth"
        net.save_model(str(ck))
        size = tmp / "size.npy"
        np.save(size, {"A": np.linspace(-0.1, 0.1, 8, dtype=np.float32), "smean": np.zeros(8, np.float32),
                       "ymean": np.float32(0.1), "diam_mean": 17.0, "l2": np.float32(1)})
        fp32, int8 = out / "tiny.onnx", out / "tiny_int8.onnx"
        py = sys.executable
        subprocess.run([py, "-m", "models.export", "--checkpoint", ck, "--out", fp32, "--size-model", size,
                        "--version", "fuzz-seed"], check=True, cwd=ROOT)
        subprocess.run([py, "-m", "models.quantize", "--model", fp32, "--out", int8, "--mode", "weights",
                        "--calibrate", "4"], check=True, cwd=ROOT)
    raw = fp32.read_bytes()
    (out / "tiny_truncated.onnx").write_bytes(raw[: len(raw) // 2])
    (out / "tiny_header_only.onnx").write_bytes(raw[:64])
    for name, edits in {
        "tiny_bad_diam_mean.onnx": {"cellpose.diam_mean": "-3"},
        "tiny_nan_diam_labels.onnx": {"cellpose.diam_labels": "nan"},
        "tiny_short_size_model.onnx": {"cellpose.size_model.A": "0.1,0.2"},
        "tiny_bad_int8_scales.onnx": {"cellpose.int8.input_scales": "nonexistent=1,x=-1"},
    }.items():
        m = onnx.load(str(int8 if "int8" in name else fp32))
        for p in m.metadata_props:
            if p.key in edits:
                p.value = edits.pop(p.key)
        for k, v in edits.items():
            e = m.metadata_props.add()
            e.key, e.value = k, v
        onnx.save(m, str(out / name))
    minimal_network(out / "minimal_int8.onnx")
    for p in sorted(out.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


def minimal_network(path):
    """The smallest file the library takes for a Cellpose network: one int8 3×3 convolution
    from the 2 input channels to the 3 outputs (dY, dX, cell probability) and their spatial
    mean as a 3-value style vector, with the metadata and size model a shipped file has.

    The frame and volume fuzz targets segment most inputs with it: its network pass costs
    next to nothing, so an execution is spent on what those targets explore (views, strides,
    pixel types, normalisation, rescaling, dynamics, masks) and not on a U-Net whose cost per
    pixel does not depend on the input. Its flows are a fixed linear filter of the image,
    smooth where the image is, noise where it is noise.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, size=(3, 2, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(weights, "w_q"),
        numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array([0.0, 0.0, 0.5], np.float32), "bias"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "spatial"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="/conv/w"),
        helper.make_node("Conv", ["image", "w", "bias"], ["flows"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["flows", "spatial"], ["style"], name="/style", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "minimal_cpnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [helper.make_tensor_value_info("flows", TensorProto.FLOAT, ["N", 3, "H", "W"]),
         helper.make_tensor_value_info("style", TensorProto.FLOAT, ["N", 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in {
        "cellpose.diam_mean": "17", "cellpose.diam_labels": "20", "cellpose.version": "fuzz-minimal",
        "cellpose.size_model.A": "0.05,-0.05,0.02", "cellpose.size_model.smean": "0,0,0",
        "cellpose.size_model.ymean": "0.1",
        "cellpose.quantization": "weights+activations",
        "cellpose.int8.input_scales": "/conv/Conv=0.02",
    }.items():
        e = model.metadata_props.add()
        e.key, e.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Quantize the exported fp32 model to int8 for tract (offline tooling).

Three forms, measured against each other in models/README.md:
  weights   weight-only: Conv weights stored as int8 (per output channel) with a
            DequantizeLinear in front of each Conv; activations stay f32. tract folds the
            dequantization into constants at load, so it runs the fp32 kernels.
  qdq       static QDQ: u8 activations and per-channel i8 weights around every Conv,
            calibrated on training images (onnxruntime `quantize_static`).
  qoperator static QOperator (QLinearConv) with the same calibration.
onnxruntime leaves `value_info` shape annotations that tract 0.23.9 rejects, so they are
removed; metadata_props of the input model are kept.

    python models/quantize.py --model models/nuclei_light.onnx --out models/nuclei_light_int8.onnx --mode weights
"""
import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, helper, TensorProto

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018" / "train"


def weight_only(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    new_nodes = []
    for node in g.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
            base = node.input[1]
            g.initializer.remove(inits[base])
            g.initializer.extend([
                numpy_helper.from_array(q, base + "_q"),
                numpy_helper.from_array(scale.astype(np.float32), base + "_scale"),
                numpy_helper.from_array(np.zeros(w.shape[0], np.int8), base + "_zp"),
            ])
            new_nodes.append(helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zp"], [base], axis=0))
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    return model


class Calibration:
    """Normalised 224×224 crops of training images, as the network sees them."""

    def __init__(self, n=32, seed=0):
        from cellpose import io, transforms
        rng = np.random.default_rng(seed)
        files = sorted(DATA.glob("*_img.png"))
        pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
        self.items = []
        for i in pick:
            img = io.imread(str(files[i])).astype(np.float32)
            if img.ndim == 3:
                img = img[..., :3].mean(-1)
            img = transforms.normalize99(img)
            h, w = img.shape
            y, x = rng.integers(0, max(1, h - 224) + 1), rng.integers(0, max(1, w - 224) + 1)
            crop = np.zeros((224, 224), np.float32)
            c = img[y:y + 224, x:x + 224]
            crop[:c.shape[0], :c.shape[1]] = c
            self.items.append({"image": np.stack([crop, np.zeros_like(crop)])[None]})
        self.it = iter(self.items)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.items)


def static(model_path, out, fmt):
    from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = str(out) + ".pre.onnx"
    quant_pre_process(str(model_path), pre, skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.c = Calibration()

        def get_next(self):
            return self.c.get_next()

    quantize_static(pre, str(out), Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    op_types_to_quantize=["Conv"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    Path(pre).unlink()
    return onnx.load(str(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["weights", "qdq", "qoperator"], default="weights")
    args = ap.parse_args()
    src = onnx.load(args.model)
    meta = [(p.key, p.value) for p in src.metadata_props]
    m = weight_only(src) if args.mode == "weights" else static(args.model, args.out, args.mode)
    del m.graph.value_info[:]  # tract rejects onnxruntime's shape annotations
    del m.metadata_props[:]
    for k, v in meta + [("cellpose.quantization", args.mode)]:
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, args.out)
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]}…) mode={args.mode}")


if __name__ == "__main__":
    main()

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

--calibrate N (weights form) also writes the activation scales the Rust library needs to
compute in int8 (`cellpose.int8.input_scales`, see src/model.rs): the fp32 model runs in
onnxruntime on N normalised 224×224 crops of training images, and the input of every 3×3
convolution that follows a ReLU gets scale = max over the crops / 255 (u8 codes, zero point 0).
Without it the file is weight-only and the library computes in f32.

    python -m models.quantize --model models/nuclei_light.onnx --out models/nuclei_light_int8.onnx --mode weights --calibrate 64
"""
import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, helper, TensorProto

from .folders import data_root

DATA = data_root() / "dsb2018" / "train"


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
    """Normalised 224×224 crops of training images, as the network sees them: `n` images
    drawn from the folders (`data`: folders of NAME_img files, or dataset folders holding
    train/), as evenly over the folders as they allow; `channels` as the CLI's."""

    def __init__(self, n=32, seed=0, data=DATA, channels=(0, 0)):
        from cellpose import io, transforms
        from .folders import IMAGE_SUFFIXES, train_folder
        rng = np.random.default_rng(seed)
        folders = [train_folder(Path(d)) for d in (data if isinstance(data, (list, tuple)) else [data])]
        per = [sorted(p for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                      and p.name[: -len(p.suffix)].endswith("_img")) for f in folders]
        for f, files in zip(folders, per):
            if not files:
                raise SystemExit(f"no NAME_img.png/.tif images in {f}")
        files = []
        for k, fs in enumerate(per):
            share = n // len(per) + (1 if k < n % len(per) else 0)
            files += [fs[i] for i in rng.choice(len(fs), size=min(share, len(fs)), replace=False)]
        self.items = []
        for path in files:
            img = io.imread(str(path)).astype(np.float32)
            planes = []
            for c in channels:
                if img.ndim == 2:
                    planes.append(img if c == 0 and not planes else np.zeros_like(img))
                elif c == 0:
                    planes.append(img[..., :3].mean(-1) if not planes else np.zeros(img.shape[:2], np.float32))
                else:
                    planes.append(img[..., c - 1])
            h, w = planes[0].shape
            y, x = rng.integers(0, max(1, h - 224) + 1), rng.integers(0, max(1, w - 224) + 1)
            crop = np.zeros((2, 224, 224), np.float32)
            for j, p in enumerate(planes):
                if p.any():
                    c = transforms.normalize99(p)[y:y + 224, x:x + 224]
                    crop[j, :c.shape[0], :c.shape[1]] = c
            self.items.append({"image": crop[None]})
        self.it = iter(self.items)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.items)


def input_scales(model_path, n, data, channels=(0, 0)):
    """`NAME=SCALE,…` for every 3×3 Conv whose input is a Relu output: max activation / 255."""
    import onnxruntime as ort
    m = onnx.load(str(model_path))
    producers = {o: node for node in m.graph.node for o in node.output}
    inits = {i.name: i for i in m.graph.initializer}
    targets = {}
    for node in m.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        kernel = list(inits[node.input[1]].dims[2:])
        src = producers.get(node.input[0])
        if kernel == [3, 3] and src is not None and src.op_type == "Relu":
            targets[node.name] = node.input[0]
    if not targets:
        raise SystemExit("no 3×3 convolution after a ReLU to calibrate")
    names = sorted(set(targets.values()))
    for t in names:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    peak = dict.fromkeys(names, 0.0)
    for item in Calibration(n=n, data=data, channels=channels).items:
        outs = sess.run(names, item)
        for t, v in zip(names, outs):
            peak[t] = max(peak[t], float(np.max(v)))
    pairs = []
    for conv, t in targets.items():
        scale = peak[t] / 255.0 if peak[t] > 0 else 1.0 / 255.0
        pairs.append(f"{conv}={scale:.9g}")
    print(f"calibrated {len(pairs)} convolution inputs on {n} crops of {data}")
    return ",".join(pairs)


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
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="with --mode weights: activation scales from N training crops, so the library computes in int8")
    ap.add_argument("--data", nargs="+", default=[str(DATA)],
                    help="folders of NAME_img training images (or dataset folders holding train/) for calibration")
    ap.add_argument("--channels", default="0,0", metavar="C,N", help="the model's channel choice, as the CLI's")
    args = ap.parse_args()
    if args.calibrate and args.mode != "weights":
        raise SystemExit("--calibrate is for --mode weights (the qdq/qoperator forms calibrate themselves)")
    src = onnx.load(args.model)
    meta = [(p.key, p.value) for p in src.metadata_props if p.key != "cellpose.int8.input_scales"]
    if args.calibrate:
        meta.append(("cellpose.int8.input_scales", input_scales(args.model, args.calibrate, args.data,
                                                                  tuple(int(v) for v in args.channels.split(",")))))
    m = weight_only(src) if args.mode == "weights" else static(args.model, args.out, args.mode)
    del m.graph.value_info[:]  # tract rejects onnxruntime's shape annotations
    del m.metadata_props[:]
    form = "weights+activations" if args.calibrate else args.mode
    for k, v in meta + [("cellpose.quantization", form)]:
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, args.out)
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]}…) form={form}")


if __name__ == "__main__":
    main()

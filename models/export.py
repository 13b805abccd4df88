#!/usr/bin/env python3
"""Export a Cellpose (3.x, U-Net `CPnet`) checkpoint to the ONNX form the Rust library runs.

Offline tooling. Accepts a state dict saved by this project's `models/train.py` (`best.pth`,
`final.pth`) or by the reference package (`CellposeModel.net.save_model`, the files under
`~/.cellpose/models` or a user's retrained model): widths are read from the weights.

The graph: input `image` N×2×H×W float32; outputs `flows` N×3×H×W (dY, dX, cell-probability
logit) and `style` N×S. H and W are symbolic. The reference `make_style` pools with a kernel
the size of the feature map, which does not export with symbolic sizes; it is replaced by a
mean over H and W, which is the same computation.

Metadata (`metadata_props`, read by the Rust `ModelInfo`): cellpose.diam_mean,
cellpose.diam_labels, cellpose.nbase, cellpose.channels, cellpose.version,
cellpose.training_data, cellpose.license, and with --size-model the size-model parameters
cellpose.size_model.{A,smean,ymean} (see src/size_model.rs).

    python -m models.export --checkpoint models/run_light/best.pth --out models/nuclei_light_fp32.onnx \
        --size-model models/run_light/size_model.npy --version nuclei-light-1
"""
import argparse
import re

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from cellpose import resnet_torch


def widths_from_state(sd):
    """nbase (input channels first) from the projection weights of the down blocks."""
    levels = sorted({int(m.group(1)) for k in sd for m in [re.match(r"downsample\.down\.res_down_(\d+)\.proj\.1\.weight", k)] if m})
    nbase = [sd[f"downsample.down.res_down_{levels[0]}.proj.1.weight"].shape[1]]
    nbase += [sd[f"downsample.down.res_down_{i}.proj.1.weight"].shape[0] for i in levels]
    return nbase


class ExportNet(torch.nn.Module):
    """CPnet with an export-friendly style pooling; returns (flows, style) only."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        t0 = self.net.downsample(x)
        style = t0[-1].mean(dim=(2, 3))
        style = style / torch.sum(style ** 2, dim=1, keepdim=True) ** 0.5
        t1 = self.net.upsample(style, t0, False)
        return self.net.output(t1), style


def load_net(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if "net" in sd and isinstance(sd["net"], dict):  # train.py's last.pth checkpoint
        sd = sd["net"]
    nbase = widths_from_state(sd)
    nout = sd["output.2.weight"].shape[0]
    net = resnet_torch.CPnet(nbase, nout, 3, mkldnn=False, diam_mean=float(sd["diam_mean"][0]))
    net.load_state_dict(sd)
    net.eval()
    return net, nbase


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-model", help="npy saved by models/train_size.py (A, smean, ymean)")
    ap.add_argument("--version", default="custom")
    ap.add_argument("--channels", default="0: nuclei (or the channel to segment, grayscale), 1: optional second channel (zeros for nuclei)")
    ap.add_argument("--training-data", default="custom")
    ap.add_argument("--license", default="unspecified")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()

    net, nbase = load_net(args.checkpoint)
    size_model = None
    if args.size_model:
        # Checked before exporting: a size model fitted on another network's styles would
        # only be refused later, when the library loads the file.
        size_model = np.load(args.size_model, allow_pickle=True).item()
        for key in ("A", "smean"):
            if np.ravel(size_model[key]).size != nbase[-1]:
                raise SystemExit(f"{args.size_model}: {key} has {np.ravel(size_model[key]).size} values, "
                                 f"but the network's style vector has {nbase[-1]} (widths {nbase}); "
                                 f"fit the size model on this checkpoint (python -m models.train_size)")
    wrapped = ExportNet(net).eval()
    x = torch.randn(1, nbase[0], 224, 224)
    with torch.no_grad():
        ref_y, ref_s = net(x)[:2]
        y, s = wrapped(x)
    assert torch.allclose(ref_y, y, atol=1e-4) and torch.allclose(ref_s, s, atol=1e-5), "export wrapper differs from CPnet"
    torch.onnx.export(wrapped, (x,), args.out, input_names=["image"], output_names=["flows", "style"],
                      dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "flows": {0: "N", 2: "H", 3: "W"}, "style": {0: "N"}},
                      opset_version=args.opset, dynamo=False)
    m = onnx.load(args.out)
    meta = {
        "cellpose.diam_mean": f"{float(net.diam_mean.item()):g}",
        "cellpose.diam_labels": f"{float(net.diam_labels.item()):g}",
        "cellpose.nbase": ",".join(str(v) for v in nbase),
        "cellpose.channels": args.channels,
        "cellpose.version": args.version,
        "cellpose.training_data": args.training_data,
        "cellpose.license": args.license,
        "cellpose.reference": "cellpose==3.1.1.3 CPnet",
    }
    if size_model is not None:
        p = size_model
        meta["cellpose.size_model.A"] = ",".join(f"{v:.9g}" for v in np.ravel(p["A"]))
        meta["cellpose.size_model.smean"] = ",".join(f"{v:.9g}" for v in np.ravel(p["smean"]))
        meta["cellpose.size_model.ymean"] = f"{float(np.ravel(p['ymean'])[0]):.9g}"
    del m.metadata_props[:]
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, args.out)
    print(f"wrote {args.out}: nbase={nbase} diam_mean={meta['cellpose.diam_mean']} diam_labels={meta['cellpose.diam_labels']}")


if __name__ == "__main__":
    main()

"""The reference pipeline (cellpose==3.1.1.3 `CellposeModel`) on this project's weights.

Offline tooling shared by the fixture, evaluation and benchmark scripts.
"""
import torch
import torch.nn.functional as F
from cellpose import models, resnet_torch

from .export import widths_from_state


class PadStyle(torch.nn.Module):
    """cellpose 3.1.1.3 `core.run_net` stores styles in a 256-wide array; a network with a
    narrower style vector (the light widths) is wrapped so its style is zero-padded to 256.
    Zeros change neither the L2 normalisation nor the flows."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.nout = net.nout
        self.mkldnn = False
        self.diam_mean = net.diam_mean
        self.diam_labels = net.diam_labels

    @property
    def device(self):
        return self.net.device

    def forward(self, x):
        y, style, t0 = self.net(x)
        if style.shape[1] < 256:
            style = F.pad(style, (0, 256 - style.shape[1]))
        return y, style, t0


def reference_model(weights: str) -> models.CellposeModel:
    """A CPU `CellposeModel` running the CPnet state dict at `weights`."""
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    if "net" in sd and isinstance(sd["net"], dict):
        sd = sd["net"]
    nbase = widths_from_state(sd)
    diam_mean = float(sd["diam_mean"][0])
    m = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=diam_mean, nchan=2)
    net = resnet_torch.CPnet(nbase, 3, 3, mkldnn=False, diam_mean=diam_mean)
    net.load_state_dict(sd)
    net.eval()
    m.net = PadStyle(net)
    m.diam_mean = float(net.diam_mean.item())
    m.diam_labels = float(net.diam_labels.item())
    return m

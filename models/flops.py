#!/usr/bin/env python3
"""Parameters and GFLOPs (2 × multiply-adds of Conv and Linear layers) of a checkpoint, per
224×224 tile and per 512×512 frame (the padded 528×528 frame is covered by 3×3 tiles at the
reference's default 10 % overlap).

    python -m models.flops models/run_light/best.pth
"""
import sys

import torch

from .export import load_net


def main():
    net, nbase = load_net(sys.argv[1])
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs.append(out.numel() * mod.in_channels // mod.groups * k)
        elif isinstance(mod, torch.nn.Linear):
            macs.append(out.numel() * mod.in_features)

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, nbase[0], 224, 224))
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    tile = 2 * sum(macs) / 1e9
    print(f"nbase={nbase} parameters={params} gflops_per_224_tile={tile:.3f} gflops_per_512_frame={9 * tile:.2f}")


if __name__ == "__main__":
    main()

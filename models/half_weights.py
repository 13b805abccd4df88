#!/usr/bin/env python3
"""Half-precision copy of a CPnet state dict, and back (offline tooling).

A lent GPU machine returns files of at most 16 MiB; the standard widths' fp32 weights are
26 MB, their fp16 copy 13 MB. The copy is converted back to fp32 here and becomes the run's
`best.pth`: the shipped model is then exactly those rounded weights, for the reference and
for the Rust pipeline alike (rounding to fp16 changes each weight by at most 2^-11 of it).

    python -m models.half_weights models/run_standard/best.pth /tmp/out/best_f16.pth
    python -m models.half_weights --to-float best_f16.pth models/run_standard/best.pth
"""
import argparse

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--to-float", action="store_true", help="fp16 -> fp32 instead of fp32 -> fp16")
    args = ap.parse_args()
    sd = torch.load(args.src, map_location="cpu", weights_only=True)
    if "net" in sd and isinstance(sd["net"], dict):  # a train.py last.pth
        sd = sd["net"]
    dtype = torch.float32 if args.to_float else torch.float16
    # diam_mean / diam_labels stay fp32: they set the rescaling, not the network.
    out = {k: (v.to(dtype) if v.is_floating_point() and not k.startswith("diam_") else v)
           for k, v in sd.items()}
    torch.save(out, args.dst)
    n = sum(v.numel() for v in out.values())
    print(f"wrote {args.dst}: {len(out)} tensors, {n} values, {dtype}")


if __name__ == "__main__":
    main()

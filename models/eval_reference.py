#!/usr/bin/env python3
"""Accuracy and speed of the reference pipeline (cellpose==3.1.1.3 on CPU) on a dsb2018
folder with this project's weights: AP at IoU 0.5/0.75/0.9 from
`cellpose.metrics.average_precision`, averaged over images, and seconds per image.

    python -m models.eval_reference --weights models/run_light/best.pth --dir ../shared/data/dsb2018/test
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
from cellpose import io, metrics

from .reference import reference_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = reference_model(args.weights)
    names = sorted(p.name[:-len("_img.png")] for p in Path(args.dir).glob("*_img.png"))
    if args.limit:
        names = names[:args.limit]
    aps, secs = [], 0.0
    for n in names:
        img = io.imread(str(Path(args.dir) / f"{n}_img.png"))
        truth = io.imread(str(Path(args.dir) / f"{n}_masks.png")).astype(np.int32)
        t = time.perf_counter()
        masks = model.eval(img, channels=[0, 0], diameter=None)[0]
        secs += time.perf_counter() - t
        ap = metrics.average_precision([truth], [masks.astype(np.int32)], threshold=[0.5, 0.75, 0.9])[0][0]
        aps.append(ap)
        print(f"{n} n_pred={masks.max()} AP50={ap[0]:.3f} AP75={ap[1]:.3f} AP90={ap[2]:.3f}", flush=True)
    a = np.array(aps)
    print(f"threads={args.threads} seconds_per_image={secs / len(names):.3f}")
    print(f"AP50={a[:, 0].mean():.4f} AP75={a[:, 1].mean():.4f} AP90={a[:, 2].mean():.4f} n={len(names)}")


if __name__ == "__main__":
    main()

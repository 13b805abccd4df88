#!/usr/bin/env python3
"""Choose the mask thresholds that go with a trained model, on the held-out part of train/.

The reference defaults (cellprob_threshold 0, flow_threshold 0.4) were chosen for the
official models; a model trained here may sit elsewhere. This script runs the reference
network once per held-out image (at the annotated diameter, so the choice does not depend
on the size model), then recomputes masks with the reference `dynamics.compute_masks` for
every pair of thresholds and prints mean AP at IoU 0.5/0.75/0.9 per pair, best last.
The test split is never looked at.

    python -m models.tune_thresholds --weights models/run_light/best.pth [--augment]
"""
import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from cellpose import dynamics, io, metrics

from .reference import reference_model
from .train import DATA, held_out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--augment", action="store_true", help="test-time flips (reference augment=True)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cellprob", default="-2,-1.5,-1,-0.5,0,0.5")
    ap.add_argument("--flow", default="0.3,0.4,0.5,0.6,0.8,0")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    with open(data / "manifest_train.csv") as f:
        rows = [r for r in csv.DictReader(f) if held_out(r["name"], args.val_fraction)]
    model = reference_model(args.weights)
    nets = []
    for r in rows:
        img = io.imread(str(data / "train" / f"{r['name']}_img.png"))
        truth = io.imread(str(data / "train" / f"{r['name']}_masks.png")).astype(np.int32)
        diameter = float(r["diameter"])
        _, flows, _ = model.eval(img, channels=[0, 0], diameter=diameter, augment=args.augment)
        # flows[1]: dP at the image's size, flows[2]: cell probability (logits)
        rescale = model.diam_mean / diameter
        nets.append((r["modality"], truth, flows[1], flows[2], rescale))
        print(f"{r['name']} {r['modality']} diameter={diameter:.1f}", file=sys.stderr, flush=True)
    results = []
    for cp, ft in itertools.product([float(v) for v in args.cellprob.split(",")],
                                    [float(v) for v in args.flow.split(",")]):
        aps, by_mod = [], {}
        for modality, truth, dP, prob, rescale in nets:
            # the same call and settings as `CellposeModel.eval` (niter 200 / rescale)
            masks = dynamics.resize_and_compute_masks(dP, prob, niter=200 / rescale, cellprob_threshold=cp,
                                                      flow_threshold=ft, min_size=15,
                                                      device=torch.device("cpu"))
            a = metrics.average_precision([truth], [masks.astype(np.int32)], threshold=[0.5, 0.75, 0.9])[0][0]
            aps.append(a)
            by_mod.setdefault(modality, []).append(a[0])
        m = np.array(aps).mean(0)
        mods = " ".join(f"{k}={np.mean(v):.3f}(n={len(v)})" for k, v in sorted(by_mod.items()))
        results.append((m[0], m[1], cp, ft))
        print(f"cellprob={cp:+.1f} flow={ft:.1f} AP50={m[0]:.4f} AP75={m[1]:.4f} AP90={m[2]:.4f} {mods}",
              flush=True)
    best = max(results)
    print(f"best on held-out: cellprob_threshold={best[2]} flow_threshold={best[3]} "
          f"AP50={best[0]:.4f} AP75={best[1]:.4f} n={len(nets)} augment={args.augment}")


if __name__ == "__main__":
    main()

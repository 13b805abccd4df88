#!/usr/bin/env python3
"""Average the weights of several epochs of one training run (stochastic weight averaging).

Offline tooling. Late in a run, while the learning rate is small, consecutive epochs sit at
nearby points of the same loss basin; their mean weights often generalise better than any
one of them, at no cost at inference (the averaged network is an ordinary CPnet). The
batch-norm statistics of an average are not the average of the statistics, so they are
recomputed here with forward passes over augmented training crops, as in training.

The snapshots are the per-epoch checkpoints `RUN/snapshots/epNNN.pth` that
`train.py --keep-snapshots` leaves (hard links of each epoch's `last.pth`: network +
optimiser state); each file's own epoch number is checked against its name. The
script reports the held-out loss (the same crops and seed as `train.py`'s model selection)
of the average, so that it is chosen by the same rule as `best.pth`, never by test scores.

Example (three windows, each written as RUN/swa_FIRST_LAST.pth):
    python -m models.average_weights --run models/run_standard_long --windows 340-359,320-359,290-359 --write
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from cellpose import resnet_torch

from .train import DATA, augmented_batch, held_out_loss, prepare_split


def average_states(paths: list[Path], expected_epochs: list[int]) -> dict:
    """Element-wise mean of the networks stored in `paths` (floating-point tensors; integer
    buffers, the batch counters that batch-norm recomputation resets anyway, are the first
    file's)."""
    total = None
    for p, ep in zip(paths, expected_epochs):
        state = torch.load(p, map_location="cpu", weights_only=False)
        if state["epoch"] != ep:
            raise SystemExit(f"{p}: holds epoch {state['epoch']}, expected {ep}")
        net = state["net"]
        if total is None:
            total = {k: v.double().clone() if v.is_floating_point() else v.clone() for k, v in net.items()}
        else:
            for k, v in net.items():
                if v.is_floating_point():
                    total[k] += v.double()
    n = len(paths)
    return {k: (v / n).float() if v.is_floating_point() else v for k, v in total.items()}


def recompute_batch_norm(net, data, flows, diam, batch_size: int, bsize: int, passes: int, device, probs=None):
    """Cumulative batch-norm statistics over `passes` passes of augmented training crops
    (the training augmentation and crop size; images drawn with `probs`, each source's
    share, when given), replacing the running averages."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    net.train()
    with torch.no_grad():
        for p in range(passes):
            np.random.seed(10_000 + p)
            perm = (np.random.permutation(len(data)) if probs is None
                    else np.random.choice(len(data), len(data), p=probs))
            for k in range(0, len(data), batch_size):
                inds = perm[k:k + batch_size]
                x = augmented_batch(inds, data, flows, diam, net.diam_mean.item(), bsize)[0]
                net(torch.from_numpy(x).to(device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="training run folder (config.json, snapshots/)")
    ap.add_argument("--windows", required=True,
                    help="comma-separated FIRST-LAST epoch ranges (inclusive), each averaged on its own")
    ap.add_argument("--write", action="store_true", help="write each average as RUN/swa_FIRST_LAST.pth")
    ap.add_argument("--bn-passes", type=int, default=2, help="passes over the training crops for batch norm")
    ap.add_argument("--data", nargs="+", help="the run's sources (default: its config.json's, else dsb2018)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("average")

    run = Path(args.run)
    cfg = json.loads((run / "config.json").read_text())
    windows = [tuple(int(v) for v in w.split("-")) for w in args.windows.split(",")]
    for first, last in windows:
        missing = [e for e in range(first, last + 1) if not (run / "snapshots" / f"ep{e}.pth").is_file()]
        if missing:
            raise SystemExit(f"window {first}-{last}: no snapshot for epochs {missing}")

    device = torch.device("cpu")
    data = args.data or cfg.get("data") or [str(DATA)]
    data = [data] if isinstance(data, str) else data
    channels = tuple(cfg.get("channels", (0, 0)))
    _, _, (tr_data, tr_flows, diam_tr, tr_src), (va_data, va_flows, diam_va, va_src) = \
        prepare_split(data, cfg["val_fraction"], device, channels)
    weights = ([float(v) for v in cfg["data_weights"].split(",")] if cfg.get("data_weights")
               else np.bincount(tr_src, minlength=len(data)).astype(float))
    counts = np.bincount(tr_src, minlength=len(data))
    probs = np.array([weights[k] / counts[k] for k in tr_src])
    probs = probs / probs.sum()
    nbase = [int(v) for v in str(cfg["nbase"]).split(",")]
    history = {h["epoch"]: h["val_loss"] for h in json.loads((run / "history.json").read_text())}

    for first, last in windows:
        epochs = list(range(first, last + 1))
        singles = sorted((history[e], e) for e in epochs if e in history)
        if singles:
            log.info(f"epochs {first}..{last}: held-out loss of single epochs {singles[0][0]:.4f} "
                     f"(best, epoch {singles[0][1]}) .. {singles[-1][0]:.4f}, "
                     f"mean {np.mean([v for v, _ in singles]):.4f}")
        net = resnet_torch.CPnet(nbase, 3, 3, diam_mean=cfg["diam_mean"]).to(device)
        net.load_state_dict(average_states([run / "snapshots" / f"ep{e}.pth" for e in epochs], epochs))
        recompute_batch_norm(net, tr_data, tr_flows, diam_tr, cfg["batch_size"], cfg["bsize"],
                             args.bn_passes, device, probs)
        vl, per = held_out_loss(net, va_data, va_flows, diam_va, cfg["batch_size"], device, va_src, weights)
        each = f" ({' '.join(f'{p:.4f}' for p in per)} per source)" if len(data) > 1 else ""
        log.info(f"average of epochs {first}..{last} ({len(epochs)}): held-out loss {vl:.4f}{each}")
        if args.write:
            out = run / f"swa_{first}_{last}.pth"
            net.save_model(str(out))
            log.info(f"wrote {out}")

if __name__ == "__main__":
    main()

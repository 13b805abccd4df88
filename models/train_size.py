#!/usr/bin/env python3
"""Fit the size model (style vector → diameter) as the reference `train.train_size` does.

Offline tooling. Random rotated/rescaled crops of the training images go through the trained
network; the log of each crop's object diameter relative to `diam_mean` is regressed on the
style vector by ridge regression: A, smean, ymean. Differences from the reference
(cellpose 3.1.1.3 hard-codes a 256-wide style array, which the light widths do not fill, and a
fixed penalty `l2_regularization=1`):
- the style width is the network's;
- by default 2-3 epochs of 224-px crops instead of 10 epochs of 512-px crops, to fit a CPU
  budget (the style is a global average, so the crop size changes only how many objects it
  averages over);
- the residual is also reported on crops of the held-out part of train/ (which the network's
  training did not use), and `--l2` may list several ridge penalties λ: the one with the lowest
  held-out residual is kept. The default is the reference's λ = 1. Style vectors have unit
  length, so their spread per component shrinks as the network widens, and a fixed λ
  regularises a wider network harder.

    python -m models.train_size --weights models/run_light/best.pth --out models/run_light/size_model.npy
"""
import argparse

import numpy as np
import torch
from cellpose import models, train, transforms

from .export import load_net
from .train import DATA, load_split, parse_channels


def repeats(src, weights):
    """How many times each image (of source `src[i]`) is used so that each source holds
    about its share (`weights`) of the crops, as training drew them: a small source is
    repeated (each repeat is another random crop), nothing is dropped. None: once each."""
    if weights is None:
        return None
    counts = np.bincount(src, minlength=len(weights))
    w = np.asarray(weights, float) / np.sum(weights)
    # Copies of each source's images so that its count / total ≈ its share.
    target = max(counts[k] / w[k] for k in range(len(w)) if w[k] > 0 and counts[k] > 0)
    reps = [int(round(target * w[k] / counts[k])) if counts[k] else 0 for k in range(len(w))]
    return [max(1, reps[k]) for k in src]


def crop_styles(net, device, imgs, lbls, epochs, bsize, batch_size, seed0, channels=(0, 0), reps=None):
    """Style vectors and log-diameter targets (relative to diam_mean) of random crops;
    image i is used `reps[i]` times an epoch (once without `reps`). Flows and diameters are
    computed once per image, not per repeat."""
    diam_mean = net.diam_mean.item()
    norm = dict(models.normalize_default)
    norm["normalize"] = True
    (data, _, _, _, _, diam, *_rest) = train._process_train_test(
        train_data=imgs, train_labels=lbls, channels=list(channels), normalize_params=norm,
        min_train_masks=1, device=torch.device("cpu"))
    data = train._reshape_norm(data, channels=list(channels), normalize_params=norm)
    if reps is not None:
        idx = [i for i, r in enumerate(reps) for _ in range(r)]
        data, diam = [data[i] for i in idx], np.asarray(diam)[idx]
    n = len(data)
    styles, ys = [], []
    for ep in range(epochs):
        np.random.seed(seed0 + ep)
        perm = np.random.permutation(n)
        for k in range(0, n, batch_size):
            inds = perm[k:k + batch_size]
            x, _, scale = transforms.random_rotate_and_resize([data[i] for i in inds], scale_range=1.0,
                                                              xy=(bsize, bsize))
            with torch.no_grad():
                s = net(torch.from_numpy(x).to(device))[1].cpu().numpy()
            styles.append(s)
            ys.append(np.log(diam[inds]) - np.log(diam_mean) + np.log(scale))
        print(f"epoch {ep}: {sum(len(s) for s in styles)} crops", flush=True)
    return np.concatenate(styles), np.concatenate(ys)


def ridge(S, y, lam):
    """Reference form: A solves (X Xᵀ + λI) A = X (y − ȳ) with X the centred styles, transposed."""
    # float64: with 256 styles and λ near 1e-6 the float32 normal equations are too
    # ill-conditioned to solve (the training residual then rises as λ falls).
    S = S.astype(np.float64)
    y = y.astype(np.float64)
    smean = S.mean(0)
    X = (S - smean).T
    ymean = y.mean()
    A = np.linalg.solve(X @ X.T + lam * np.eye(X.shape[0]), X @ (y - ymean))
    return A, smean, ymean


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", nargs="+",
                    default=[str(DATA)],
                    help="the training run's --data: folders of pairs, dataset folders or packs")
    ap.add_argument("--data-weights", help="the training run's --data-weights (each source's share of the crops)")
    ap.add_argument("--channels", type=parse_channels, default=(0, 0), metavar="C,N")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--held-out-epochs", type=int, default=4,
                    help="passes of crops over the held-out images for choosing λ")
    ap.add_argument("--l2", default="1",
                    help="candidate ridge penalties, comma-separated; the one with the lowest held-out "
                         "residual is kept (default: the reference's 1; a search: 1e-6,1e-5,1e-4,1e-3,1e-2,0.1,1)")
    ap.add_argument("--bsize", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net, _ = load_net(args.weights)
    net = net.to(device)
    diam_mean = net.diam_mean.item()
    _, _, (imgs, lbls), (va_imgs, va_lbls), tr_src, va_src = load_split(args.data, args.val_fraction, args.channels)
    w = [float(v) for v in args.data_weights.split(",")] if args.data_weights else None
    S, y = crop_styles(net, device, imgs, lbls, args.epochs, args.bsize, args.batch_size, 0, args.channels,
                       repeats(tr_src, w))
    Sv, yv = crop_styles(net, device, va_imgs, va_lbls, args.held_out_epochs, args.bsize, args.batch_size, 1000,
                         args.channels, repeats(va_src, w))
    print(f"std of target: training crops {np.std(y):.3f}, held-out crops {np.std(yv):.3f}")
    best = None
    for lam in (float(v) for v in args.l2.split(",")):
        A, smean, ymean = ridge(S, y, lam)
        fit = np.std(A @ (S - smean).T + ymean - y)
        held = np.std(A @ (Sv - smean).T + ymean - yv)
        print(f"λ={lam:g}: residual std of log-diameter {fit:.3f} on {len(y)} training crops, "
              f"{held:.3f} on {len(yv)} held-out crops")
        if best is None or held < best[0]:
            best = (held, lam, A, smean, ymean)
    held, lam, A, smean, ymean = best
    print(f"chosen λ={lam:g} (held-out residual {held:.3f})")
    np.save(args.out, {"A": A.astype(np.float32), "smean": smean.astype(np.float32), "ymean": np.float32(ymean),
                       "diam_mean": diam_mean, "l2": np.float32(lam)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

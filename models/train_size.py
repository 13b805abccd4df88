#!/usr/bin/env python3
"""Fit the size model (style vector → diameter) as the reference `train.train_size` does.

Offline tooling. Random rotated/rescaled crops of the training images go through the trained
network; the log of each crop's object diameter relative to `diam_mean` is regressed on the
style vector by ridge regression (λ = 1): A, smean, ymean. Differences from the reference
(cellpose 3.1.1.3 hard-codes a 256-wide style array, which the light widths do not fill):
the style width is the network's, and by default 3 epochs of 224-px crops instead of 10
epochs of 512-px crops, to fit a CPU budget (the style is a global average, so the crop size
changes only how many objects it averages over).

    python models/train_size.py --weights models/run_light/best.pth --out models/run_light/size_model.npy
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from cellpose import models, resnet_torch, train, transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export import load_net  # noqa: E402
from train import load_split  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018"),
                    help="dataset folder, or a pack from models/pack_data.py")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bsize", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net, _ = load_net(args.weights)
    net = net.to(device)
    diam_mean = net.diam_mean.item()
    _, _, (imgs, lbls), _ = load_split(Path(args.data), 0.1)
    norm = dict(models.normalize_default)
    norm["normalize"] = True
    (data, flows, _, _, _, diam, *_rest) = train._process_train_test(
        train_data=imgs, train_labels=lbls, channels=[0, 0], normalize_params=norm,
        min_train_masks=1, device=torch.device("cpu"))
    data = train._reshape_norm(data, channels=[0, 0], normalize_params=norm)
    n = len(data)
    styles, ys = [], []
    for ep in range(args.epochs):
        np.random.seed(ep)
        perm = np.random.permutation(n)
        for k in range(0, n, args.batch_size):
            inds = perm[k:k + args.batch_size]
            batch = [data[i] for i in inds]
            x, _, scale = transforms.random_rotate_and_resize(batch, scale_range=1.0, xy=(args.bsize, args.bsize))
            with torch.no_grad():
                s = net(torch.from_numpy(x).to(device))[1].cpu().numpy()
            styles.append(s)
            ys.append(np.log(diam[inds]) - np.log(diam_mean) + np.log(scale))
        print(f"epoch {ep}: {len(styles) * args.batch_size} crops", flush=True)
    S = np.concatenate(styles)
    y = np.concatenate(ys)
    smean = S.mean(0)
    X = (S - smean).T
    ymean = y.mean()
    A = np.linalg.solve(X @ X.T + np.eye(X.shape[0]), X @ (y - ymean))
    pred = A @ X + ymean
    print(f"fit: {len(y)} crops, residual std of log-diameter {np.std(pred - y):.3f} (std of target {np.std(y):.3f})")
    np.save(args.out, {"A": A.astype(np.float32), "smean": smean.astype(np.float32), "ymean": np.float32(ymean), "diam_mean": diam_mean})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

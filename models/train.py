#!/usr/bin/env python3
"""Train the shipped nuclei model with the reference Cellpose training code.

Offline tooling, never a run-time dependency of the library. Uses cellpose==3.1.1.3:
its data processing (`train._process_train_test`: label -> flow targets by heat diffusion,
diameters), its augmentation (`transforms.random_rotate_and_resize`), its loss
(`train._loss_fn_seg`) and its network (`resnet_torch.CPnet`). The loop itself mirrors
`train.train_seg` but checkpoints network, optimiser, RNG and epoch after every epoch so
an interrupted run resumes where it stopped (`--resume`), and it keeps the checkpoint
with the lowest loss on a held-out part of train/ (`best.pth`).

Example (CPU, 2 threads):
    python -m models.train --out models/run_light --nbase 2,16,32,64,128 --epochs 40
    python -m models.train --out models/run_light --resume      # after an interruption
    python -m models.train --out models/run_light --resume --bf16  # 2x faster on AVX512_BF16
"""
import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from cellpose import resnet_torch, train, transforms, models

from .folders import DataError, data_root, held_out, read_folders, split  # noqa: F401 - held_out is re-exported

DATA = data_root() / "dsb2018"


def parse_channels(s: str):
    """`C,N` as the CLI's `--channels` (0 gray, 1 red, 2 green, 3 blue; N 0 = none)."""
    try:
        c, n = (int(v) for v in s.split(","))
        assert 0 <= c <= 3 and 0 <= n <= 3
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"`{s}` is not a channel choice: expected C,N with C, N in 0..=3 "
                                         "(0 gray, 1 red, 2 green, 3 blue; N = 0: no nucleus channel)")
    return (c, n)


def load_split(data, val_fraction: float, channels=(0, 0), min_images: int = 3):
    """The training and held-out parts of every `--data` source (a folder of pairs, a
    dataset folder holding train/, or a pack from models/pack_data.py), checked first
    (`folders.read_folders`). Returns names, images, labels and source index of each part:
    (tr_names, va_names, (tr_imgs, tr_lbls), (va_imgs, va_lbls), tr_src, va_src)."""
    sources = read_folders([str(d) for d in (data if isinstance(data, (list, tuple)) else [data])],
                           channels, min_images)
    tr_n, va_n, tr_i, tr_l, va_i, va_l, tr_s, va_s = ([] for _ in range(8))
    for k, f in enumerate(sources):
        tr, va = split(f, val_fraction)
        for idx, names, imgs, lbls, src in ((tr, tr_n, tr_i, tr_l, tr_s), (va, va_n, va_i, va_l, va_s)):
            for i in idx:
                names.append(f.names[i])
                imgs.append(f.images[i])
                lbls.append(f.labels[i])
                src.append(k)
    if not va_n:
        raise DataError("training data refused: no image is held out to choose the checkpoint "
                        "(raise --val-fraction or add images)")
    return tr_n, va_n, (tr_i, tr_l), (va_i, va_l), np.array(tr_s), np.array(va_s)


def prepare_split(data, val_fraction: float, device, channels=(0, 0), min_images: int = 3):
    """Reference preprocessing of both parts: the channel choice (`channels`, as the CLI's)
    + percentile normalisation, label flows by heat diffusion, per-image diameters.
    Returns the names, then (images, flow targets, diameters, source index) of the training
    part and of the held-out part."""
    tr_names, va_names, (tr_imgs, tr_lbls), (va_imgs, va_lbls), tr_src, va_src = \
        load_split(data, val_fraction, channels, min_images)
    norm = dict(models.normalize_default)
    norm["normalize"] = True
    ch = list(channels)
    (tr_data, tr_flows, _, _, _, diam_tr, va_data, va_flows, _, _, _, diam_va, _) = \
        train._process_train_test(train_data=tr_imgs, train_labels=tr_lbls,
                                  test_data=va_imgs, test_labels=va_lbls,
                                  channels=ch, normalize_params=norm,
                                  min_train_masks=1, device=device)
    tr_data = train._reshape_norm(tr_data, channels=ch, normalize_params=norm)
    va_data = train._reshape_norm(va_data, channels=ch, normalize_params=norm)
    return tr_names, va_names, (tr_data, tr_flows, diam_tr, tr_src), (va_data, va_flows, diam_va, va_src)


def augmented_batch(inds, data, flows, diam, diam_mean: float, bsize: int):
    """The reference augmentation of images `inds`: each rescaled so its objects have the
    training diameter (scale range 0.5), randomly rotated, flipped and cropped to `bsize`.
    Returns network inputs and flow targets."""
    imgs, lbls = train._get_batch(inds, data=data, labels=flows)
    rsc = np.array([diam[i] for i in inds]) / diam_mean
    x, y = transforms.random_rotate_and_resize(imgs, Y=lbls, rescale=rsc, scale_range=0.5,
                                               xy=(bsize, bsize))[:2]
    return x, y


def held_out_loss(net, va_data, va_flows, diam_va, batch_size: int, device, va_src=None, weights=None):
    """Loss on one 224-px augmented crop of every held-out image, drawn with a fixed seed
    so that epochs (and checkpoints) are comparable. With several sources (`va_src`, the
    source of each image; `weights`, each source's share of training), the mean of each
    source's mean, weighted as in training, so that a small source (38 whole-cell images
    beside 459 nuclei) counts as much in choosing the checkpoint as it did in training.
    Returns (loss, [mean loss per source])."""
    net.eval()
    np.random.seed(42)
    losses = np.zeros(len(va_data))
    with torch.no_grad():
        for k in range(0, len(va_data), batch_size):
            inds = np.arange(k, min(k + batch_size, len(va_data)))
            x, y = augmented_batch(inds, va_data, va_flows, diam_va, net.diam_mean.item(), 224)
            pred = net(torch.from_numpy(x).to(device))[0]
            for j, i in enumerate(inds):  # the reference loss is a mean: per image, one at a time
                losses[i] = train._loss_fn_seg(y[j:j + 1], pred[j:j + 1], device).item()
    if va_src is None:
        return losses.mean(), [losses.mean()]
    per = [losses[va_src == k].mean() if (va_src == k).any() else float("nan") for k in range(len(weights))]
    w = np.array([wk if not np.isnan(p) else 0.0 for wk, p in zip(weights, per)])
    return float(sum(wk * (p if not np.isnan(p) else 0.0) for wk, p in zip(w, per)) / w.sum()), per


def lr_schedule(n_epochs: int, lr: float) -> np.ndarray:
    """Reference shape (linear warm-up over 10 epochs, constant, halving at the end),
    scaled to short runs: the decay covers the last quarter of the epochs."""
    warm = min(10, max(1, n_epochs // 10))
    sched = np.concatenate([np.linspace(0, lr, warm), lr * np.ones(max(0, n_epochs - warm))])
    decay = n_epochs // 4
    if decay >= 5:
        step = max(1, decay // 5)
        for i in range(decay):
            sched[n_epochs - decay + i] = lr / 2 ** (1 + i // step)
    return sched


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", nargs="+", default=[str(DATA)], metavar="FOLDER",
                    help="one or more folders of NAME_img + NAME_masks pairs (png/tif), dataset folders holding "
                    "train/, or packs from models.pack_data (default: $CELLPOSE_DATA/dsb2018, "
                    "CELLPOSE_DATA defaulting to ../shared/data)")
    ap.add_argument("--data-weights", help="each source's share of an epoch's crops, e.g. 1,1 (default: in "
                    "proportion to its images); also weights the held-out loss")
    ap.add_argument("--samples-per-epoch", type=int, default=0,
                    help="crops per epoch (default: the number of training images)")
    ap.add_argument("--channels", type=parse_channels, default=(0, 0), metavar="C,N",
                    help="channel to segment and nucleus channel, as the CLI's --channels (default 0,0: gray)")
    ap.add_argument("--min-images", type=int, default=3, help="refuse fewer annotated images than this")
    ap.add_argument("--nbase", help="widths, input channels first (default: those of --init, else the light "
                    "widths 2,16,32,64,128)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--bsize", type=int, default=224, help="training crop side (reference: 224)")
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--diam-mean", type=float, default=17.0)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", help="start from these weights (a CPnet state dict, fp16 or fp32, e.g. the "
                    "best_f16.pth a GPU session returns) with a fresh optimiser; ignored with --resume")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast + channels-last for the training passes (held-out loss stays fp32); "
                    "2.1x faster per batch on a CPU with AVX512_BF16")
    ap.add_argument("--keep-snapshots", action="store_true",
                    help="keep every epoch's checkpoint as snapshots/epNNN.pth (for models.average_weights)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop cleanly after this long (0: no limit)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler()])
    log = logging.getLogger("train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if args.nbase is None:
        args.nbase = "2,16,32,64,128"
        if args.init:
            from .export import widths_from_state
            sd = torch.load(args.init, map_location="cpu", weights_only=True)
            args.nbase = ",".join(str(v) for v in widths_from_state(sd.get("net", sd)))
    cfg_path = out / "config.json"
    keys = ("nbase", "epochs", "batch_size", "bsize", "lr", "weight_decay", "diam_mean", "val_fraction",
            "data", "data_weights", "samples_per_epoch", "channels")
    if args.resume and cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        for k in keys:
            if k in cfg:  # runs made before the key existed keep the argument's value
                setattr(args, k, cfg[k])
        args.channels = tuple(args.channels)
    else:
        cfg_path.write_text(json.dumps({k: getattr(args, k) for k in keys}, indent=1))
    nbase = [int(v) for v in str(args.nbase).split(",")]

    tr_names, va_names, (tr_data, tr_flows, diam_tr, tr_src), (va_data, va_flows, diam_va, va_src) = \
        prepare_split(args.data, args.val_fraction, device, args.channels, args.min_images)
    nsrc = len(args.data)
    counts = np.bincount(tr_src, minlength=nsrc)
    weights = (np.array([float(v) for v in str(args.data_weights).split(",")]) if args.data_weights
               else counts.astype(float))
    if len(weights) != nsrc or (weights < 0).any() or weights.sum() <= 0:
        raise DataError(f"--data-weights {args.data_weights}: expected {nsrc} non-negative values, one per --data")
    # Probability of drawing each training image: its source's share, split evenly in the source.
    probs = np.array([weights[k] / counts[k] for k in tr_src])
    probs /= probs.sum()
    samples = args.samples_per_epoch or len(tr_data)
    for k, d in enumerate(args.data):
        log.info(f"source {k}: {d}: train {counts[k]} images, held out {(va_src == k).sum()}, "
                 f"share of crops {weights[k] / weights.sum():.2f}")
    log.info(f"train {len(tr_names)} images, held out {len(va_names)}; {samples} crops an epoch")

    net = resnet_torch.CPnet(nbase, 3, 3, diam_mean=args.diam_mean).to(device)
    if args.init and not (args.resume and (out / "last.pth").exists()):
        init = torch.load(args.init, map_location=device, weights_only=True)
        net.load_state_dict({k: v.float() for k, v in init.items()})
        net.diam_mean.data = torch.Tensor([args.diam_mean]).to(device)  # the file's own is replaced
        log.info(f"initialised from {args.init}")
    # The mean object diameter the network saw in training (the reference's diam_labels),
    # each image counted as often as it is drawn.
    net.diam_labels.data = torch.Tensor([float((probs * diam_tr).sum())]).to(device)
    if args.bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = lr_schedule(args.epochs, args.lr)
    start, best, history = 0, float("inf"), []
    ck = out / "last.pth"
    if args.resume and ck.exists():
        state = torch.load(ck, map_location=device, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        start, best, history = state["epoch"] + 1, state["best"], state["history"]
        log.info(f"resumed at epoch {start}, best held-out loss {best:.4f}")

    t_begin = time.time()
    nimg = len(tr_data)
    for ep in range(start, args.epochs):
        np.random.seed(ep)
        for g in opt.param_groups:
            g["lr"] = sched[ep]
        net.train()
        perm = (np.random.permutation(nimg) if args.data_weights is None and samples == nimg
                else np.random.choice(nimg, samples, p=probs))
        tl, te = 0.0, time.time()
        for k in range(0, len(perm), args.batch_size):
            inds = perm[k:k + args.batch_size]
            x, y = augmented_batch(inds, tr_data, tr_flows, diam_tr, net.diam_mean.item(), args.bsize)
            x = torch.from_numpy(x).to(device)
            if args.bf16:
                x = x.to(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                pred = net(x)[0]
            loss = train._loss_fn_seg(y, pred.float(), device)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tl += loss.item() * len(inds)
        tl /= len(perm)
        vl, per = held_out_loss(net, va_data, va_flows, diam_va, args.batch_size, device, va_src, weights)
        history.append({"epoch": ep, "train_loss": tl, "val_loss": vl, "lr": float(sched[ep]),
                        "seconds": time.time() - te, **({"val_loss_per_source": per} if nsrc > 1 else {})})
        each = f" ({' '.join(f'{p:.4f}' for p in per)})" if nsrc > 1 else ""
        log.info(f"epoch {ep} train_loss={tl:.4f} val_loss={vl:.4f}{each} lr={sched[ep]:.5f} {time.time()-te:.0f}s")
        if vl < best:
            best = vl
            net.save_model(str(out / "best.pth"))  # reference checkpoint format (state_dict)
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": ep, "best": best,
                    "history": history}, out / "last.tmp")
        os.replace(out / "last.tmp", ck)
        if args.keep_snapshots:
            # A hard link keeps this epoch's file alive when the next epoch replaces last.pth
            # (no copy; 80 MB an epoch for the standard widths), for models/average_weights.py.
            (out / "snapshots").mkdir(exist_ok=True)
            snap = out / "snapshots" / f"ep{ep}.pth"
            snap.unlink(missing_ok=True)
            os.link(ck, snap)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        if args.max_minutes and (time.time() - t_begin) > args.max_minutes * 60:
            log.info("time budget reached; stop (resume with --resume)")
            break
    net.save_model(str(out / "final.pth"))


if __name__ == "__main__":
    main()

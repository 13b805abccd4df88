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
    python models/train.py --out models/run_light --nbase 2,16,32,64,128 --epochs 40
    python models/train.py --out models/run_light --resume      # after an interruption
    python models/train.py --out models/run_light --resume --bf16  # 2x faster on AVX512_BF16
"""
import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from cellpose import io, resnet_torch, train, transforms, models

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dsb2018"


def held_out(name: str, fraction: float) -> bool:
    """Deterministic validation split of train/ by a hash of the image name."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return (h % 1000) < fraction * 1000


def load_split(data: Path, val_fraction: float):
    """Names, then images and labels, of the training and held-out parts of train/.
    `data` is the dataset folder (holding train/) or a pack made by models/pack_data.py."""
    if data.is_file():
        from pack_data import load_pack
        pack = load_pack(data)
        names = sorted(pack)
        read = lambda n: pack[n]  # noqa: E731
    else:
        names = sorted(p.name[: -len("_img.png")] for p in (data / "train").glob("*_img.png"))
        read = lambda n: (io.imread(str(data / "train" / f"{n}_img.png")),  # noqa: E731
                          io.imread(str(data / "train" / f"{n}_masks.png")))
    tr, va = [], []
    for n in names:
        (va if held_out(n, val_fraction) else tr).append(n)
    def load(ns):
        pairs = [read(n) for n in ns]
        return [p[0] for p in pairs], [p[1].astype(np.int32) for p in pairs]
    return tr, va, load(tr), load(va)


def prepare_split(data: Path, val_fraction: float, device):
    """Reference preprocessing of both parts of train/: grayscale (channels=[0,0]) +
    percentile normalisation, label flows by heat diffusion, per-image diameters.
    Returns the names, then (images, flow targets, diameters) of the training part and of
    the held-out part."""
    tr_names, va_names, (tr_imgs, tr_lbls), (va_imgs, va_lbls) = load_split(data, val_fraction)
    norm = dict(models.normalize_default)
    norm["normalize"] = True
    (tr_data, tr_flows, _, _, _, diam_tr, va_data, va_flows, _, _, _, diam_va, _) = \
        train._process_train_test(train_data=tr_imgs, train_labels=tr_lbls,
                                  test_data=va_imgs, test_labels=va_lbls,
                                  channels=[0, 0], normalize_params=norm,
                                  min_train_masks=1, device=device)
    tr_data = train._reshape_norm(tr_data, channels=[0, 0], normalize_params=norm)
    va_data = train._reshape_norm(va_data, channels=[0, 0], normalize_params=norm)
    return tr_names, va_names, (tr_data, tr_flows, diam_tr), (va_data, va_flows, diam_va)


def augmented_batch(inds, data, flows, diam, diam_mean: float, bsize: int):
    """The reference augmentation of images `inds`: each rescaled so its objects have the
    training diameter (scale range 0.5), randomly rotated, flipped and cropped to `bsize`.
    Returns network inputs and flow targets."""
    imgs, lbls = train._get_batch(inds, data=data, labels=flows)
    rsc = np.array([diam[i] for i in inds]) / diam_mean
    x, y = transforms.random_rotate_and_resize(imgs, Y=lbls, rescale=rsc, scale_range=0.5,
                                               xy=(bsize, bsize))[:2]
    return x, y


def held_out_loss(net, va_data, va_flows, diam_va, batch_size: int, device) -> float:
    """Mean loss on one 224-px augmented crop of every held-out image, drawn with a fixed
    seed so that epochs (and checkpoints) are comparable."""
    net.eval()
    np.random.seed(42)
    vl = 0.0
    with torch.no_grad():
        for k in range(0, len(va_data), batch_size):
            inds = np.arange(k, min(k + batch_size, len(va_data)))
            x, y = augmented_batch(inds, va_data, va_flows, diam_va, net.diam_mean.item(), 224)
            vl += train._loss_fn_seg(y, net(torch.from_numpy(x).to(device))[0], device).item() * len(inds)
    return vl / len(va_data)


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
    ap.add_argument("--data", default=str(DATA), help="dataset folder, or a pack from models/pack_data.py")
    ap.add_argument("--nbase", default="2,16,32,64,128")
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
                    help="keep every epoch's checkpoint as snapshots/epNNN.pth (for models/average_weights.py)")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop cleanly after this long (0: no limit)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler()])
    log = logging.getLogger("train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    cfg_path = out / "config.json"
    if args.resume and cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        for k in ("nbase", "epochs", "batch_size", "bsize", "lr", "weight_decay", "diam_mean", "val_fraction"):
            setattr(args, k, cfg[k])
    else:
        cfg_path.write_text(json.dumps({k: getattr(args, k) for k in
                            ("nbase", "epochs", "batch_size", "bsize", "lr", "weight_decay", "diam_mean", "val_fraction")}, indent=1))
    nbase = [int(v) for v in str(args.nbase).split(",")]

    tr_names, va_names, (tr_data, tr_flows, diam_tr), (va_data, va_flows, diam_va) = \
        prepare_split(Path(args.data), args.val_fraction, device)
    log.info(f"train {len(tr_names)} images, held out {len(va_names)}")

    net = resnet_torch.CPnet(nbase, 3, 3, diam_mean=args.diam_mean).to(device)
    if args.init and not (args.resume and (out / "last.pth").exists()):
        init = torch.load(args.init, map_location=device, weights_only=True)
        net.load_state_dict({k: v.float() for k, v in init.items()})
        log.info(f"initialised from {args.init}")
    net.diam_labels.data = torch.Tensor([diam_tr.mean()]).to(device)
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
        perm = np.random.permutation(nimg)
        tl, te = 0.0, time.time()
        for k in range(0, nimg, args.batch_size):
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
        tl /= nimg
        vl = held_out_loss(net, va_data, va_flows, diam_va, args.batch_size, device)
        history.append({"epoch": ep, "train_loss": tl, "val_loss": vl, "lr": float(sched[ep]),
                        "seconds": time.time() - te})
        log.info(f"epoch {ep} train_loss={tl:.4f} val_loss={vl:.4f} lr={sched[ep]:.5f} {time.time()-te:.0f}s")
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

#!/usr/bin/env python3
"""Pack a dsb2018-layout split into one .npz that `train.py --data` and
`train_size.py --data` read like the folder (offline tooling).

Why: a lent GPU machine receives only the repository and what a call carries (64 MiB in
all, see models/README.md, "Training on a lent GPU"); `../shared/data` does not travel. The
pack holds, per image, a lossless PNG of exactly the array `cellpose.io.imread` returns
(uint8 images, 2D or H×W×3 RGB, and uint16 label images): 32 MiB for train/, against 40 MiB
for `np.savez_compressed` of the raw arrays. Training on it is training on the folder;
`--check` decodes every image and compares it with the folder.

    python -m models.pack_data --out models/pack/dsb2018_train.npz
"""
import argparse
from pathlib import Path

import cv2
import numpy as np
from cellpose import io

from .folders import data_root

DATA = data_root() / "dsb2018"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA), help="dataset folder holding train/")
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", action="store_true", help="decode the pack and compare it with the folder")
    args = ap.parse_args()
    folder = Path(args.data) / args.split
    names = sorted(p.name[: -len("_img.png")] for p in folder.glob("*_img.png"))
    if not names:
        raise SystemExit(f"no *_img.png in {folder}")
    out = Path(args.out)
    if args.check:
        pack = load_pack(out)
        for n in names:
            img, lbl = pack[n]
            for got, f in ((img, f"{n}_img.png"), (lbl, f"{n}_masks.png")):
                want = io.imread(str(folder / f))
                if got.shape != want.shape or got.dtype != want.dtype or (got != want).any():
                    raise SystemExit(f"{out}: {f} differs from the folder")
        print(f"{out}: all {len(names)} images and labels equal the folder's")
        return
    arrays = {"names": np.array(names)}
    for i, n in enumerate(names):
        arrays[f"img_{i}"] = encode(io.imread(str(folder / f"{n}_img.png")))
        arrays[f"lbl_{i}"] = encode(io.imread(str(folder / f"{n}_masks.png")))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"wrote {out}: {len(names)} images, {out.stat().st_size / 2**20:.1f} MiB")


def encode(a: np.ndarray) -> np.ndarray:
    """Lossless PNG bytes of a 2D or H×W×3 (RGB) array; OpenCV writes colour as BGR."""
    ok, buf = cv2.imencode(".png", a[..., ::-1] if a.ndim == 3 else a, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit(f"PNG encoding failed for an array of shape {a.shape}, {a.dtype}")
    return buf


def decode(buf: np.ndarray) -> np.ndarray:
    a = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(a[..., ::-1]) if a.ndim == 3 else a


def load_pack(path: Path):
    """{name: (image, labels)} from a pack written by this script."""
    with np.load(path) as z:
        return {str(n): (decode(z[f"img_{i}"]), decode(z[f"lbl_{i}"])) for i, n in enumerate(z["names"])}


if __name__ == "__main__":
    main()

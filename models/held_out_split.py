#!/usr/bin/env python3
"""Lay out the held-out part of train/ (the images `train.py` keeps out of training for
model selection) as a split that `examples/evaluate.rs` reads, so that checkpoints can be
compared by the Rust pipeline's AP on images the test split never sees.

Offline tooling. Writes DEST/heldout/NAME_img.png and NAME_masks.png as symbolic links to
the dataset (nothing is copied) and DEST/manifest_heldout.csv with the dataset's manifest
rows of those images.

Example:
    python -m models.held_out_split --dest /tmp/ho
    cargo run --release --example evaluate -- models/nuclei_light_int8.onnx /tmp/ho/heldout auto 2
"""
import argparse
import os
from pathlib import Path

from .train import DATA, held_out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", required=True, help="folder to create (holds heldout/ and its manifest)")
    ap.add_argument("--data", default=str(DATA), help="dataset folder holding train/ and manifest_train.csv")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="as in the run's config.json")
    args = ap.parse_args()

    data, dest = Path(args.data).resolve(), Path(args.dest)
    split = dest / "heldout"
    split.mkdir(parents=True, exist_ok=True)
    rows = (data / "manifest_train.csv").read_text().splitlines()
    kept = [rows[0]]
    for row in rows[1:]:
        name = row.split(",")[0]
        if not held_out(name, args.val_fraction):
            continue
        for suffix in ("_img.png", "_masks.png"):
            link = split / f"{name}{suffix}"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(data / "train" / f"{name}{suffix}", link)
        kept.append(row)
    (dest / "manifest_heldout.csv").write_text("\n".join(kept) + "\n")
    print(f"{len(kept) - 1} held-out images in {split}")


if __name__ == "__main__":
    main()

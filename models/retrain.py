#!/usr/bin/env python3
"""Retrain a model on folders of annotated images and write a finished, validated model.

Offline tooling (torch and the reference package cellpose==3.1.1.3; never at run time).
One command takes one or more folders of `NAME_img.{png,tif}` + `NAME_masks.{png,tif}` pairs
(any bit depth, gray or RGB; the layout of `../shared/data/<dataset>/train`) and:

1. checks every pair before anything trains (`folders.py`: unpaired files, label images of
   another size, no object, a channel choice the images lack, too few images);
2. trains (`train.py`: the reference's flows, augmentation and loss; checkpoints every epoch,
   so `--resume` continues an interrupted run) from an initial model: `nuclei` or `cyto`
   (this project's weights), or a CPnet state dict such as a checkpoint of the reference;
3. fits the size model for automatic diameter (`train_size.py`);
4. exports `NAME.onnx` (fp32, size model and metadata) and `NAME_int8.onnx` (int8 weights,
   activation scales calibrated on the training folders) (`export.py`, `quantize.py`);
5. validates: the Rust CLI (`cellpose info`) loads both files, segments the held-out images
   (part of the folders never trained on) with the int8 file and automatic diameter, and
   `cellpose eval` scores them;
6. writes `NAME.md`, a short card: data, recipe, files with sha256, held-out AP50/75/90.

    python -m models.retrain --data ../shared/data/usiigaci/train --name my_cells --init cyto \\
        --channels 0,0 --diam-mean 30 --epochs 100 --out-dir my_models

The held-out images are chosen by a hash of each name (10 %, at least one per folder of 3 or
more images), so the same folders always give the same split.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .folders import IMAGE_SUFFIXES, DataError, read_folders, split

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# This project's weights, by the name the library gives the model they became.
INIT_WEIGHTS = {"nuclei": HERE / "run_light" / "best.pth", "cyto": HERE / "run_cyto2" / "best_epoch74.pth"}
STEPS = ("train", "size", "export", "validate", "card")


def tool(name):
    """The command line that runs another tool of this package (`python -m models.NAME`)."""
    return [sys.executable, "-m", f"{__package__}.{name}"]


def run(cmd, log):
    """Runs one step, its output echoed and appended to the run's log; stops on failure. The
    step finds this package from any working directory: the checkout's root leads PYTHONPATH."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + path if path else ""))
    with open(log, "a") as f:
        f.write("+ " + " ".join(str(c) for c in cmd) + "\n")
        p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        out = []
        for line in p.stdout:
            f.write(line)
            out.append(line)
            if "it/s" not in line and "s/it" not in line:
                print(line, end="", flush=True)
        if p.wait() != 0:
            raise SystemExit(f"step failed (exit {p.returncode}): {' '.join(str(c) for c in cmd)}; see {log}")
    return "".join(out)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cellpose_cli(given):
    """The Rust CLI that validates the files: --cellpose-bin, else the checkout's release
    build, else `cellpose` on PATH."""
    for c in ([given] if given else []) + [ROOT / "target" / "release" / "cellpose", shutil.which("cellpose")]:
        if c and Path(c).is_file():
            return Path(c)
    raise SystemExit("the cellpose CLI is needed to validate the model: build it "
                     "(`cargo build --release -p cellpose-cli`) or pass --cellpose-bin")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", nargs="+", required=True, metavar="FOLDER",
                    help="folders of NAME_img + NAME_masks pairs (or dataset folders holding train/)")
    ap.add_argument("--name", required=True, help="model name: writes NAME.onnx, NAME_int8.onnx, NAME.md")
    ap.add_argument("--out-dir", default=".", help="where the model files and card go (default: here)")
    ap.add_argument("--run-dir", help="checkpoints and logs (default: OUT_DIR/run_NAME)")
    ap.add_argument("--init", default="nuclei",
                    help="initial weights: nuclei, cyto (this project's), a CPnet state dict (.pth, e.g. a "
                    "reference checkpoint), or none (default: nuclei)")
    ap.add_argument("--channels", default="0,0", metavar="C,N",
                    help="channel to segment and nucleus channel, as the CLI's --channels (default 0,0: gray)")
    ap.add_argument("--diam-mean", type=float, default=30.0,
                    help="object diameter the images are rescaled to in training (default 30, the reference's "
                    "whole-cell value; 17 for nuclei, whatever --init is)")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--bsize", type=int, default=160, help="training crop side (reference: 224)")
    ap.add_argument("--samples-per-epoch", type=int, default=0, help="crops an epoch (default: one per image)")
    ap.add_argument("--data-weights", help="each folder's share of the crops, e.g. 1,1")
    ap.add_argument("--min-images", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="bfloat16 training passes (2x faster on AVX512_BF16 CPUs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    ap.add_argument("--cellpose-bin", help="the Rust CLI (default: target/release/cellpose, else on PATH)")
    ap.add_argument("--license", default="weights BSD-3-Clause; training data: see the card")
    args = ap.parse_args()

    steps = set(args.steps.split(","))
    if steps - set(STEPS):
        raise SystemExit(f"--steps: unknown {sorted(steps - set(STEPS))}; expected a subset of {','.join(STEPS)}")
    channels = tuple(int(v) for v in args.channels.split(","))
    out_dir = Path(args.out_dir)
    run_dir = Path(args.run_dir) if args.run_dir else out_dir / f"run_{args.name}"
    init = args.init
    if init in INIT_WEIGHTS:
        init = INIT_WEIGHTS[init]
        if not init.is_file():
            raise SystemExit(f"--init {args.init}: {init} is missing (that model has not been trained here)")
    elif init == "none":
        init = None
    elif not Path(init).is_file():
        raise SystemExit(f"--init {init}: not nuclei, cyto, none or a file")

    # 1. Every folder is read and checked before any step runs.
    t0 = time.time()
    try:
        folders = read_folders(args.data, channels, args.min_images)
    except DataError as e:
        raise SystemExit(str(e))
    if args.data_weights:
        weights = [float(v) for v in args.data_weights.split(",")]
        if len(weights) != len(folders):
            raise SystemExit(f"--data-weights {args.data_weights}: expected {len(folders)} values, one per --data")
    else:
        weights = [float(len(split(f, 0.1)[0])) for f in folders]
    held = []
    for f in folders:
        tr, va = split(f, 0.1)
        held += [(f, i) for i in va]
        print(f"{f.path}: {len(f.names)} images ({len(tr)} training, {len(va)} held out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "retrain.log"
    fp32, int8 = out_dir / f"{args.name}.onnx", out_dir / f"{args.name}_int8.onnx"
    common = ["--data", *args.data] + (["--data-weights", args.data_weights] if args.data_weights else [])

    if "train" in steps:
        cmd = [*tool("train"), "--out", run_dir, *common, "--channels", args.channels,
               "--diam-mean", args.diam_mean, "--epochs", args.epochs, "--lr", args.lr, "--bsize", args.bsize,
               "--threads", args.threads, "--min-images", args.min_images]
        cmd += ["--samples-per-epoch", args.samples_per_epoch] if args.samples_per_epoch else []
        cmd += ["--init", init] if init else []
        cmd += ["--bf16"] if args.bf16 else []
        cmd += ["--resume"] if args.resume else []
        run(cmd, log)
    ck = run_dir / "best.pth"
    if "size" in steps:
        run([*tool("train_size"), "--weights", ck, "--out", run_dir / "size_model.npy", *common,
             "--channels", args.channels, "--epochs", 2, "--threads", args.threads], log)
    if "export" in steps:
        names = {0: "gray", 1: "red", 2: "green", 3: "blue"}
        meaning = (f"0: cells to segment ({names[channels[0]]} of the image), "
                   f"1: {'nuclei (' + names[channels[1]] + ')' if channels[1] else 'optional nucleus channel (zeros)'}")
        data_desc = ", ".join(str(Path(d)) for d in args.data)
        run([*tool("export"), "--checkpoint", ck, "--out", fp32, "--size-model", run_dir / "size_model.npy",
             "--version", f"{args.name}-{time.strftime('%Y%m%d', time.gmtime())}", "--channels", meaning,
             "--training-data", f"{data_desc} (90 %; 10 % held out by name hash)", "--license", args.license], log)
        run([*tool("quantize"), "--model", fp32, "--out", int8, "--mode", "weights", "--calibrate", 64,
             "--data", *args.data, "--channels", args.channels], log)
    scores = None
    if "validate" in steps:
        cli = cellpose_cli(args.cellpose_bin)
        for m in (fp32, int8):
            run([cli, "info", m], log)
        # The held-out images of each folder, laid out as folders `cellpose eval` reads
        # (links, no copies), segmented with the int8 file and scored per folder.
        ho_root = run_dir / "heldout"
        shutil.rmtree(ho_root, ignore_errors=True)
        per_folder = []
        for k, f in enumerate(folders):
            idx = [i for g, i in held if g is f]
            if not idx:
                continue
            if not f.path.is_dir():
                raise SystemExit(f"{f.path}: a pack cannot be validated; give the folder")
            ho, pred = ho_root / str(k), ho_root / f"{k}_pred"
            ho.mkdir(parents=True)
            pred.mkdir()
            files = []
            for i in idx:
                for suffix in ("_img", "_masks"):
                    src = next(p for p in f.path.iterdir()
                               if p.suffix.lower() in IMAGE_SUFFIXES and p.name[: -len(p.suffix)] == f.names[i] + suffix)
                    os.symlink(src.resolve(), ho / src.name)
                    if suffix == "_img":
                        files.append(ho / src.name)
            run([cli, "segment", *files, "--model", int8, "--out", pred, "--channels", args.channels], log)
            out = run([cli, "eval", ho, pred], log)
            m = re.search(r"^AP50=([\d.]+) AP75=([\d.]+) AP90=([\d.]+) AJI=([\d.]+) n=(\d+)", out, re.M)
            if m is None:
                raise SystemExit(f"cellpose eval printed no summary for {ho}; see {log}")
            per_folder.append({"folder": str(f.path), "weight": weights[k], "n": int(m.group(5)),
                               **{key: float(v) for key, v in zip(("AP50", "AP75", "AP90", "AJI"), m.groups())}})
        # Each folder's mean, weighted by its share of training (as the held-out loss).
        wsum = sum(r["weight"] for r in per_folder)
        scores = {"per_folder": per_folder, "n": sum(r["n"] for r in per_folder),
                  **{key: sum(r["weight"] * r[key] for r in per_folder) / wsum for key in ("AP50", "AP75", "AP90", "AJI")}}
        (run_dir / "heldout_scores.json").write_text(json.dumps(scores, indent=1))
        print(f"held out: AP50 {scores['AP50']:.4f} AP75 {scores['AP75']:.4f} AP90 {scores['AP90']:.4f} "
              f"(weighted over {len(per_folder)} folders, {scores['n']} images)")
    if "card" in steps:
        if scores is None and (run_dir / "heldout_scores.json").exists():
            scores = json.loads((run_dir / "heldout_scores.json").read_text())
        cfg = json.loads((run_dir / "config.json").read_text())
        hist = json.loads((run_dir / "history.json").read_text())
        best = min(hist, key=lambda h: h["val_loss"])
        lines = [f"# Model card: `{args.name}`", "",
                 "Made by `python -m models.retrain` (cellpose-rs offline tooling).", "",
                 "| file | size | sha256 |", "|---|---|---|"]
        for p in (fp32, int8):
            if p.exists():
                lines.append(f"| `{p.name}` | {p.stat().st_size / 1e6:.1f} MB | `{sha256(p)}` |")
        lines += ["", "## Data", ""]
        for f in folders:
            tr, va = split(f, 0.1)
            lines.append(f"- `{f.path}`: {len(f.names)} annotated images, {len(tr)} trained on, {len(va)} held out")
        lines += ["", "## Recipe", "",
                  f"- initial weights: {args.init}; widths {cfg['nbase']}; diam_mean {cfg['diam_mean']}; "
                  f"channels {args.channels}",
                  f"- {len(hist)} epochs of {cfg['bsize']}-px crops, lr {cfg['lr']}, shares {cfg.get('data_weights')}; "
                  f"best held-out loss {best['val_loss']:.4f} at epoch {best['epoch']} (kept)",
                  "", "## Held-out scores (Rust pipeline, int8, automatic diameter)", ""]
        if scores:
            lines += ["| held-out images of | images | AP50 | AP75 | AP90 | AJI |", "|---|---:|---:|---:|---:|---:|"]
            for r in scores["per_folder"]:
                lines.append(f"| `{r['folder']}` | {r['n']} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP90']:.3f} "
                             f"| {r['AJI']:.3f} |")
            if len(scores["per_folder"]) > 1:
                lines.append(f"| all, each folder weighted by its share | {scores['n']} | {scores['AP50']:.3f} "
                             f"| {scores['AP75']:.3f} | {scores['AP90']:.3f} | {scores['AJI']:.3f} |")
        else:
            lines.append("not measured (run the validate step)")
        lines += ["", f"Use: `cellpose segment IMAGE --model {int8} --channels {args.channels}`", ""]
        card = out_dir / f"{args.name}.md"
        card.write_text("\n".join(lines))
        print(f"wrote {card}")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

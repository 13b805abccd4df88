"""Training data from folders of annotated images, checked before any training starts.

Offline tooling (train.py, train_size.py, quantize.py, held_out_split.py, retrain.py).
Also where the data sets are by default: `data_root()`, the one place every tool takes it from.
A training folder holds `NAME_img.EXT` + `NAME_masks.EXT` pairs (EXT: png, tif, tiff; any
bit depth; gray or RGB images; integer label images, 0 background, one value per object),
the layout of `../shared/data/<dataset>/train`. A dataset folder holding `train/` may be
given instead (its `train/` is used), or a pack written by `pack_data.py` (`.npz`).

Every problem found is reported at once, with the file it is in, and nothing trains:
unpaired files, unreadable files, a label image of another size than its image, a label
image that is not integer or has no object, a channel choice the image does not have, too
few images.
"""
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
DATA_ENV = "CELLPOSE_DATA"


def data_root() -> Path:
    """The folder holding the data sets (`dsb2018/`, `usiigaci/`, ...): `$CELLPOSE_DATA`, else
    `../shared/data` beside the checkout. Every tool's default data path starts here; an
    explicit argument (`--data`, `--dir`, `--train`, ...) wins over it."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class DataError(SystemExit):
    """Refusal of a training folder; the message lists every problem found."""


def held_out(name: str, fraction: float) -> bool:
    """Deterministic validation split by a hash of the image name (the split every run of
    this project used: the nuclei model's held-out images are the same with this module)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return (h % 1000) < fraction * 1000


def _hash(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 1000


def train_folder(path: Path) -> Path:
    """The folder of pairs a `--data` argument names: itself, or its `train/`."""
    if path.is_dir() and not any(_pairs_in(path)[0:2]) and (path / "train").is_dir():
        return path / "train"
    return path


def _pairs_in(folder: Path):
    imgs, masks = {}, {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = p.name[: -len(p.suffix)]
        if stem.endswith("_img"):
            imgs.setdefault(stem[: -len("_img")], []).append(p)
        elif stem.endswith("_masks"):
            masks.setdefault(stem[: -len("_masks")], []).append(p)
    return imgs, masks


@dataclass
class Folder:
    """One training source: its images and label images, in name order."""
    path: Path
    names: list = field(default_factory=list)
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)


def _read(path: Path) -> np.ndarray:
    from cellpose import io  # tifffile for TIFF, OpenCV for PNG (RGB order)
    return io.imread(str(path))


def read_folder(arg: str, channels=(0, 0), problems=None) -> Folder:
    """Reads and checks one `--data` argument. Problems are appended to `problems` (a list)
    so that every folder can be checked before reporting; without it they raise."""
    own = problems is None
    problems = [] if own else problems
    path = Path(arg)
    if path.is_file() and path.suffix == ".npz":
        from .pack_data import load_pack
        pack = load_pack(path)
        f = Folder(path)
        for n in sorted(pack):
            f.names.append(n)
            f.images.append(pack[n][0])
            f.labels.append(pack[n][1])
        _check_arrays(f, channels, problems)
        if own and problems:
            raise DataError("\n".join(problems))
        return f
    if not path.is_dir():
        problems.append(f"{path}: not a folder (nor a .npz pack)")
        if own:
            raise DataError("\n".join(problems))
        return Folder(path)
    folder = train_folder(path)
    imgs, masks = _pairs_in(folder)
    f = Folder(folder)
    for n in sorted(set(imgs) | set(masks)):
        if n not in masks:
            problems.append(f"{imgs[n][0]}: no label image {n}_masks.png/.tif beside it")
            continue
        if n not in imgs:
            problems.append(f"{masks[n][0]}: no image {n}_img.png/.tif beside it")
            continue
        if len(imgs[n]) > 1 or len(masks[n]) > 1:
            problems.append(f"{folder}: {n} has several images or label images "
                            f"({', '.join(p.name for p in imgs[n] + masks[n])})")
            continue
        try:
            img, lbl = _read(imgs[n][0]), _read(masks[n][0])
        except Exception as e:  # noqa: BLE001 - any decoder error is reported with its file
            problems.append(f"{folder / n}: cannot read ({e})")
            continue
        if img is None or lbl is None:
            problems.append(f"{folder / n}: cannot read")
            continue
        f.names.append(n)
        f.images.append(img)
        f.labels.append(lbl)
    if not imgs and not masks:
        problems.append(f"{folder}: no NAME_img.png/.tif + NAME_masks.png/.tif pairs")
    _check_arrays(f, channels, problems)
    if own and problems:
        raise DataError("\n".join(problems))
    return f


def _check_arrays(f: Folder, channels, problems):
    keep = []
    for i, (n, img, lbl) in enumerate(zip(f.names, f.images, f.labels)):
        where = f"{f.path / n}"
        if img.ndim == 3 and img.shape[-1] not in (3, 4) and img.shape[0] in (2, 3, 4):
            img = np.moveaxis(img, 0, -1)  # a channels-first TIFF
            f.images[i] = img
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] > 4):
            problems.append(f"{where}: image of shape {img.shape}: expected H×W or H×W×C (C ≤ 4)")
            continue
        if lbl.ndim == 3 and lbl.shape[-1] in (3, 4):
            problems.append(f"{where}_masks: colour label image: expected one integer label per pixel")
            continue
        if lbl.ndim != 2:
            problems.append(f"{where}_masks: label image of shape {lbl.shape}: expected H×W")
            continue
        if lbl.shape != img.shape[:2]:
            problems.append(f"{where}: label image is {lbl.shape[0]}×{lbl.shape[1]}, "
                            f"image is {img.shape[0]}×{img.shape[1]}")
            continue
        if not np.issubdtype(lbl.dtype, np.integer):
            problems.append(f"{where}_masks: labels of type {lbl.dtype}: expected integers")
            continue
        if lbl.max() <= 0:
            problems.append(f"{where}_masks: no object (every pixel is 0)")
            continue
        nch = 1 if img.ndim == 2 else img.shape[-1]
        for which, c in zip(("channel to segment", "nucleus channel"), channels):
            if c > 0 and (img.ndim == 2 or c > nch):
                problems.append(f"{where}: channels {channels[0]},{channels[1]} ask for colour {c} as "
                                f"the {which}, but the image has {nch} colour channel{'s' if nch > 1 else ''}")
                break
        else:
            keep.append(i)
    f.names = [f.names[i] for i in keep]
    f.images = [f.images[i] for i in keep]
    f.labels = [f.labels[i].astype(np.int32) for i in keep]


def read_folders(args, channels=(0, 0), min_images: int = 3):
    """Reads and checks every `--data` argument; raises `DataError` listing all problems."""
    problems = []
    folders = [read_folder(a, channels, problems) for a in args]
    total = sum(len(f.names) for f in folders)
    if not problems and total < min_images:
        problems.append(f"{total} annotated image{'s' if total != 1 else ''} in "
                        f"{', '.join(str(f.path) for f in folders)}: at least {min_images} are needed "
                        "(some for training, one held out to choose the checkpoint)")
    if problems:
        raise DataError("training data refused, nothing was trained:\n  " + "\n  ".join(problems))
    return folders


def split(folder: Folder, fraction: float):
    """Indices of the training and held-out images of one folder: the hash split, and, when
    that holds none out of a folder with at least 3 images, the image with the smallest hash
    (so that every source has a say in choosing the checkpoint)."""
    va = [i for i, n in enumerate(folder.names) if held_out(n, fraction)]
    if not va and len(folder.names) >= 3:
        va = [min(range(len(folder.names)), key=lambda i: _hash(folder.names[i]))]
    tr = [i for i in range(len(folder.names)) if i not in va]
    return tr, va

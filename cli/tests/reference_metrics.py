"""Reference accuracy numbers for `cellpose eval`, from the Python cellpose package.

Offline tooling, not run by the tests. It takes the ground-truth label images committed in
tests/data/, makes from each a "prediction" with realistic segmentation errors (shifted,
eroded, dilated, dropped, merged and split objects, a spurious object), writes those
predictions to cli/tests/fixtures/reference_pred/NAME_cp_masks.tif, and prints the reference
`cellpose.metrics.average_precision` and `aggregated_jaccard_index` for each pair. The
printed table is committed as cli/tests/fixtures/reference_metrics.txt and the Rust tests
check that `cellpose eval` and the core metrics reproduce it.

Regenerate (from the repository root):
    /work/venv/bin/python cli/tests/reference_metrics.py > cli/tests/fixtures/reference_metrics.txt
"""

import os
import sys

import cv2
import numpy as np
import tifffile
from importlib.metadata import version

from cellpose import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(ROOT, "cli", "tests", "fixtures", "reference_pred")


def shift(lbl, dy, dx):
    """Objects moved by (dy, dx) pixels; what leaves the image is lost."""
    out = np.zeros_like(lbl)
    h, w = lbl.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        lbl[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def erode(lbl):
    """Each object loses the pixels with a 4-neighbour outside it."""
    p = np.pad(lbl, 1)
    same = np.ones(lbl.shape, bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        same &= p[1 + dy:1 + dy + lbl.shape[0], 1 + dx:1 + dx + lbl.shape[1]] == lbl
    return np.where(same, lbl, 0)


def dilate(lbl):
    """Background pixels take the largest label among their 4-neighbours."""
    p = np.pad(lbl, 1)
    grown = lbl.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        grown = np.maximum(grown, p[1 + dy:1 + dy + lbl.shape[0], 1 + dx:1 + dx + lbl.shape[1]])
    return np.where(lbl > 0, lbl, grown)


def drop(lbl, every):
    """Objects whose label is a multiple of `every` are missed."""
    return np.where(lbl % every == 0, 0, lbl)


def merge(lbl, every):
    """Object k+1 is merged into object k for k = 1, 1+every, 1+2*every, ..."""
    out = lbl.copy()
    for k in range(1, int(lbl.max()), every):
        out[lbl == k + 1] = k
    return out


def split(lbl, every):
    """Objects whose label is a multiple of `every` are cut in two at their mean column."""
    out = lbl.copy()
    nxt = int(lbl.max()) + 1
    for k in range(every, int(lbl.max()) + 1, every):
        ys, xs = np.nonzero(lbl == k)
        if len(xs) == 0:
            continue
        right = xs > xs.mean()
        out[ys[right], xs[right]] = nxt
        nxt += 1
    return out


def spurious(lbl, y, x, side):
    """A square object added on the background."""
    out = lbl.copy()
    patch = out[y:y + side, x:x + side]
    patch[patch == 0] = int(lbl.max()) + 1
    return out


# One recipe per committed image, each mixing the errors differently.
RECIPES = {
    "dsb_00071198d059ba7f": lambda m: shift(m, 2, 1),
    "dsb_04acab7636c4cf61": lambda m: drop(erode(m), 5),
    "dsb_0e4c2e2780de7ec4": lambda m: spurious(merge(m, 6), 0, 0, 12),
    "dsb_e5a6c5e01e6a4ef6": lambda m: split(dilate(m), 4),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    print(f"# made by: /work/venv/bin/python cli/tests/reference_metrics.py")
    print(f"# reference: cellpose {version('cellpose')} metrics.average_precision "
          f"(thresholds 0.5 0.75 0.9) and metrics.aggregated_jaccard_index")
    print("# name ap50 ap75 ap90 aji n_true n_pred tp50 tp75 tp90")
    for name, recipe in RECIPES.items():
        truth = cv2.imread(os.path.join(DATA, f"{name}_masks.png"), cv2.IMREAD_UNCHANGED)
        truth = truth.astype(np.int32)
        pred = recipe(truth)
        # Labels in the file are made consecutive, as a segmenter writes them.
        _, pred = np.unique(pred, return_inverse=True)
        pred = pred.reshape(truth.shape).astype(np.uint16)
        tifffile.imwrite(os.path.join(OUT, f"{name}_cp_masks.tif"), pred,
                         compression="zlib")
        ap, tp, fp, fn = metrics.average_precision(truth, pred.astype(np.int32))
        aji = metrics.aggregated_jaccard_index([truth], [pred.astype(np.int32)])[0]
        n_true = len(np.unique(truth)) - 1
        n_pred = len(np.unique(pred)) - 1
        print(f"{name} {ap[0]:.6f} {ap[1]:.6f} {ap[2]:.6f} {aji:.6f} {n_true} {n_pred} "
              f"{int(tp[0])} {int(tp[1])} {int(tp[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

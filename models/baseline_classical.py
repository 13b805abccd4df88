#!/usr/bin/env python3
"""Classical segmentation baseline: threshold + distance-transform watershed (scikit-image).

Offline tooling, the yardstick a trained model must beat (issue 17: a whole-cell model
must score ≥ 0.15 AP50 above it). Every setting of a small grid is scored on the training
folder (mean AP50 over images, the reference's `metrics.average_precision`, the metric of
`examples/evaluate.rs` and `cellpose eval`); the best one is then run once on the test
folder and its AP50 / AP75 / AP90 are printed. The test folder never chooses anything.

The foreground is the image's intensity (bright or dark objects), its local standard
deviation (the texture of phase-contrast cells against a flat background) or its distance
from a smooth background, smoothed by a Gaussian, thresholded at a factor of Otsu's level; holes are filled, small pieces dropped, and touching
objects split by a watershed on the distance transform from its local maxima.

    python -m models.baseline_classical --train ../shared/data/usiigaci/train --test ../shared/data/usiigaci/test
"""
import argparse
import itertools
import time

import numpy as np
from cellpose import metrics
from scipy import ndimage as ndi
from skimage import feature, filters, morphology, segmentation

from .folders import read_folder

THRESHOLDS = [0.5, 0.75, 0.9]


def gray(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float64)
    return g.mean(axis=-1) if g.ndim == 3 else g


def segment(img, feature_name: str, sigma: float, min_distance: int, factor: float, min_size: int, footprint: int):
    """Labels of one image under one setting of the grid."""
    g = gray(img)
    lo, hi = np.percentile(g, [1, 99])
    g = (g - lo) / max(hi - lo, 1e-9)
    if feature_name == "texture":
        # Local standard deviation over a `footprint`-wide window.
        m = ndi.uniform_filter(g, footprint)
        f = np.sqrt(np.maximum(ndi.uniform_filter(g * g, footprint) - m * m, 0))
    elif feature_name == "contrast":
        # Distance from the smooth background (uneven illumination removed): phase-contrast
        # cells are both darker and brighter than their surroundings.
        f = np.abs(g - filters.gaussian(g, 4 * footprint))
    elif feature_name == "bright":
        f = g
    else:  # dark
        f = -g
    f = filters.gaussian(f, sigma)
    fg = f > factor * filters.threshold_otsu(f)
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg, morphology.disk(1)))
    pieces, n = ndi.label(fg)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    fg = (sizes >= min_size)[pieces] & fg
    dist = ndi.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=min_distance, labels=ndi.label(fg)[0],
                                   exclude_border=False)
    markers = np.zeros(dist.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-dist, markers, mask=fg).astype(np.int32)


def score(folder, setting):
    ap = [metrics.average_precision([lbl], [segment(img, *setting)], threshold=THRESHOLDS)[0][0]
          for img, lbl in zip(folder.images, folder.labels)]
    return np.array(ap)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="folder of NAME_img + NAME_masks pairs that chooses the setting")
    ap.add_argument("--test", required=True, help="folder of pairs the chosen setting is reported on")
    ap.add_argument("--features", default="texture,contrast,bright,dark")
    ap.add_argument("--sigmas", default="2,4")
    ap.add_argument("--min-distances", default="8,12")
    ap.add_argument("--factors", default="0.6,0.8,1.0", help="threshold = factor × Otsu's")
    ap.add_argument("--min-size", type=int, default=30, help="smallest object kept, pixels")
    ap.add_argument("--footprint", type=int, default=7, help="texture window side, pixels")
    args = ap.parse_args()

    train, test = read_folder(args.train), read_folder(args.test)
    grid = list(itertools.product(args.features.split(","), [float(s) for s in args.sigmas.split(",")],
                                  [int(d) for d in args.min_distances.split(",")],
                                  [float(k) for k in args.factors.split(",")], [args.min_size],
                                  [args.footprint]))
    t0 = time.time()
    best = None
    for setting in grid:
        ap50 = score(train, setting)[:, 0].mean()
        print(f"train {setting[:4]}: AP50 {ap50:.4f}", flush=True)
        if best is None or ap50 > best[0]:
            best = (ap50, setting)
    print(f"chosen on {len(train.names)} training images: feature={best[1][0]} sigma={best[1][1]} "
          f"min_distance={best[1][2]} factor={best[1][3]} min_size={best[1][4]} footprint={best[1][5]} "
          f"(train AP50 {best[0]:.4f}); "
          f"{time.time() - t0:.0f} s")
    ap = score(test, best[1])
    for n, a in zip(test.names, ap):
        print(f"{n} AP50={a[0]:.3f} AP75={a[1]:.3f} AP90={a[2]:.3f}")
    m = ap.mean(axis=0)
    print(f"test {args.test}: n={len(test.names)} AP50={m[0]:.4f} AP75={m[1]:.4f} AP90={m[2]:.4f}")


if __name__ == "__main__":
    main()

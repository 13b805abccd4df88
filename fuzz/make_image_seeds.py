#!/usr/bin/env python3
"""Seeds of the `image_readers` fuzz target: small PNG and TIFF files of the kinds users send
(offline tooling; needs numpy, tifffile with imagecodecs, and OpenCV, as models/).

PNG gray 8/16-bit, RGB and RGBA; TIFF single page, multi-page, BigTIFF, deflate / LZW /
PackBits compressed, float32, planar RGB, an ImageJ hyperstack (channels × slices × frames)
with a pixel size, an OME-TIFF, a tiled TIFF, and a 16-bit label image. Each is a few
hundred bytes to a few kB, so that libFuzzer mutates them quickly.

    python fuzz/make_image_seeds.py fuzz/corpus/image_readers
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import tifffile


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 255, (12, 16), dtype=np.uint8)
    g16 = (g8.astype(np.uint16) * 257)
    rgb = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    rgba = rng.integers(0, 255, (12, 16, 4), dtype=np.uint8)
    labels = np.zeros((12, 16), np.uint16)
    labels[2:6, 3:8] = 1
    labels[7:11, 9:15] = 2

    cv2.imwrite(str(out / "gray8.png"), g8)
    cv2.imwrite(str(out / "gray16.png"), g16)
    cv2.imwrite(str(out / "rgb.png"), rgb)
    cv2.imwrite(str(out / "rgba.png"), rgba)
    cv2.imwrite(str(out / "labels_masks.png"), labels)

    tifffile.imwrite(out / "gray16.tif", g16)
    tifffile.imwrite(out / "pages.tif", np.stack([g8, g8[::-1], g8[:, ::-1]]))
    tifffile.imwrite(out / "bigtiff.tif", np.stack([g16, g16]), bigtiff=True)
    tifffile.imwrite(out / "deflate.tif", g16, compression="zlib")
    tifffile.imwrite(out / "lzw.tif", rgb, compression="lzw")
    tifffile.imwrite(out / "packbits.tif", g8, compression="packbits")
    tifffile.imwrite(out / "float32.tif", g8.astype(np.float32) / 7.0)
    tifffile.imwrite(out / "planar_rgb.tif", np.moveaxis(rgb, -1, 0), planarconfig="separate")
    tifffile.imwrite(out / "tiled.tif", np.tile(g16, (2, 2)), tile=(16, 16))
    hyper = rng.integers(0, 4000, (2, 3, 2, 12, 16), dtype=np.uint16)  # T, Z, C, Y, X
    tifffile.imwrite(out / "imagej_tzc.tif", hyper, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "TZCYX", "unit": "um", "spacing": 2.0})
    tifffile.imwrite(out / "ome_zc.ome.tif", hyper[0], ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                               "PhysicalSizeZ": 1.5})
    tifffile.imwrite(out / "labels_masks.tif", labels)
    for p in sorted(out.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()

"""The retraining command end to end, and its refusals (offline tooling's own test; needs
torch and cellpose==3.1.1.3, so it is not part of `.ci/run`).

    python -m unittest discover -s models/tests -t . -v   # from the checkout's root; about 2 minutes on 2 cores

Data: `$CELLPOSE_DATA` (default `../shared/data` beside the checkout; `models.folders.data_root`),
its usiigaci/train.
The end-to-end test also needs the Rust CLI (`cargo build --release -p cellpose-cli`).
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import cv2
import numpy as np

from models.folders import DataError, data_root, read_folders

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = data_root()


def retrain(*args):
    """`python -m models.retrain ARGS` from the checkout's root (every path given is absolute)."""
    return subprocess.run([sys.executable, "-m", "models.retrain", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


class Refusals(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, a):
        cv2.imwrite(str(self.dir / name), a)

    def test_every_problem_is_listed_and_nothing_is_written(self):
        img = np.full((64, 64), 100, np.uint8)
        lbl = np.zeros((64, 64), np.uint16)
        lbl[10:20, 10:20] = 1
        self.write("a_img.png", img)                     # unpaired
        self.write("b_img.png", img)
        self.write("b_masks.png", lbl[:32])              # other size
        self.write("c_img.png", img)
        self.write("c_masks.png", np.zeros_like(lbl))    # no object
        self.write("d_masks.png", lbl)                   # label without image
        out = self.dir / "out"
        p = retrain("--data", self.dir, "--name", "x", "--out-dir", out, "--epochs", 1)
        self.assertNotEqual(p.returncode, 0)
        for want in ("a_img.png: no label image", "label image is 32×64, image is 64×64",
                     "c_masks: no object", "d_masks.png: no image"):
            self.assertIn(want, p.stderr)
        self.assertFalse(out.exists(), "nothing may be written before the data is accepted")

    def test_too_few_images_and_a_missing_colour_are_refused(self):
        img = np.full((64, 64), 100, np.uint8)
        lbl = np.zeros((64, 64), np.uint16)
        lbl[10:20, 10:20] = 1
        self.write("a_img.png", img)
        self.write("a_masks.png", lbl)
        with self.assertRaisesRegex(DataError, "1 annotated image in .*: at least 3"):
            read_folders([self.dir])
        with self.assertRaisesRegex(DataError, "ask for colour 2 as the channel to segment, but the image has 1"):
            read_folders([self.dir], channels=(2, 0))


@unittest.skipUnless((DATA / "usiigaci" / "train").is_dir(), f"no usiigaci data under {DATA}")
class EndToEnd(unittest.TestCase):
    def test_three_images_two_epochs_give_validated_model_files_and_a_card(self):
        cli = ROOT / "target" / "release" / "cellpose"
        if not cli.is_file():
            self.skipTest("build the CLI first: cargo build --release -p cellpose-cli")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            folder = tmp / "cells"
            folder.mkdir()
            for n in ("usiigaci_set01", "usiigaci_set02", "usiigaci_set03"):
                for s in ("_img.png", "_masks.png"):
                    os.symlink(DATA / "usiigaci" / "train" / (n + s), folder / (n + s))
            out = tmp / "models"
            p = retrain("--data", folder, "--name", "tiny", "--out-dir", out, "--epochs", 2, "--bsize", 128,
                        "--samples-per-epoch", 8, "--init", "nuclei")
            self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
            for f in ("tiny.onnx", "tiny_int8.onnx", "tiny.md"):
                self.assertTrue((out / f).is_file(), f)
            card = (out / "tiny.md").read_text()
            m = re.search(r"\| `[^`]+` \| 1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", card)
            self.assertIsNotNone(m, card)  # one held-out image, scored by the Rust pipeline
            self.assertIn("3 annotated images, 2 trained on, 1 held out", card)
            info = subprocess.run([str(cli), "info", str(out / "tiny_int8.onnx")], capture_output=True, text=True)
            self.assertEqual(info.returncode, 0, info.stderr)
            self.assertIn("cellpose.diam_mean = 30", info.stdout)
            if "avx512_vnni" in Path("/proc/cpuinfo").read_text():
                self.assertIn("compute     int8", info.stdout)  # the calibrated scales were written


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env bash
# Prepares, on this machine, what a training run on a lent GPU machine needs (offline
# tooling; see models/README.md, "Training on a lent GPU"). That machine has torch, numpy,
# scipy, opencv-python-headless, numba, tifffile and tqdm (/work/.library/device/KINDS.md)
# but no network and not ../shared/data, so this writes, both ignored by git through
# .git/info/exclude and both to be named in the call's `carry`:
#   .whl/                          cellpose 3.1.1.3 and its remaining pure needs, for Python 3.12 (~2.6 MB)
#   models/pack/dsb2018_train.npz  train/ as lossless PNGs in one file (32 MiB; python -m models.pack_data)
# The repository itself travels too; the total must stay under 64 MiB.
#   bash models/device_prepare.sh
set -euo pipefail
PYTHON=${PYTHON:-venv/bin/python}
for p in /.whl/ /models/pack/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  cellpose==3.1.1.3 fastremap==1.21.0 fill-voids==2.1.2 natsort==8.4.0 roifile
$PYTHON -m models.pack_data --out models/pack/dsb2018_train.npz
$PYTHON -m models.pack_data --out models/pack/dsb2018_train.npz --check
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -cb .whl models/pack | tail -1 | cut -f1)
echo "tracked files $((tracked / 1048576)) MiB + carried $((carried / 1048576)) MiB (limit 64 MiB)"
if (( tracked + carried > 64 * 1048576 - 2 * 1048576 )); then
  echo "too much to travel: leave less tracked (large checkpoints live in git history)" >&2
  exit 1
fi

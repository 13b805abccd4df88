#!/usr/bin/env bash
# Trains on a lent GPU machine (offline tooling; see models/README.md, "Training on a lent
# GPU"). Run `bash models/device_prepare.sh` here first, then through the device tool:
#   run(command="bash models/device_train.sh run_standard 2,32,64,128,256 300 7",
#       carry=[".whl", "models/pack"], timeout_s=600)
# Arguments: run name, widths, planned epochs, minutes to train (stop cleanly after them;
# a call may run 10 minutes: 7 leaves about 3 for installing, computing the label flows and
# fitting the size model).
# What comes back under $OUT (each file ≤ 16 MiB): best_f16.pth (the best held-out weights in
# fp16), size_model.npy, history.json, config.json, train.log. Here, afterwards:
#   python -m models.half_weights --to-float <files_at>/best_f16.pth models/<run>/best.pth
#   cp <files_at>/{size_model.npy,history.json,config.json,train.log} models/<run>/
#   NAME=<model name> STEPS=export,eval,reference bash models/finalize.sh models/<run>
# A later GPU session continues from returned weights: copy them into the carried
# models/pack/ and set INIT=models/pack/best_f16.pth (a fresh optimiser: the fp32 optimiser
# state of the standard widths, ~80 MB, cannot come back).
set -euo pipefail
run=${1:?run name}; nbase=${2:?widths}; epochs=${3:?epochs}; minutes=${4:?minutes}
OUT=${OUT:?the device tool sets OUT}
PYTHON=${PYTHON:-python3}
if [[ -d .whl && -z "${NO_WHEELS:-}" ]]; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
dir=models/$run
init=()
if [[ -n "${INIT:-}" ]]; then init=(--init "$INIT"); fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PYTHON -m models.train --out "$dir" --data models/pack/dsb2018_train.npz --nbase "$nbase" \
  --epochs "$epochs" --bsize "${BSIZE:-224}" --threads "${THREADS:-8}" --max-minutes "$minutes" "${init[@]}" \
  2>&1 | grep --line-buffered -v "it/s\]" | tee "$OUT/train.log"
$PYTHON -m models.half_weights "$dir/best.pth" "$OUT/best_f16.pth"
$PYTHON -m models.train_size --weights "$dir/best.pth" --data models/pack/dsb2018_train.npz \
  --out "$OUT/size_model.npy" --epochs 2 --threads "${THREADS:-8}" 2>&1 | grep -v "it/s"
cp "$dir/history.json" "$dir/config.json" "$OUT/"
ls -la "$OUT"

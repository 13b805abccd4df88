#!/usr/bin/env bash
# Turns a finished training run into the shipped files and measures them (offline tooling).
#   bash models/finalize.sh models/run_light
# Writes models/nuclei_light.onnx (fp32 + size model) and models/nuclei_light_int8.onnx,
# regenerates the 2D and volume parity fixtures from them, and records accuracy on the test
# split in models/results/ (the model card's numbers). About 45 min on 2 idle cores.
# STEPS=export,fixtures,eval,reference (default: all) runs a subset, in that order.
set -euo pipefail
run=${1:-models/run_light}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x venv/bin/python ]]; then PYTHON=venv/bin/python; else PYTHON=/work/venv/bin/python; fi
fi
py=$(command -v "$PYTHON")
case $py in /*) ;; *) py=$PWD/$py ;; esac  # absolute: the reference step runs from models/
test_dir=${TEST_DIR:-../shared/data/dsb2018/test}
steps=${STEPS:-export,fixtures,eval,reference}
has() { [[ ",$steps," == *",$1,"* ]]; }
mkdir -p models/results
ck=$run/best.pth
if has export; then
  $py models/flops.py "$ck" | tee models/results/flops.txt
  $py models/train_size.py --weights "$ck" --out "$run/size_model.npy" --epochs 2 | grep -v "it/s" | tee models/results/size_model_fit.txt
  $py models/export.py --checkpoint "$ck" --out models/nuclei_light.onnx --size-model "$run/size_model.npy" \
    --version "nuclei-light-$(date -u +%Y%m%d)" --training-data "dsb2018 train split (../shared/data/dsb2018/train, 90%; 10% held out)" \
    --license "CC0 training data; weights BSD-3-Clause" 2>&1 | grep wrote
  $py models/quantize.py --model models/nuclei_light.onnx --out models/nuclei_light_int8.onnx --mode weights
  sha256sum models/nuclei_light.onnx models/nuclei_light_int8.onnx | tee models/results/sha256.txt
fi
if has fixtures; then
  $py tests/fixtures/make_fixtures.py --weights "$ck" 2>&1 | grep "^dsb"
  # The volume fixtures run the reference on the shipped ONNX file itself (see the script).
  $py tests/fixtures/make_volume_fixtures.py --weights models/nuclei_light.onnx 2>&1 | tail -4
fi
if has eval; then
  cargo build --release --example evaluate
  ev=./target/release/examples/evaluate
  # Shipped precision first, in the order the model card needs them.
  $ev models/nuclei_light_int8.onnx "$test_dir" auto 2 > models/results/rust_int8_auto_diameter.txt
  tail -1 models/results/rust_int8_auto_diameter.txt
  for m in nuclei_light_int8 nuclei_light; do
    $ev models/$m.onnx "$test_dir" default 2 > models/results/rust_${m}_default.txt
    tail -1 models/results/rust_${m}_default.txt
  done
  $ev models/nuclei_light_int8.onnx "$test_dir" true 2 > models/results/rust_int8_true_diameter.txt
  tail -1 models/results/rust_int8_true_diameter.txt
fi
if has reference; then
  (cd models && "$py" eval_reference.py --weights "../$ck" --dir "../$test_dir" --threads 2) \
    > models/results/reference_fp32_default.txt
  tail -2 models/results/reference_fp32_default.txt
fi

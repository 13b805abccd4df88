#!/usr/bin/env bash
# Turns a finished training run into model files and measures them (offline tooling).
#   bash models/finalize.sh models/run_light                       # the shipped light model
#   NAME=nuclei_standard bash models/finalize.sh models/run_standard  # another width
# Writes models/$NAME.onnx (fp32 + size model) and models/${NAME}_int8.onnx, and records
# accuracy on the test split in models/results/$NAME/ (the model card's numbers). The
# fixtures step regenerates the 2D and volume parity fixtures: run it only for the model
# the tests use (nuclei_light). About 45 min on 2 idle cores for the light widths.
# STEPS=export,fixtures,eval,reference (default: all) runs a subset, in that order.
# SIZE_L2=1e-6,1e-5,...,1 lets the size model choose its ridge penalty on held-out crops
# (default 1, the reference value the shipped light model used). TEST_DIR: the test split
# (default $CELLPOSE_DATA/dsb2018/test, CELLPOSE_DATA defaulting to ../shared/data).
# Run from the checkout's root: the Python tools are the modules of models/ (python -m models.X).
set -euo pipefail
run=${1:-models/run_light}
name=${NAME:-nuclei_light}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x venv/bin/python ]]; then PYTHON=venv/bin/python; else PYTHON=/work/venv/bin/python; fi
fi
py=$(command -v "$PYTHON")
case $py in /*) ;; *) py=$PWD/$py ;; esac
test_dir=${TEST_DIR:-${CELLPOSE_DATA:-../shared/data}/dsb2018/test}
steps=${STEPS:-export,fixtures,eval,reference}
has() { [[ ",$steps," == *",$1,"* ]]; }
res=models/results/$name
mkdir -p "$res"
ck=$run/best.pth
fp32=models/$name.onnx
int8=models/${name}_int8.onnx
if has export; then
  $py -m models.flops "$ck" | tee "$res/flops.txt"
  $py -m models.train_size --weights "$ck" --out "$run/size_model.npy" --epochs 2 --l2 "${SIZE_L2:-1}" | grep -v "it/s" | tee "$res/size_model_fit.txt"
  $py -m models.export --checkpoint "$ck" --out "$fp32" --size-model "$run/size_model.npy" \
    --version "${name//_/-}-$(date -u +%Y%m%d)" --training-data "dsb2018 train split (../shared/data/dsb2018/train, 90%; 10% held out)" \
    --license "CC0 training data; weights BSD-3-Clause" 2>&1 | grep wrote
  $py -m models.quantize --model "$fp32" --out "$int8" --mode weights
  sha256sum "$fp32" "$int8" | tee "$res/sha256.txt"
fi
if has fixtures; then
  if [[ $name != nuclei_light ]]; then
    echo "fixtures: the tests use nuclei_light; skipped for $name" >&2
  else
    $py tests/fixtures/make_fixtures.py --weights "$ck" 2>&1 | grep "^dsb"
    # The volume fixtures run the reference on the shipped ONNX file itself (see the script).
    $py tests/fixtures/make_volume_fixtures.py --weights "$fp32" 2>&1 | tail -4
  fi
fi
if has eval; then
  cargo build --release --example evaluate
  ev=./target/release/examples/evaluate
  # int8 first, in the order the model card needs them.
  $ev "$int8" "$test_dir" auto 2 > "$res/rust_int8_auto_diameter.txt"
  tail -1 "$res/rust_int8_auto_diameter.txt"
  $ev "$int8" "$test_dir" default 2 > "$res/rust_int8_default.txt"
  tail -1 "$res/rust_int8_default.txt"
  $ev "$fp32" "$test_dir" default 2 > "$res/rust_fp32_default.txt"
  tail -1 "$res/rust_fp32_default.txt"
  $ev "$int8" "$test_dir" true 2 > "$res/rust_int8_true_diameter.txt"
  tail -1 "$res/rust_int8_true_diameter.txt"
fi
if has reference; then
  "$py" -m models.eval_reference --weights "$ck" --dir "$test_dir" --threads 2 > "$res/reference_fp32_default.txt"
  tail -2 "$res/reference_fp32_default.txt"
fi

#!/usr/bin/env bash
# Turns a finished training run into the shipped files and measures them (offline tooling).
#   bash models/finalize.sh models/run_light
# Writes models/nuclei_light.onnx (fp32 + size model), models/nuclei_light_int8.onnx,
# regenerates tests/fixtures, and records accuracy in models/results/.
set -euo pipefail
run=${1:-models/run_light}
py=${PYTHON:-/work/venv/bin/python}
test_dir=${TEST_DIR:-../shared/data/dsb2018/test}
mkdir -p models/results
ck=$run/best.pth
$py models/flops.py "$ck" | tee models/results/flops.txt
$py models/train_size.py --weights "$ck" --out "$run/size_model.npy" --epochs 2 | grep -v "it/s" | tee models/results/size_model_fit.txt
$py models/export.py --checkpoint "$ck" --out models/nuclei_light.onnx --size-model "$run/size_model.npy" \
  --version "nuclei-light-$(date -u +%Y%m%d)" --training-data "dsb2018 train split (../shared/data/dsb2018/train, 90%; 10% held out)" \
  --license "CC0 training data; weights BSD-3-Clause" 2>&1 | grep wrote
$py models/quantize.py --model models/nuclei_light.onnx --out models/nuclei_light_int8.onnx --mode weights
$py tests/fixtures/make_fixtures.py --weights "$ck" 2>&1 | grep "^dsb"
cargo build --release --example evaluate
for m in nuclei_light nuclei_light_int8; do
  ./target/release/examples/evaluate models/$m.onnx "$test_dir" default 2 > models/results/rust_${m}_default.txt
  tail -1 models/results/rust_${m}_default.txt
done
./target/release/examples/evaluate models/nuclei_light_int8.onnx "$test_dir" true 2 > models/results/rust_int8_true_diameter.txt
./target/release/examples/evaluate models/nuclei_light_int8.onnx "$test_dir" auto 2 > models/results/rust_int8_auto_diameter.txt
tail -1 models/results/rust_int8_true_diameter.txt models/results/rust_int8_auto_diameter.txt
(cd models && $py eval_reference.py --weights "../$ck" --dir "../$test_dir" --threads 2) > models/results/reference_fp32_default.txt
tail -2 models/results/reference_fp32_default.txt
sha256sum models/nuclei_light.onnx models/nuclei_light_int8.onnx | tee models/results/sha256.txt

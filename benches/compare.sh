#!/usr/bin/env bash
# Benchmarks cellpose-rs against its peers in one run (issue 5); see benches/README.md.
#
#   benches/compare.sh [--quick]
#
# Environment (defaults in brackets):
#   PYTHON          Python with cellpose==3.1.1.3, torch, onnxruntime, onnx  [/work/venv/bin/python, else python3]
#   DATA            dsb2018 test folder                      [$CELLPOSE_DATA/dsb2018/test]
#   CELLPOSE_DATA   folder of the data sets                  [../shared/data]
#   MODEL_FP32      fp32 ONNX model                          [models/nuclei_light.onnx]
#   MODEL_INT8      int8 ONNX model; made into the work dir by python -m models.quantize
#                   (--mode $INT8_MODE) when the file is missing  [models/nuclei_light_int8.onnx]
#   INT8_MODE       weights | qdq | qoperator                [weights]
#   WEIGHTS         PyTorch weights of the same network      [models/run_light/best.pth]
#   SHIPPED         precision the summary line is about      [int8 if MODEL_INT8 exists, else fp32]
#   THREADS         threads for every engine                 [2]
#   FRAMES          frame-loop length                        [500; 50 with --quick]
#   OUT             table file                               [benches/results/<UTC date>[-quick].md]
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
[[ "${1:-}" == "--quick" ]] && MODE=quick
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x /work/venv/bin/python ]]; then PYTHON=/work/venv/bin/python; else PYTHON=python3; fi
fi
DATA=${DATA:-${CELLPOSE_DATA:-../shared/data}/dsb2018/test}
MODEL_FP32=${MODEL_FP32:-models/nuclei_light.onnx}
MODEL_INT8=${MODEL_INT8:-models/nuclei_light_int8.onnx}
INT8_MODE=${INT8_MODE:-weights}
WEIGHTS=${WEIGHTS:-models/run_light/best.pth}
THREADS=${THREADS:-2}
QUICK_FLAG=""
if [[ $MODE == quick ]]; then QUICK_FLAG=--quick; fi
FRAMES=${FRAMES:-$([[ $MODE == quick ]] && echo 50 || echo 500)}
REPEATS=$([[ $MODE == quick ]] && echo 1 || echo 3)
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
SUFFIX=""
if [[ $MODE == quick ]]; then SUFFIX=-quick; fi
OUT=${OUT:-benches/results/${STAMP}${SUFFIX}.md}
WORK=$(mktemp -d -t cellpose-bench.XXXXXX)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
log() { echo "[compare $(date -u +%H:%M:%S)] $*" >&2; }

for f in "$MODEL_FP32" "$WEIGHTS"; do
    [[ -f $f ]] || { echo "missing $f" >&2; exit 1; }
done
if [[ -z "${SHIPPED:-}" ]]; then
    if [[ -f $MODEL_INT8 ]]; then SHIPPED=int8; else SHIPPED=fp32; fi
fi
INT8_FORM=committed
if [[ ! -f $MODEL_INT8 ]]; then
    log "no $MODEL_INT8: quantizing $MODEL_FP32 (--mode $INT8_MODE) into $WORK"
    # The weights form computes in int8 only with calibrated activation scales.
    CALIBRATE=$([[ $INT8_MODE == weights ]] && echo "--calibrate 64" || true)
    "$PYTHON" -m models.quantize --model "$MODEL_FP32" --out "$WORK/int8.onnx" --mode "$INT8_MODE" $CALIBRATE >&2
    MODEL_INT8=$WORK/int8.onnx
    INT8_FORM="$INT8_MODE (made for this run)"
else
    INT8_FORM=$("$PYTHON" -c "import onnx,sys; m=onnx.load(sys.argv[1]); print(next((p.value for p in m.metadata_props if p.key=='cellpose.quantization'),'unknown'))" "$MODEL_INT8")
fi

sha() { sha256sum "$1" | cut -c1-64; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {printf "%s%s %s%%", sep, $2, $1; sep=", "}')
TRACT=$(awk '/^name = "tract-onnx"/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
cat > "$WORK/meta.json" <<EOF
{"date": "$STAMP", "mode": "$MODE", "threads": $THREADS, "shipped": "$SHIPPED",
 "fp32": "$MODEL_FP32", "fp32_sha": "$(sha "$MODEL_FP32")",
 "int8": "$MODEL_INT8", "int8_sha": "$(sha "$MODEL_INT8")", "int8_form": "$INT8_FORM",
 "weights": "$WEIGHTS", "weights_sha": "$(sha "$WEIGHTS")",
 "load_before": "$LOAD_BEFORE", "busy": "${BUSY:-none}",
 "crate": "$(awk -F'"' '/^version/{print $2; exit}' Cargo.toml)", "tract": "$TRACT",
 "rustc": "$(rustc -V | cut -d' ' -f2)", "frames": $FRAMES}
EOF

log "building (cargo bench --no-run, release profile)"
cargo bench --bench compare --no-run >&2
bench() { cargo bench -q --bench compare -- "$@" --out "$WORK/ours.jsonl" >/dev/null; }

log "preparing images ($MODE) in $WORK"
"$PYTHON" benches/peers.py prepare --work "$WORK" --data "$DATA" $QUICK_FLAG

M="--manifest $WORK/manifest.tsv"
KINDS=full,crop512
if [[ $MODE == full ]]; then KINDS=$KINDS,mosaic; fi
log "ours: end to end + dynamics (fp32), end to end (int8)"
bench e2e $M --model "$MODEL_FP32" --label fp32 --threads "$THREADS" --repeats $REPEATS --kinds $KINDS --dump-flows "$WORK/flows"
bench e2e $M --model "$MODEL_INT8" --label int8 --threads "$THREADS" --repeats $REPEATS --kinds $KINDS

log "ours: network alone (and tract's own convolution on the fp32 file, batch 1)"
for b in 1 8; do
    for t in 1 "$THREADS"; do
        for p in fp32 int8; do
            m=$([[ $p == fp32 ]] && echo "$MODEL_FP32" || echo "$MODEL_INT8")
            bench network --model "$m" --label $p --batch $b --side 224 --threads $t --repeats $([[ $b == 1 ]] && echo 10 || echo 3)
        done
        if [[ $b == 1 ]]; then
            bench network --model "$MODEL_FP32" --label fp32 --convolution tract --batch 1 --side 224 --threads $t --repeats 10
        fi
    done
done

log "ours: the 3×3 convolution alone, per layer shape"
for t in 1 "$THREADS"; do
    bench conv --threads $t --repeats 10
done

log "ours: scaling by side and threads"
SCALE_THREADS=$([[ $THREADS == 1 ]] && echo 1 || echo "1 $THREADS")
for t in $SCALE_THREADS; do
    bench scale $M --model "$MODEL_FP32" --label fp32 --threads $t --repeats $REPEATS --kinds side
done
bench scale $M --model "$MODEL_INT8" --label int8 --threads "$THREADS" --repeats $REPEATS --kinds side

LOOP_IMG=$(awk -F'\t' '$2 == "crop512" {print $1; exit}' "$WORK/manifest.tsv")
log "ours: frame loop, $FRAMES frames of $LOOP_IMG (one process per model, for peak RSS)"
bench loop $M --name "$LOOP_IMG" --model "$MODEL_FP32" --label fp32 --frames "$FRAMES" --threads "$THREADS"
if [[ $MODE == full || $SHIPPED == int8 ]]; then
    bench loop $M --name "$LOOP_IMG" --model "$MODEL_INT8" --label int8 --frames "$FRAMES" --threads "$THREADS"
fi

log "peers: reference cellpose, onnxruntime, torch"
"$PYTHON" benches/peers.py peers --work "$WORK" --weights "$WEIGHTS" --fp32 "$MODEL_FP32" --int8 "$MODEL_INT8" --threads "$THREADS" $QUICK_FLAG

"$PYTHON" benches/peers.py report --work "$WORK" --out "$OUT"

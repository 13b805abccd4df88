#!/usr/bin/env bash
# Builds tests/consumer against an installed libcellpose (prefix in $1), from a copy outside
# the source tree, with CMake (shared and static) and with pkg-config, and runs each.
set -euo pipefail
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
model="$here/../../models/nuclei_light.onnx"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/CMakeLists.txt" "$here/consumer.c" "$work/"

cmake -S "$work" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/build" >/dev/null
passed=0 failed=0
run() {
  if "$@"; then passed=$((passed + 1)); else echo "FAILED: $*"; failed=$((failed + 1)); fi
}
run "$work/build/consumer" "$model"
run "$work/build/consumer_static" "$model"

libdir=$(dirname "$(find "$prefix" -name cellpose.pc)")
export PKG_CONFIG_PATH="$libdir"
cc -std=c99 -o "$work/consumer_pc" "$work/consumer.c" $(pkg-config --cflags --libs cellpose) \
  -Wl,-rpath,"$(pkg-config --variable=libdir cellpose)"
run "$work/consumer_pc" "$model"
cc -std=c99 -o "$work/consumer_pc_static" "$work/consumer.c" $(pkg-config --cflags cellpose) \
  "$(pkg-config --variable=libdir cellpose)/libcellpose.a" $(pkg-config --libs-only-l --static cellpose | sed 's/-lcellpose//')
run "$work/consumer_pc_static" "$model"
echo "consumer: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Builds tests/consumer against an installed libcellpose (prefix in $1), from a copy outside
# the source tree, with CMake (shared and static) and with pkg-config, and runs each.
# Cross builds: TOOLCHAIN (a CMake toolchain file), CC (the cross C compiler) and EMULATOR
# (what runs the programs, e.g. "qemu-aarch64"); CONSUMER_BUILD_ONLY=1 builds and links
# every form without running them.
set -euo pipefail
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
model="$here/../../models/nuclei_light.onnx"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/CMakeLists.txt" "$here/consumer.c" "$work/"

toolchain=()
[ -n "${TOOLCHAIN:-}" ] && toolchain=(-DCMAKE_TOOLCHAIN_FILE="$(realpath "$TOOLCHAIN")")
cc=${CC:-cc}
read -r -a emulator <<<"${EMULATOR:-}"
cmake -S "$work" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" "${toolchain[@]}" >/dev/null
cmake --build "$work/build" >/dev/null
passed=0 failed=0
run() {
  if [ -n "${CONSUMER_BUILD_ONLY:-}" ]; then
    [ -x "$1" ] && passed=$((passed + 1)) || { echo "NOT BUILT: $1"; failed=$((failed + 1)); }
    return
  fi
  if "${emulator[@]}" "$@"; then passed=$((passed + 1)); else echo "FAILED: $*"; failed=$((failed + 1)); fi
}
# The shipped model by name, from the folder the package installs it in.
CELLPOSE_MODEL_DIR="$prefix/share/cellpose/models" run "$work/build/consumer" nuclei
run "$work/build/consumer_static" "$model"

libdir=$(dirname "$(find "$prefix" -name cellpose.pc)")
export PKG_CONFIG_PATH="$libdir"
"$cc" -std=c99 -o "$work/consumer_pc" "$work/consumer.c" $(pkg-config --cflags --libs cellpose) \
  -Wl,-rpath,"$(pkg-config --variable=libdir cellpose)"
run "$work/consumer_pc" "$model"
"$cc" -std=c99 -o "$work/consumer_pc_static" "$work/consumer.c" $(pkg-config --cflags cellpose) \
  "$(pkg-config --variable=libdir cellpose)/libcellpose.a" $(pkg-config --libs-only-l --static cellpose | sed 's/-lcellpose//')
run "$work/consumer_pc_static" "$model"
echo "consumer: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# CMake toolchain file: libcellpose, its examples and C tests for 64-bit ARM Linux (aarch64),
# cross-built on x86-64 with Debian's packages:
#
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user libc6:arm64 libpng-dev:arm64
#   rustup target add aarch64-unknown-linux-gnu
#   cmake -S cmake -B build-arm64 -DCMAKE_BUILD_TYPE=Release \
#         -DCMAKE_TOOLCHAIN_FILE=$PWD/cmake/aarch64-linux-gnu.cmake
#
# (an absolute path: CMake reads a relative one from the build or source folder, cmake/).
#
# The Rust library is built by cargo for aarch64-unknown-linux-gnu (linker from
# .cargo/config.toml); ctest runs the programs under qemu-aarch64. libpng is needed only
# for the examples and C tests (-DCELLPOSE_BUILD_EXAMPLES=OFF -DCELLPOSE_BUILD_TESTS=OFF
# builds the library alone).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Debian multiarch: the target's libraries are in /usr/lib/aarch64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CELLPOSE_RUST_TARGET aarch64-unknown-linux-gnu CACHE STRING "Rust target triple of libcellpose")
find_program(CELLPOSE_QEMU qemu-aarch64)
if(CELLPOSE_QEMU)
  # The target C library comes from Debian multiarch (libc6:arm64); see .cargo/config.toml.
  set(CMAKE_CROSSCOMPILING_EMULATOR "${CELLPOSE_QEMU}")
endif()
# valgrind and the AddressSanitizer build are x86-64 tools here.
set(CELLPOSE_VALGRIND OFF CACHE BOOL "" FORCE)
set(CELLPOSE_ASAN OFF CACHE BOOL "" FORCE)

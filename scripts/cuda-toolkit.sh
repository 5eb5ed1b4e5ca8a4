#!/usr/bin/env bash
# A CUDA 13.0 toolkit for building `bns --features cuda` on a machine without a GPU or a system
# CUDA install, then runs the given command inside it:
#
#   scripts/cuda-toolkit.sh cargo build --release -p distiller --features cuda
#
# 1. a private Python virtual environment with NVIDIA's wheels (scripts/cuda-wheels.txt, exact pins);
# 2. a CUDA root folder laid out as cudarc and candle-kernels expect it: bin/ (nvcc), include/,
#    nvvm/, lib/ with the unversioned .so names the linker looks for, and lib/stubs/libcuda.so, a
#    link-time stand-in for the driver library (soname libcuda.so.1, one empty function per driver
#    API entry point of cuda.h). The binary loads the real libcuda.so.1 of the GPU machine's driver;
# 3. CUDA_ROOT/CUDA_PATH/CUDA_HOME, CUDA_COMPUTE_CAP (default 90, the H100/H200), PATH and
#    LIBRARY_PATH set for the command.
#
# Everything lives under $BNS_CUDA_TOOLKIT (default: target/cuda-toolkit); a second run reuses it.
# Needs python3 with venv and pip, gcc, and access to PyPI the first time (~1.2 GB of wheels).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
toolkit="${BNS_CUDA_TOOLKIT:-$repo/target/cuda-toolkit}"
wheels="$repo/scripts/cuda-wheels.txt"
venv="$toolkit/venv"
root="$toolkit/root"
stamp="$toolkit/.installed"

if [ $# -eq 0 ]; then
  echo "usage: scripts/cuda-toolkit.sh COMMAND [ARGS...]   (e.g. cargo build --release -p distiller --features cuda)" >&2
  exit 2
fi

for tool in python3 gcc; do
  command -v "$tool" >/dev/null || { echo "cuda-toolkit: '$tool' is needed (on Debian: apt-get install python3-venv gcc)" >&2; exit 1; }
done

if [ ! -f "$stamp" ] || ! cmp -s "$wheels" "$stamp"; then
  echo "cuda-toolkit: installing NVIDIA's CUDA 13.0 wheels into $venv (once; ~1.2 GB)" >&2
  rm -rf "$toolkit"
  mkdir -p "$toolkit"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$wheels"
  cu13="$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)"
  [ -x "$cu13/bin/nvcc" ] || { echo "cuda-toolkit: no nvcc in $cu13/bin after installing the wheels" >&2; exit 1; }

  mkdir -p "$root/lib/stubs"
  ln -s "$cu13/bin" "$root/bin"
  ln -s "$cu13/include" "$root/include"
  ln -s "$cu13/nvvm" "$root/nvvm"
  # The wheels hold only versioned libraries (libcublas.so.13); the linker looks for libcublas.so.
  for lib in "$cu13"/lib/lib*.so.*; do
    name="$(basename "$lib")"
    ln -sf "$lib" "$root/lib/$name"
    ln -sf "$lib" "$root/lib/${name%%.so.*}.so"
  done
  for lib in "$cu13"/lib/*.a; do ln -sf "$lib" "$root/lib/$(basename "$lib")"; done

  # The driver library is not in any wheel: link against a stub with its soname and every entry
  # point cuda.h declares (with and without the versioned names its macros map them to).
  stub_c="$toolkit/libcuda-stub.c"
  {
    gcc -E -P -I "$cu13/include" "$cu13/include/cuda.h"
    gcc -E -P -D__CUDA_API_VERSION_INTERNAL -I "$cu13/include" "$cu13/include/cuda.h"
  } | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u |
    awk '{ print "int " $1 "(void) { return 999; /* CUDA_ERROR_UNKNOWN: a stub, never loaded */ }" }' >"$stub_c"
  [ -s "$stub_c" ] || { echo "cuda-toolkit: found no driver entry points in $cu13/include/cuda.h" >&2; exit 1; }
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$stub_c"
  cp "$wheels" "$stamp"
fi

export CUDA_ROOT="$root" CUDA_PATH="$root" CUDA_HOME="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export PATH="$root/bin:$PATH"
export LIBRARY_PATH="$root/lib:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
exec "$@"

#!/usr/bin/env bash
# Installs what midscale needs to build, run and test, then configures and
# builds it into build/ (or $MIDSCALE_BUILD_DIR). Sourced or run by demo.sh
# and test.sh; safe to run again (installs only what is missing).
#
# On Debian/Ubuntu it uses apt-get (as root, or through sudo). Elsewhere it
# prints what to install and stops; on a cluster, load the modules instead:
#   an MPI (Open MPI or MPICH), HDF5 (parallel build preferred), zstd,
#   xxHash, libyaml, OpenBLAS, jansson, zlib, libdeflate, protobuf-c (with protoc-c),
#   cmocka, CMake >= 3.20, Python 3 (python3-onnx for the ONNX export's test).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${MIDSCALE_BUILD_DIR:-$ROOT/build}

# Build tools and libraries, then what the tests and the demo use (Python
# with NumPy, h5py and PyTorch for the cross-checks and the test files, onnx
# for the checker of the ONNX export's test,
# pgrep/pkill, Slurm with munge for the test cluster, iproute2 for the
# emulated cluster of tests/cluster/ (ip netns, tc), bc for test timings and
# fortunes, the English text of the character-level language model).
PACKAGES=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools libzstd-dev zstd libxxhash-dev libyaml-dev libopenblas-dev
  libjansson-dev zlib1g-dev libdeflate-dev libdnnl-dev libcmocka-dev python3 python3-numpy python3-h5py python3-torch dataset-fashion-mnist
  procps time slurm-wlm munge iproute2 bc fortunes
  libprotobuf-c-dev protobuf-c-compiler python3-onnx libcairo2-dev
  python3-yaml)  # tests/tools/np_forward.py reads the config a checkpoint carries

install_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "midscale: this is not a Debian/Ubuntu system. Install (or 'module load'):" >&2
    echo "  an MPI-3 library, HDF5 (parallel), zstd, xxHash, libyaml, OpenBLAS, jansson, zlib," >&2
    echo "  libdeflate, protobuf-c (libprotobuf-c and protoc-c)," >&2
    echo "  cmocka, CMake >= 3.20, pkg-config and Python 3; then run this script again" >&2
    echo "  with MIDSCALE_SKIP_INSTALL=1." >&2
    exit 1
  fi
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      echo "midscale: missing Debian packages (install them as root, then run again):" >&2
      echo "  apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "midscale: installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  # dataset-fashion-mnist is optional: the demo falls back to synthetic data.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null ||
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $(printf '%s\n' "${missing[@]}" | grep -v '^dataset-fashion-mnist$') >/dev/null
}

# Open MPI refuses root and more ranks than cores unless told; midscale's
# scripts and tests run as root in containers and CI, and 4 ranks on 2 cores.
export_mpi_env() {
  if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  export OMPI_MCA_rmaps_base_oversubscribe=1
}

# Benchmarks: one BLAS thread per rank and one explicit OpenBLAS kernel for
# every program of a run (midscale, PyTorch, the bench_* drivers), the one
# midscale's own start-up fix would pick (trainer/nn/blas.c): OpenBLAS
# 0.3.21 takes some of these CPUs for generic kernels, about 4x slower.
# A user-set OPENBLAS_CORETYPE is kept. Also export_mpi_env.
bench_env() {
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MIDSCALE_BLAS_AUTOFIX=0
  if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    if grep -q avx512bw /proc/cpuinfo && grep -q avx512vl /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=SkylakeX
    elif grep -q avx2 /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=Haswell
    fi
  fi
  export_mpi_env
}

# Benchmarks: DATA, the Fashion-MNIST training set in data-cache/ (made from
# Debian's dataset-fashion-mnist when it is there), or else a synthetic set of
# its shape in the directory $1; DATA_NOTE says which. Needs MIDSCALE.
# shellcheck disable=SC2034 # DATA and DATA_NOTE are for the caller
bench_fashion_mnist() {
  DATA="$ROOT/data-cache/fashion_mnist.h5"
  DATA_NOTE="Fashion-MNIST (60000 x 28 x 28 uint8)"
  local fmnist=/usr/share/datasets/fashion-mnist
  if [ ! -f "$DATA" ] && [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$ROOT/data-cache"
    "$MIDSCALE" prepare fashion-mnist "$fmnist" "$DATA" >/dev/null
  elif [ ! -f "$DATA" ]; then
    DATA="$1/synthetic_784.h5"
    DATA_NOTE="synthetic, the shape of Fashion-MNIST (dataset-fashion-mnist is not installed)"
    "$MIDSCALE" prepare synthetic "$DATA" --train 60000 --test 100 --features 784 --u8 >/dev/null
  fi
}

build() {
  echo "midscale: building in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  local log="$BUILD_DIR/build.log"
  if ! cmake --build "$BUILD_DIR" -j "$(nproc)" >"$log" 2>&1; then
    cat "$log" >&2
    echo "midscale: build failed (log: $log)" >&2
    exit 1
  fi
  grep -E -A3 'warning:' "$log" >&2 || true
}

[ "${MIDSCALE_SKIP_INSTALL:-0}" = 1 ] || install_packages
export_mpi_env
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  build
  echo "midscale: built $BUILD_DIR/midscale"
fi

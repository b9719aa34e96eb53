#!/usr/bin/env bash
# The README's second command: install what is missing, build, run the
# whole test suite (unit, MPI and end-to-end tests) under ctest. The tests
# build with -DMIDSCALE_WERROR=ON: a warning fails them.
#   scripts/test.sh             everything (a few minutes on 2 cores)
#   scripts/test.sh --fast      without the tests labelled 'slow'
#   scripts/test.sh --sanitize  the same in an ASan+UBSan build (build-asan/)
#   scripts/test.sh -- ARGS     extra ctest arguments, e.g. -- -R e2e_resume
set -euo pipefail
fast=0 sanitize=0 ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1 ;;
    --sanitize) sanitize=1 ;;
    --) shift; ctest_args+=("$@"); break ;;
    *) echo "usage: scripts/test.sh [--fast] [--sanitize] [-- ctest args]" >&2; exit 2 ;;
  esac
  shift
done
if [ $sanitize = 1 ]; then
  export MIDSCALE_BUILD_DIR=${MIDSCALE_BUILD_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build-asan}
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ $sanitize = 1 ]; then
  build -DMIDSCALE_WERROR=ON -DMIDSCALE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  # Open MPI and HDF5 keep allocations alive until exit by design; the
  # suppressions name those libraries only, never midscale's own code. For
  # them to match, the MPI plugins must stay loaded (no dlclose) and stacks
  # must be unwound fully.
  export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
  export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
  export ASAN_OPTIONS="abort_on_error=0:detect_odr_violation=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  build -DMIDSCALE_WERROR=ON
fi
[ $fast = 1 ] && ctest_args=(-LE slow "${ctest_args[@]}")
cd "$BUILD_DIR"
ctest --output-on-failure "${ctest_args[@]}"

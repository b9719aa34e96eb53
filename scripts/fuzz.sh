#!/usr/bin/env bash
# Fuzzes one target with libFuzzer, ASan and UBSan for SECONDS (default 600):
#   scripts/fuzz.sh [SECONDS] [config|ckpt|npy|csv|chunk]
# config: the config parser (tests/fuzz/fuzz_config.c, seeds from configs/,
# tests/configs/ and tests/fuzz/seeds); ckpt: the checkpoint reader
# (fuzz_ckpt.c); npy, csv: the `prepare` converters (fuzz_npy.c,
# fuzz_csv.c); chunk: the direct chunk decoder (fuzz_chunk.c); each of the
# last four seeded from tests/fuzz/seeds_<target>.
# Builds build-fuzz/ with clang (-DMIDSCALE_FUZZ=ON), keeps the growing
# corpus in build-fuzz/corpus/<target> and any crashing input in
# build-fuzz/artifacts/. One fuzzing process (libFuzzer's default; the
# machine is shared, so run targets one after another, under nice -n 19);
# an input slower than 5 s is a finding (-timeout=5). Exit status:
# libFuzzer's (0 = no crash, leak, timeout or sanitizer report).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MIDSCALE_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECONDS_TO_RUN=${1:-600}
TARGET=${2:-config}
case "$TARGET" in
  config | ckpt | npy | csv | chunk) ;;
  *) echo "scripts/fuzz.sh: unknown target '$TARGET' (config, ckpt, npy, csv, chunk)" >&2; exit 2 ;;
esac
CC=${CC:-clang}
command -v "$CC" >/dev/null || { echo "scripts/fuzz.sh: needs clang (apt-get install clang)" >&2; exit 2; }
cmake -S "$ROOT" -B "$BUILD" -DMIDSCALE_FUZZ=ON -DCMAKE_C_COMPILER="$CC" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j --target "fuzz_$TARGET"
mkdir -p "$BUILD/corpus/$TARGET" "$BUILD/artifacts"
COMMON=(-max_total_time="$SECONDS_TO_RUN" -print_final_stats=1
  -artifact_prefix="$BUILD/artifacts/")
if [ "$TARGET" = config ]; then
  exec "$BUILD/tests/fuzz/fuzz_config" "${COMMON[@]}" -dict="$ROOT/tests/fuzz/config.dict" \
    "$BUILD/corpus/config" "$ROOT/configs" "$ROOT/tests/configs" "$ROOT/tests/fuzz/seeds"
fi
exec "$BUILD/tests/fuzz/fuzz_$TARGET" "${COMMON[@]}" -timeout=5 -rss_limit_mb=1024 \
  "$BUILD/corpus/$TARGET" "$ROOT/tests/fuzz/seeds_$TARGET"

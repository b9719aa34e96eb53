#!/usr/bin/env bash
# Fuzzes the config parser (tests/fuzz/fuzz_config.c) or the checkpoint
# reader (tests/fuzz/fuzz_ckpt.c) with libFuzzer, ASan and UBSan for SECONDS
# (default 600):
#   scripts/fuzz.sh [SECONDS] [config|ckpt]
# Builds build-fuzz/ with clang (-DMIDSCALE_FUZZ=ON), seeds from configs/ and
# tests/configs/, keeps the growing corpus in build-fuzz/corpus/config and any
# crashing input in build-fuzz/artifacts/. Exit status: libFuzzer's (0 = no
# crash, leak or sanitizer report).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MIDSCALE_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECONDS_TO_RUN=${1:-600}
TARGET=${2:-config}
CC=${CC:-clang}
command -v "$CC" >/dev/null || { echo "scripts/fuzz.sh: needs clang (apt-get install clang)" >&2; exit 2; }
cmake -S "$ROOT" -B "$BUILD" -DMIDSCALE_FUZZ=ON -DCMAKE_C_COMPILER="$CC" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j --target "fuzz_$TARGET"
mkdir -p "$BUILD/corpus/$TARGET" "$BUILD/artifacts"
if [ "$TARGET" = ckpt ]; then
  exec "$BUILD/tests/fuzz/fuzz_ckpt" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
    -timeout=5 -rss_limit_mb=1024 -artifact_prefix="$BUILD/artifacts/" \
    "$BUILD/corpus/ckpt" "$ROOT/tests/fuzz/seeds_ckpt"
fi
exec "$BUILD/tests/fuzz/fuzz_config" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
  -dict="$ROOT/tests/fuzz/config.dict" -artifact_prefix="$BUILD/artifacts/" \
  "$BUILD/corpus/config" "$ROOT/configs" "$ROOT/tests/configs" "$ROOT/tests/fuzz/seeds"

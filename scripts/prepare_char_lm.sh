#!/usr/bin/env bash
# The character-level language model's data: the English text of Debian's
# `fortunes` package (the fortune files under /usr/share/games/fortunes, not
# the offensive ones of fortunes-off; about 2.6 MB), byte-level tokens
# (vocab_size 256), the last 10% of each file held out as the test split.
#   scripts/prepare_char_lm.sh [OUT.h5]   (default data-cache/char_lm.h5)
# Writes /train/tokens and /test/tokens (midscale prepare text; data.tokens
# configs read them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
build
cd "$ROOT"
OUT=${1:-data-cache/char_lm.h5}
CORPUS=/usr/share/games/fortunes
files=()
for f in "$CORPUS"/*; do
  # The .dat files are strfile's binary indexes; the .u8 names are symbolic
  # links to the text files themselves.
  case "$f" in *.dat | *.u8) continue ;; esac
  [ -f "$f" ] && files+=("$f")
done
if [ ${#files[@]} -eq 0 ]; then
  echo "midscale: no fortune files in $CORPUS (Debian package fortunes; scripts/setup.sh installs it)" >&2
  exit 1
fi
mkdir -p "$(dirname "$OUT")"
echo "+ midscale prepare text (${#files[@]} files of $CORPUS) $OUT --vocab bytes --test-fraction 0.1"
"$BUILD_DIR/midscale" prepare text "${files[@]}" "$OUT" --vocab bytes --test-fraction 0.1

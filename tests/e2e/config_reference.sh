#!/usr/bin/env bash
# configs/REFERENCE.md is what `midscale config-reference` prints from the
# schema table, so the docs cannot drift from the code. After changing the
# table: build/midscale config-reference > configs/REFERENCE.md
source "$(dirname "$0")/lib.sh"
"$MIDSCALE" config-reference >REFERENCE.md
diff -u "$MS_SOURCE_DIR/configs/REFERENCE.md" REFERENCE.md ||
  fail "configs/REFERENCE.md is out of date: regenerate it with 'midscale config-reference > configs/REFERENCE.md'"
echo "config_reference: ok"

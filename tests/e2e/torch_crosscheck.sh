#!/usr/bin/env bash
# Issue 7, point 2: the kernels, losses, optimizers and schedules agree with
# PyTorch. tests/layers_dump writes its inputs, outputs and gradients;
# tests/tools/torch_crosscheck.py recomputes them in torch (float64) and
# compares. PyTorch is Debian's python3-torch, importable only from the
# system interpreter, hence /usr/bin/python3; without it the test fails and
# names the package.
source "$(dirname "$0")/lib.sh"

DUMP=${LAYERS_DUMP:-$(dirname "$MIDSCALE")/tests/layers_dump}
TORCH_PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
[ -x "$DUMP" ] || fail "no driver at $DUMP (build the layers_dump target)"
[ -x "$TORCH_PYTHON" ] || fail "no $TORCH_PYTHON: the cross-check needs Debian's python3-torch and python3-numpy"

"$DUMP" dump.safetensors || fail "layers_dump failed"
OPENBLAS_NUM_THREADS=1 "$TORCH_PYTHON" "$MS_SOURCE_DIR/tests/tools/torch_crosscheck.py" \
  dump.safetensors || fail "the PyTorch cross-check failed (see above)"
echo "torch_crosscheck: ok"

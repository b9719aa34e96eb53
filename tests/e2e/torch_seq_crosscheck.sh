#!/usr/bin/env bash
# Issue 20: a 2-block transformer language model agrees with PyTorch.
# tests/seq_dump builds the model, exports its initial parameters the way
# `midscale export` does, and trains it 20 AdamW steps on fixed token
# batches; tests/tools/torch_seq_crosscheck.py loads the export into a
# PyTorch module tree with the same tensor names and checks the forward,
# the gradients, the losses and the final parameters (float64 torch), with
# the output head tied to the embedding and with a head of its own.
source "$(dirname "$0")/lib.sh"

DUMP=${SEQ_DUMP:-$(dirname "$MIDSCALE")/tests/seq_dump}
TORCH_PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
[ -x "$DUMP" ] || fail "no driver at $DUMP (build the seq_dump target)"
[ -x "$TORCH_PYTHON" ] || fail "no $TORCH_PYTHON: the cross-check needs Debian's python3-torch and python3-numpy"

for head in tied untied; do
  mkdir -p "$head"
  OPENBLAS_NUM_THREADS=1 "$DUMP" "$head" "$head" || fail "seq_dump $head failed"
  OPENBLAS_NUM_THREADS=1 "$TORCH_PYTHON" "$MS_SOURCE_DIR/tests/tools/torch_seq_crosscheck.py" \
    "$head" || fail "the PyTorch cross-check of the $head model failed (see above)"
done
echo "torch_seq_crosscheck: ok"

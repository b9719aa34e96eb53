#!/usr/bin/env bash
# Token sets (issue 20, the data side). The windows each rank's loader
# serves (tests/token_dump: data_open_tokens + the loader under mpiexec,
# the training program's data path without a model) are checked by
# tests/tools/token_windows.py against h5py's arrays and the reference
# sample order, on 1 and 2 ranks: a uint16 stream at the default stride and
# at strides shorter and longer than seq_len, int32 sequences (N, L), block
# shuffle, and a run resumed at a later step equal to the one that got
# there. Then `midscale prepare text` (bytes and a vocabulary file) against
# the text itself, `midscale check` of a token config, and the exit codes
# of prepare text's bad inputs.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
need_h5py
TOOL="$MS_SOURCE_DIR/tests/tools/token_windows.py"
DUMP="$(dirname "$MIDSCALE")/tests/token_dump"
[ -x "$DUMP" ] || fail "tests/token_dump is not built ($DUMP)"

"$PY" "$TOOL" make tok.h5

# dump NAME NP DATASET SEQ STRIDE BATCH STEPS [options]: one run into NAME/.
SEED=424242
dump() {
  local name=$1 np=$2
  shift 2
  rm -rf "$name"
  mkdir "$name"
  timeout 120 "$MPIEXEC" -n "$np" "$DUMP" tok.h5 "$1" "$2" "$3" "$4" "$SEED" "$5" "$name" \
    "${@:6}" </dev/null || fail "token_dump $name exited $?"
}
# check DATASET SEQ STRIDE BATCH STEPS [options] -- DIRS...
check() {
  local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  "$PY" "$TOOL" check --h5 tok.h5 --ds "${args[0]}" --seq-len "${args[1]}" --stride "${args[2]}" \
    --batch "${args[3]}" --seed $SEED --steps "${args[4]}" "${args[@]:5}" "$@" ||
    fail "windows of ${args[*]}"
}

note "uint16 stream, seq_len 32, default stride: 156 windows, batch 12, 2 epochs and a bit"
dump s1 1 /lm/stream 32 0 12 30
dump s2 2 /lm/stream 32 0 12 30 --prefetch 0
check /lm/stream 32 0 12 30 -- s1 s2

note "stride 7 (overlapping windows) and stride 50 (skipping tokens), 1 and 2 ranks"
dump o1 1 /lm/stream 32 7 16 70
dump o2 2 /lm/stream 32 7 16 70
check /lm/stream 32 7 16 70 -- o1 o2
dump k2 2 /lm/stream 32 50 8 30
check /lm/stream 32 50 8 30 -- k2

note "int32 sequences (40, 57), seq_len 16, stride 10: 5 windows per sequence"
dump q1 1 /lm/seqs 16 10 20 20
dump q2 2 /lm/seqs 16 10 20 20
check /lm/seqs 16 10 20 20 -- q1 q2

note "block shuffle (blocks of 9 windows, 3 per window), uint8, 2 ranks"
dump b2 2 /lm/bytes 24 0 10 25 --shuffle block --block-size 9 --window 3
check /lm/bytes 24 0 10 25 --shuffle block --block-size 9 --window 3 -- b2

note "a run resumed at step 17 (epoch 1) on 2 ranks serves what the whole run served"
dump r2 2 /lm/stream 32 7 16 70 --start 17
check /lm/stream 32 7 16 70 -- o1 r2
cmp <(sed -n '18,$p' o2/rank1.txt) r2/rank1.txt || fail "the resumed run's rank 1 differs"

note "the checker notices a wrong label"
"$PY" - <<'PY'
import numpy as np
y = np.fromfile("s2/rank1.y.i32", dtype=np.int32)
y[5] += 1
y.tofile("s2/rank1.y.i32")
PY
"$PY" "$TOOL" check --h5 tok.h5 --ds /lm/stream --seq-len 32 --batch 12 --seed $SEED --steps 30 \
  s2 2>check.err && fail "a corrupted label went unnoticed"
grep -q "labels differ" check.err || { cat check.err; fail "expected a label mismatch"; }

note "prepare text: bytes, a held-out line per file"
printf 'one two\nthree four\nfive\n' >a.txt
printf 'caf\xc3\xa9 au lait\nsix\n' >b.txt
"$MIDSCALE" prepare text a.txt b.txt text.h5 --test-fraction 0.2 >prep.out || fail "prepare text"
grep -q 'training tokens' prep.out || fail "prepare text printed no counts"
"$PY" - <<'PY' || fail "the token streams differ from the text"
import h5py
f = h5py.File("text.h5", "r")
tr, te = f["train/tokens"], f["test/tokens"]
assert tr.dtype == "uint8" and tr.attrs["vocab_size"] == 256, (tr.dtype, dict(tr.attrs))
want_tr = b"one two\nthree four\n" + "café au lait\n".encode()
want_te = b"five\n" + b"six\n"
assert bytes(tr[()]) == want_tr, bytes(tr[()])
assert bytes(te[()]) == want_te, bytes(te[()])
PY

note "prepare text with a vocabulary of characters"
printf 'a\nc\ne\nf\nu\ni\nl\nt\n\\s\n\\n\nx\n\xc3\xa9\n' >vocab.txt
printf 'caf\xc3\xa9 au lait\n' >c.txt
"$MIDSCALE" prepare text c.txt chars.h5 --vocab vocab.txt >/dev/null || fail "prepare text --vocab"
"$PY" - <<'PY' || fail "the character ids differ"
import h5py
f = h5py.File("chars.h5", "r")
t = f["train/tokens"]
assert t.attrs["vocab_size"] == 12 and t.attrs["tokenizer"] == b"chars", dict(t.attrs)
vocab = [chr(c) for c in f["train/vocab"][()]]
assert "".join(vocab[i] for i in t[()]) == "café au lait\n", list(t[()])
assert "test" not in f
PY

note "a token config: midscale check reads the windows"
cat >cfg.yaml <<YAML
run: {name: tokens, dir: run}
data: {path: tok.h5, train_x: /lm/bytes, test_x: /lm/stream, tokens: true, seq_len: 24, stride: 12}
model:
  layers:
    - {type: dense, units: 1000}
train: {epochs: 1, batch_size: 16}
YAML
"$MIDSCALE" check cfg.yaml >check.out 2>check.err || { cat check.err; fail "check of a token config"; }
grep -q '249 training samples of shape (24)' check.out || { cat check.out; fail "check: 249 windows of 24"; }
grep -q 'token windows of 24 inputs every 12 tokens, from 3001 tokens; vocab_size 256' check.out ||
  { cat check.out; fail "check: the token line"; }
rc=0
"$MIDSCALE" check cfg.yaml --set model.layers[0].units=256 >check.out 2>check.err || rc=$?
[ $rc -eq 3 ] || fail "a model of 256 classes on ids up to 999 must exit 3"
grep -q "has vocab_size 1000, more than the model's 256 classes" check.err || { cat check.err; fail "vocab message"; }
"$MIDSCALE" check cfg.yaml --set data.stride=0 --set data.seq_len=0 >/dev/null 2>check.err && fail "seq_len 0 accepted"
grep -q 'data.seq_len: data.tokens needs' check.err || { cat check.err; fail "seq_len message"; }

note "a sequence model's classes are its vocabulary, not its T x V outputs"
"$PY" - <<'PY'
import h5py, numpy as np
with h5py.File("wide.h5", "w") as f:  # ids up to 99, no vocab_size attribute
    f["ids"] = (np.arange(2000) * 7 % 100).astype(np.uint8)
PY
cat >seq.yaml <<YAML
run: {name: seq, dir: seqrun}
data: {path: wide.h5, train_x: /ids, train_y: /ids, test_x: "", test_y: "", tokens: true, seq_len: 8}
model:
  input: [8]
  layers:
    - {type: embedding, vocab: 16, dim: 8}
    - {type: pos_embedding}
    - {type: transformer_block, heads: 2, causal: true}
    - {type: dense, units: 16}
train: {epochs: 1, batch_size: 8}
YAML
for cmd in check train; do
  rc=0
  timeout 120 "$MPIEXEC" -n $([ $cmd = train ] && echo 2 || echo 1) "$MIDSCALE" $cmd seq.yaml \
    >seq.out 2>seq.err </dev/null || rc=$?
  [ $rc -eq 3 ] || { cat seq.err; fail "$cmd: ids up to 99 for a 16-token model: exit $rc, expected 3"; }
  grep -q "outside the model's vocabulary \[0, 16)" seq.err || { cat seq.err; fail "$cmd: vocab message"; }
done

note "a sequence model on a set of one label per sample: exit 3, not a read past the labels"
"$PY" - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(2)
with h5py.File("flat.h5", "w") as f:
    f["x"] = r.integers(0, 16, (64, 8)).astype(np.float32)
    f["y"] = r.integers(0, 16, (64,)).astype(np.int32)
PY
sed -e 's|path: wide.h5, train_x: /ids, train_y: /ids|path: flat.h5, train_x: /x, train_y: /y|' \
  -e 's|, tokens: true, seq_len: 8||' seq.yaml >flat.yaml
for cmd in check train; do
  rc=0
  timeout 120 "$MPIEXEC" -n $([ $cmd = train ] && echo 2 || echo 1) "$MIDSCALE" $cmd flat.yaml \
    >seq.out 2>seq.err </dev/null || rc=$?
  [ $rc -eq 3 ] || { cat seq.err; fail "$cmd: a sequence model on one label per sample: exit $rc, expected 3"; }
  grep -q "one label per position" seq.err || { cat seq.err; fail "$cmd: sequence label message"; }
done

note "a sequence model with mse reads n_out = T x V targets a sample, not V"
"$PY" - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(3)
with h5py.File("reg.h5", "w") as f:
    f["x"] = r.integers(0, 16, (64, 8)).astype(np.float32)
    f["t"] = r.standard_normal((64, 8 * 16)).astype(np.float32)
PY
sed -e 's|path: flat.h5, train_x: /x, train_y: /y|path: reg.h5, train_x: /x, train_y: /t|' \
  -e 's|^model:|model:\n  loss: mse|' flat.yaml >reg.yaml
"$MIDSCALE" check reg.yaml >seq.out 2>seq.err || { cat seq.err; fail "check: a sequence model with mse on (N, T x V) targets"; }

note "prepare text: bad inputs"
set +e
"$MIDSCALE" prepare text text.h5 2>err.txt; rc=$?
[ $rc -eq 2 ] || fail "prepare text with no input: exit $rc, expected 2"
"$MIDSCALE" prepare text a.txt out.h5 --test-fraction 1 2>err.txt; rc=$?
[ $rc -eq 2 ] || fail "--test-fraction 1: exit $rc, expected 2"
"$MIDSCALE" prepare text missing.txt out.h5 2>err.txt; rc=$?
[ $rc -eq 3 ] && grep -q "missing.txt" err.txt || fail "a missing text file: exit $rc, $(cat err.txt)"
printf 'a\n' >small.txt
"$MIDSCALE" prepare text b.txt out.h5 --vocab small.txt 2>err.txt; rc=$?
[ $rc -eq 3 ] && grep -q "'b.txt' line 1: character U+0063 ('c') is not in the vocabulary" err.txt ||
  fail "a character outside the vocabulary: exit $rc, $(cat err.txt)"
[ ! -e out.h5 ] || fail "a failed prepare text wrote out.h5"
printf 'not hdf5' >keep.h5
"$MIDSCALE" prepare text a.txt keep.h5 2>err.txt; rc=$?
[ $rc -eq 3 ] && [ "$(cat keep.h5)" = "not hdf5" ] || fail "prepare text overwrote a file that is not HDF5"
set -e
note "token windows: ok"

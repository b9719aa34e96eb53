#!/usr/bin/env bash
# Issue 20: `midscale generate` on a byte-level language model. tests/lm_init
# writes the step-0 checkpoint of a small transformer (no data needed);
# generate must be deterministic for a seed, write the prompt and N bytes,
# and refuse bad arguments (exit 2), a model that is not a causal byte-level
# language model (exit 2) and a checkpoint of another model (exit 4).
# Then a character vocabulary end to end: prepare text --vocab FILE (with
# multi-byte characters), train a few steps on those tokens, generate: the
# prompt maps through the vocabulary, every output character is in it, the
# same seed gives the same text, and a prompt character outside it is
# exit 2 naming it.
source "$(dirname "$0")/lib.sh"

INIT=${LM_INIT:-$(dirname "$MIDSCALE")/tests/lm_init}
[ -x "$INIT" ] || fail "no fixture at $INIT (build the lm_init target)"

write_config() { # FILE VOCAB DIM CAUSAL
  cat >"$1" <<YAML
run: {name: gen, seed: 5}
data: {path: none.h5, train_x: /train/x, train_y: /train/y}
model:
  input: [16]
  tie_embeddings: true
  layers:
    - {type: embedding, vocab: $2, dim: $3}
    - {type: pos_embedding}
    - {type: transformer_block, heads: 4, causal: $4}
    - {type: layernorm}
    - {type: dense, units: $2}
YAML
}
write_config lm.yaml 256 32 true
ck=$("$INIT" lm.yaml ck) || fail "lm_init failed"
gen() { "$MIDSCALE" generate lm.yaml "$ck" "$@"; }

note "deterministic for a seed"
gen --prompt "Hello, " --tokens 50 --seed 3 --top-k 40 --temperature 0.8 >a.txt || fail "generate failed"
gen --prompt "Hello, " --tokens 50 --seed 3 --top-k 40 --temperature 0.8 >b.txt || fail "generate failed"
cmp a.txt b.txt || fail "the same seed gave different text"
gen --prompt "Hello, " --tokens 50 --seed 4 --top-k 40 --temperature 0.8 >c.txt || fail "generate failed"
cmp -s a.txt c.txt && fail "seeds 3 and 4 gave the same text"
[ "$(head -c 7 a.txt)" = "Hello, " ] || fail "the output does not start with the prompt"
[ "$(wc -c <a.txt)" -eq 58 ] || fail "expected the prompt, 50 bytes and a newline, found $(wc -c <a.txt) bytes"

note "a prompt longer than the context slides the window"
gen --prompt "$(printf 'x%.0s' $(seq 40))" --tokens 5 --temperature 0 >d.txt || fail "a long prompt failed"

expect_exit() { # CODE MESSAGE-PART ARGS...
  local code=$1 part=$2
  shift 2
  set +e
  "$MIDSCALE" generate "$@" >out.log 2>err.log
  local rc=$?
  set -e
  [ $rc -eq "$code" ] || { cat err.log; fail "generate $*: exit $rc, expected $code"; }
  grep -q -- "$part" err.log || { cat err.log; fail "generate $*: no '$part' in the message"; }
  [ "$(wc -l <err.log)" -eq 1 ] || { cat err.log; fail "generate $*: more than one line"; }
}
note "errors"
expect_exit 2 "expects an integer" lm.yaml "$ck" --prompt x --tokens 0
expect_exit 2 "expects a number" lm.yaml "$ck" --prompt x --temperature hot
expect_exit 2 "usage: midscale generate" lm.yaml "$ck"
expect_exit 2 "unexpected argument" lm.yaml "$ck" --prompt x --bogus 1
write_config acausal.yaml 256 32 false
expect_exit 2 "causal" acausal.yaml "$ck" --prompt x
write_config small.yaml 64 32 true
expect_exit 2 "byte-level" small.yaml "$ck" --prompt x
write_config wide.yaml 256 64 true
expect_exit 4 "another model" wide.yaml "$ck" --prompt x
head -c 1000 "$ck" >cut.zst
expect_exit 4 "cut.zst" lm.yaml cut.zst --prompt x

note "a character vocabulary: prepare text --vocab FILE, train, generate"
printf '%s\n' a b c d e l o r s t 'é' 'ü' 'ß' '\s' '\n' . >vocab.txt
awk 'BEGIN { srand(7); split("le été über straße désolé roses bloße", w, " ");
             for (l = 0; l < 400; l++) { s = ""; for (i = 0; i < 5; i++) s = s (i ? " " : "") w[1 + int(rand() * 7)];
               print s "." } }' >chars.txt
"$MIDSCALE" prepare text chars.txt chars.h5 --vocab vocab.txt --test-fraction 0.1 >/dev/null ||
  fail "prepare text --vocab failed"
cat >char.yaml <<YAML
run: {name: chars, dir: crun, seed: 3}
data: {path: chars.h5, train_x: /train/tokens, test_x: /test/tokens, tokens: true, seq_len: 16}
model:
  tie_embeddings: true
  layers:
    - {type: embedding, vocab: 16, dim: 16}
    - {type: pos_embedding}
    - {type: transformer_block, heads: 2}
    - {type: layernorm}
    - {type: dense, units: 16}
optim: {name: adamw, lr: 0.01}
train: {max_steps: 6, batch_size: 8}
checkpoint: {every_steps: 6}
log: {every_steps: 1, progress: false}
YAML
run_np 1 train char.yaml
expect_ok
cck=crun/checkpoints/step-00000006.safetensors.zst
[ -f "$cck" ] || fail "no checkpoint $cck"
cgen() { "$MIDSCALE" generate char.yaml "$cck" "$@"; }
cgen --prompt "été " --tokens 80 --seed 5 --temperature 1.5 >ca.txt || fail "generate (chars) failed"
cgen --prompt "été " --tokens 80 --seed 5 --temperature 1.5 >cb.txt || fail "generate (chars) failed"
cmp ca.txt cb.txt || fail "chars: the same seed gave different text"
/usr/bin/python3 - <<'PY' || fail "chars: the output is not text of the vocabulary"
import sys
vocab = {"\n" if l == "\\n" else " " if l == "\\s" else l
         for l in open("vocab.txt", encoding="utf-8").read().split("\n") if l}
text = open("ca.txt", encoding="utf-8").read()  # strict UTF-8
assert text.startswith("été "), text[:10]
body = text[len("été "):-1]  # the generated part, less generate's final newline
assert len(body) == 80, (len(body), body)
bad = sorted(set(body) - vocab)
assert not bad, bad
assert any(ord(c) > 127 for c in body), body  # multi-byte characters decoded
print("--- chars sample:", repr(body[:40]))
PY
expect_exit 2 "U+00E0" char.yaml "$cck" --prompt "là"
sed 's/vocab: 16/vocab: 256/; s/units: 16/units: 256/' char.yaml >char256.yaml
expect_exit 2 "the characters of data.train_x, 16 ids" char256.yaml "$cck" --prompt x
sed 's/chars.h5/gone.h5/' char.yaml >gone.yaml
expect_exit 3 "gone.h5" gone.yaml "$cck" --prompt x
echo "generate: ok"

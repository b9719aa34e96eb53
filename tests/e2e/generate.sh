#!/usr/bin/env bash
# Issue 20: `midscale generate` on a byte-level language model. tests/lm_init
# writes the step-0 checkpoint of a small transformer (no data needed);
# generate must be deterministic for a seed, write the prompt and N bytes,
# and refuse bad arguments (exit 2), a model that is not a causal byte-level
# language model (exit 2) and a checkpoint of another model (exit 4).
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
echo "generate: ok"

#!/usr/bin/env bash
# A checkpoint written by N ranks is N zstd frames (each rank compresses its
# slice), in the background or on the spot (checkpoint.compress
# background|sync), each rank writing its frame into the file (ranks of one
# node, the default) or rank 0 gathering them (checkpoint.write gather, what
# ranks on several nodes do by default): every way, the
# files verify, `zstd -d` gives the same payload, and a run stopped and
# resumed from them ends bitwise identical to one that was not.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 1536 --test 128 --features 64
smoke_config cfg.yaml data.h5 run
# 1536 / 96 = 16 steps an epoch, 32 in all; a checkpoint every 3 steps.
common=(--set train.epochs=2 --set train.batch_size=96 --set model.layers[0].units=200
  --set checkpoint.every_steps=3 --set checkpoint.keep=20)

# frames FILE: the number of zstd frames in FILE (RFC 8878).
frames() {
  "$PYTHON" - "$1" <<'PY'
import sys
b, at, n = open(sys.argv[1], "rb").read(), 0, 0
while at < len(b):
    assert b[at:at + 4] == b"\x28\xb5\x2f\xfd", "not a zstd frame"
    fhd = b[at + 4]
    single, did, fcs = (fhd >> 5) & 1, fhd & 3, fhd >> 6
    at += 5 + (0 if single else 1) + [0, 1, 2, 4][did] + [1 if single else 0, 2, 4, 8][fcs]
    while True:
        bh = int.from_bytes(b[at:at + 3], "little")
        at += 3 + (1 if (bh >> 1) & 3 == 1 else bh >> 3)
        if bh & 1:
            break
    at += 4 if (fhd >> 2) & 1 else 0
    n += 1
print(n)
PY
}

note "reference: 3 ranks, uninterrupted"
run_np 3 train cfg.yaml "${common[@]}" --set run.dir=ref
expect_ok
decompress ref/checkpoints/step-00000032.safetensors.zst ref.safetensors

for mode in sync background gather-sync gather-background; do
  compress=${mode#gather-}
  gather=0 write=auto
  case $mode in gather-*) gather=1 write=gather ;; esac
  policy=(--set checkpoint.compress="$compress" --set checkpoint.write="$write")
  note "$mode: 3 ranks, stop at step 20, resume"
  run_np 3 train cfg.yaml "${common[@]}" "${policy[@]}" --set run.dir="$mode" --stop-at 20
  expect_ok
  # The banner names the resolved policy; "(auto)" only for the rule's choice.
  if [ "$write" = auto ]; then banner="checkpoint: compress $compress, write ranks (auto)"
  else banner="checkpoint: compress $compress, write gather ("; fi
  grep -qF "$banner" "$LAST_OUT" || { cat "$LAST_OUT"; fail "$mode: banner"; }
  for f in "$mode"/checkpoints/step-*.safetensors.zst; do
    [ "$(frames "$f")" -eq 3 ] || fail "$f: $(frames "$f") frames, expected 3"
    "$MIDSCALE" inspect "$f" | grep -q 'saved on 3 rank' || fail "$f does not verify"
  done
  n=$(ls "$mode"/checkpoints | grep -c '^step-')
  [ "$n" -ge 7 ] || fail "$mode: only $n checkpoints"
  grep -q "\"background_compress\":$([ "$compress" = background ] && echo 1 || echo 0),\"ranks_write\":$((1 - gather))," \
    "$mode/metrics.jsonl" || fail "$mode: the run did not save as $mode"
  run_np 3 train cfg.yaml "${common[@]}" "${policy[@]}" --set run.dir="$mode" --resume auto
  expect_ok
  grep -q 'resumed from .*step-00000020.safetensors.zst at step 20' "$LAST_OUT" ||
    { cat "$LAST_OUT"; fail "$mode: did not resume at step 20"; }
  decompress "$mode/checkpoints/step-00000032.safetensors.zst" "$mode.safetensors"
  "$PYTHON" "$CHECKER" --compare ref.safetensors "$mode.safetensors" || fail "$mode: parameters differ"
done

note "1 rank: one frame"
run_np 1 train cfg.yaml "${common[@]}" --set run.dir=one --stop-at 3
expect_ok
[ "$(frames one/checkpoints/step-00000003.safetensors.zst)" -eq 1 ] || fail "1 rank, not 1 frame"
echo "frames: ok"

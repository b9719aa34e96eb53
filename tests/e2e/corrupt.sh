#!/usr/bin/env bash
# A corruption corpus: truncations, bit flips in the zstd stream, and
# damage inside the safetensors payload (recompressed, so that only
# midscale's own checks can catch it) — each refused with exit 4 and a
# message that says what is wrong, by `inspect` and by `train --resume`.
source "$(dirname "$0")/lib.sh"

synth data.h5 --train 512 --test 128 --features 16
smoke_config cfg.yaml data.h5 run
run_np 2 train cfg.yaml --set train.epochs=1
expect_ok
good=run/checkpoints/step-00000008.safetensors.zst
"$MIDSCALE" inspect "$good" | grep -q 'verified' || fail "the good checkpoint does not verify"
size=$(stat -c %s "$good")
cases=0

# refused FILE TEXT: inspect exits 4 with exactly one error line holding TEXT.
refused() {
  local f=$1 text=$2 rc=0
  "$MIDSCALE" inspect "$f" >/dev/null 2>inspect.err || rc=$?
  [ $rc -eq 4 ] || { cat inspect.err; fail "$f: inspect exit $rc, expected 4"; }
  [ "$(grep -c '^midscale: error:' inspect.err)" -eq 1 ] || fail "$f: not one message"
  grep -F -q -- "$text" inspect.err || { cat inspect.err; fail "$f: message lacks '$text'"; }
  cases=$((cases + 1))
  echo "    $(basename "$f"): $(cut -c1-150 inspect.err)"
}

note "truncated at several offsets"
for cut in 0 4 16 $((size / 3)) $((size / 2)) $((size - 8)) $((size - 1)); do
  head -c "$cut" "$good" >"trunc-$cut.zst"
  refused "trunc-$cut.zst" "trunc-$cut.zst"
done

note "a whole zstd frame missing (2 ranks wrote 2 frames)"
# frame_ends FILE: the byte offset where each zstd frame ends (RFC 8878).
frame_ends() {
  "$PYTHON" - "$1" <<'PY'
import sys
b, at = open(sys.argv[1], "rb").read(), 0
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
    print(at)
PY
}
ends=$(frame_ends "$good")
[ "$(echo "$ends" | wc -l)" -eq 2 ] || fail "expected 2 frames from 2 ranks, found: $ends"
head -c "$(echo "$ends" | head -n 1)" "$good" >frame1only.zst
refused frame1only.zst "the zstd stream ends after frame 1"

note "one bit flipped in the compressed stream"
for pos in 6 12 40 $((size / 2)) $((size - 20)) $((size - 2)); do
  cp "$good" "flip-$pos.zst"
  byte=$(od -An -tu1 -j "$pos" -N1 "$good" | tr -d ' ')
  printf "\\x$(printf %02x $((byte ^ 16)))" | dd of="flip-$pos.zst" bs=1 seek="$pos" conv=notrunc status=none
  refused "flip-$pos.zst" "flip-$pos.zst"
done

note "damage inside the payload, recompressed with a valid zstd checksum"
decompress "$good" plain.safetensors
psize=$(stat -c %s plain.safetensors)
hlen=$(od -An -tu8 -N8 plain.safetensors | tr -d ' ')
# payload NAME TEXT: recompress the edited plain.safetensors copy NAME.st.
payload() {
  zstd -q -f --check "$1.st" -o "$1.zst"
  refused "$1.zst" "$2"
}
cp plain.safetensors databit.st
printf '\x01' | dd of=databit.st bs=1 seek=$((psize - 3)) conv=notrunc status=none
payload databit "data hash"
sed 's/"format_version":"2"/"format_version":"3"/' plain.safetensors >future.st
cmp -s future.st plain.safetensors && fail "could not edit format_version"
payload future "newer midscale"
cp plain.safetensors notjson.st
printf '[' | dd of=notjson.st bs=1 seek=8 conv=notrunc status=none
payload notjson "not a JSON object"
cp plain.safetensors badlen.st
printf '\xff\xff\xff\x7f' | dd of=badlen.st bs=1 seek=0 conv=notrunc status=none
payload badlen "header length"
head -c $((psize - 4)) plain.safetensors >short.st
payload short "bytes but the data section has"
"$PYTHON" - plain.safetensors dtype.st "$hlen" <<'PY'
import sys
src, dst, hlen = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(src, "rb").read())
h = b[8:8 + hlen].decode()
assert '"dtype":"F32"' in h
b[8:8 + hlen] = h.replace('"dtype":"F32"', '"dtype":"F16"', 1).encode()
open(dst, "wb").write(b)
PY
payload dtype "F16"

note "through train --resume on 2 ranks, for a sample: exit 4, one message"
for f in trunc-$((size / 2)).zst flip-$((size / 2)).zst frame1only.zst databit.zst future.zst; do
  run_np 2 train cfg.yaml --resume "$f"
  expect_error 4 "$f"
done
"$MIDSCALE" inspect "$good" >/dev/null || fail "the good checkpoint was damaged"
note "$cases corrupted files refused"
echo "corrupt: ok"

#!/usr/bin/env bash
# Hostile checkpoints, configs and command lines (issue 16): each case, made
# at test time by tests/hostile/make_ckpt_cases.py from one good checkpoint,
# goes through `inspect`, `export`, `train --resume` or `check`, and must end
# with its exit code and exactly one clear message, in under 10 s and (Release
# build) 200 MB of peak RSS, with no terminal escape from the file printed.
# Then a run whose newest checkpoint is each kind of damaged file resumes
# from the previous good one on 2 ranks within 10 s.
# MS_HOSTILE_NO_RSS=1 (the sanitizer build) skips the memory bound.
# MS_HOSTILE_KEEP_GOING=1 runs every case and counts the failures instead of
# stopping at the first (to show which cases an older build fails).
source "$(dirname "$0")/lib.sh"
RUN_TIMEOUT=${RUN_TIMEOUT:-60}
failed=0
# try CMD...: CMD; with MS_HOSTILE_KEEP_GOING=1 in a subshell, a failure counted.
try() {
  if [ "${MS_HOSTILE_KEEP_GOING:-0}" = 1 ]; then
    ("$@") || failed=$((failed + 1))
  else
    "$@"
  fi
  runs=$((runs + 1))
}

synth data.h5 --train 512 --test 128 --features 16
smoke_config cfg.yaml data.h5 run
sed -i 's/epochs: 2/epochs: 1/' cfg.yaml
run_np 2 train cfg.yaml
expect_ok
good=run/checkpoints/step-00000008.safetensors.zst
[ -f "$good" ] || fail "no step-8 checkpoint"
/usr/bin/python3 "$MS_SOURCE_DIR/tests/hostile/make_ckpt_cases.py" "$good" cases
MAX_S=10
MAX_KB=$((200 * 1024))
runs=0

# bounded CODE TEXT CMD...: CMD exits CODE within MAX_S seconds and MAX_KB of
# peak RSS; with CODE != 0 stderr holds exactly one "midscale: error:" line,
# containing TEXT; no output holds an escape, BEL or CSI byte or a forged line.
bounded() {
  local code=$1 text=$2 rc=0
  shift 2
  timeout -k 5 30 /usr/bin/time -v -o time.txt "$@" </dev/null >case.out 2>case.err || rc=$?
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$*: hung (killed after 30 s)"
  [ $rc -eq "$code" ] || { cat case.err; fail "$*: exit $rc, expected $code"; }
  local n
  n=$(grep -c '^midscale: error:' case.err || true)
  if [ "$code" -ne 0 ]; then
    [ "$n" -eq 1 ] || { cat case.err; fail "$*: $n error lines, expected 1"; }
    grep -F -q -- "$text" case.err || { cat case.err; fail "$*: message lacks '$text'"; }
  fi
  ! grep -q '^midscale: error: forged' case.out case.err || fail "$*: a forged line got through"
  ! LC_ALL=C grep -q $'[\x1b\x07\x9b]' case.out case.err || fail "$*: a terminal escape got through"
  local wall kb
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' time.txt)
  kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' time.txt)
  awk -v w="$wall" -v m="$MAX_S" 'BEGIN { n = split(w, p, ":"); s = 0;
    for (i = 1; i <= n; i++) s = s * 60 + p[i]; exit !(s < m) }' ||
    fail "$*: took $wall (bound ${MAX_S} s)"
  [ "${MS_HOSTILE_NO_RSS:-0}" = 1 ] || [ "$kb" -lt "$MAX_KB" ] ||
    fail "$*: peak RSS $kb kB (bound $MAX_KB kB)"
  printf '    %-34s exit %s %6s kB %8s  %s\n' "${LABEL:-$2}" "$rc" "$kb" "$wall" \
    "$(grep -m1 '^midscale: error:' case.err | cut -c17-130)"
}

note "checkpoint cases: inspect, export (safetensors, onnx), train --resume"
while IFS=$'\t' read -r name tool code text; do
  f=cases/$name.zst
  LABEL="$tool $name"
  case $tool in
    inspect)
      try bounded "$code" "$text" "$MIDSCALE" inspect "$f" --config
      # eval reads a checkpoint as inspect does (issue 19): a damaged file
      # is refused the same way; a sound one is evaluated or, when made
      # for another model, refused with exit 4.
      LABEL="eval $name"
      if [ "$code" -ne 0 ]; then
        try bounded "$code" "$text" "$MIDSCALE" eval cfg.yaml "$f"
      fi ;;
    export) try bounded "$code" "$text" "$MIDSCALE" export "$f" "exported-$name.safetensors" ;;
    onnx) try bounded "$code" "$text" "$MIDSCALE" export "$f" "exported-$name.onnx" ;;
    resume) try bounded "$code" "$text" "$MIDSCALE" train cfg.yaml --resume "$f" ;;
  esac
done <cases/cases.tsv

LABEL=
note "export onto its input"
cp "$good" keep.zst
try bounded 2 "is the checkpoint being read" "$MIDSCALE" export keep.zst keep.zst
try bounded 2 "is the checkpoint being read" "$MIDSCALE" export keep.zst ./keep.zst
ln -s keep.zst link.safetensors
try bounded 2 "is the checkpoint being read" "$MIDSCALE" export keep.zst link.safetensors
ln keep.zst hard.safetensors
try bounded 2 "is the checkpoint being read" "$MIDSCALE" export keep.zst hard.safetensors
try cmp -s keep.zst "$good"
try bounded 0 - "$MIDSCALE" inspect keep.zst

note "configs and --set"
{ printf 'run: '; head -c 200000 /dev/zero | tr '\0' '['; } >deep.yaml
try bounded 2 "nested at most 32 deep" "$MIDSCALE" check deep.yaml
{ printf 'run: '; for _ in $(seq 40); do printf '{a: '; done; echo; } >deepmap.yaml
try bounded 2 "nested at most 32 deep" "$MIDSCALE" check deepmap.yaml
{ cat cfg.yaml; head -c 1200000 /dev/zero | tr '\0' '#'; echo; } >big.yaml
try bounded 2 "expected a config of at most 1048576 bytes" "$MIDSCALE" check big.yaml
mkfifo fifo.yaml
try bounded 2 "not a regular file" "$MIDSCALE" check fifo.yaml
{ cat cfg.yaml; printf '"log\\0junk": {every_steps: 3}\n'; } >nul.yaml
try bounded 2 "NUL character" "$MIDSCALE" check nul.yaml
try bounded 2 "found more than one document" "$MIDSCALE" check cfg.yaml --set $'optim.lr=0.1\n---\n0.2'
try bounded 2 "found more than one document" "$MIDSCALE" check cfg.yaml --set $'train.epochs=3\n--- 4'
try bounded 0 - "$MIDSCALE" check cfg.yaml --set 'optim.lr=0.1'

# fallback BAD: a run whose newest checkpoint is case BAD resumes from step 8.
fallback() {
  local bad=$1
  rm -rf fb && mkdir -p fb/checkpoints
  cp "$good" fb/checkpoints/
  if [ -p "cases/$bad.zst" ]; then
    mkfifo fb/checkpoints/step-00000099.safetensors.zst
  elif [ -d "cases/$bad.zst" ]; then
    mkdir fb/checkpoints/step-00000099.safetensors.zst
  else
    cp "cases/$bad.zst" fb/checkpoints/step-00000099.safetensors.zst
  fi
  t0=$(date +%s.%N)
  run_np 2 train cfg.yaml --set run.dir=fb --resume auto
  t1=$(date +%s.%N)
  expect_ok
  grep -q 'step-00000008' "$LAST_OUT" "$LAST_ERR" || { cat "$LAST_OUT"; fail "$bad: not resumed from step 8"; }
  grep -q 'step-00000099' "$LAST_OUT" "$LAST_ERR" || fail "$bad: the skip is not noted"
  awk -v a="$t0" -v b="$t1" -v m="$MAX_S" 'BEGIN { exit !(b - a < m) }' ||
    fail "$bad: resume took $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s"
  echo "    $bad: resumed from step 8 in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
}

note "--resume auto on 2 ranks: each damaged newest file is passed over"
for bad in fifo directory huge_decl huge_shuffled_extra big_decl big_decl_shuffled lying_frame json_amplification deep_config \
  cursor_epoch world_size_7 truncated_half data_bit header_9mib; do
  try fallback "$bad"
done

prune_case() {
  rm -rf pr && mkdir -p pr/checkpoints
  cp "$good" pr/checkpoints/
  mkdir pr/checkpoints/step-00000001.safetensors.zst
  mkfifo pr/checkpoints/step-00000002.safetensors.zst
  run_np 2 train cfg.yaml --set run.dir=pr --set train.epochs=2 --set checkpoint.keep=1 --resume auto
  expect_ok
  [ -f pr/checkpoints/step-00000016.safetensors.zst ] || fail "no step-16 checkpoint"
  [ ! -e pr/checkpoints/step-00000008.safetensors.zst ] || fail "step 8 was not pruned"
  [ -d pr/checkpoints/step-00000001.safetensors.zst ] || fail "the directory was touched"
}
note "pruning passes over a directory and a FIFO named like checkpoints"
try prune_case
if [ "${MS_HOSTILE_KEEP_GOING:-0}" = 1 ]; then
  note "$failed of $runs hostile runs failed"
  exit 0
fi
note "$runs hostile runs passed"

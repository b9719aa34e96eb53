#!/usr/bin/env bash
# Hostile data files (issue 16, the data/ half): deflate bombs, declared
# sizes the file cannot hold, links to FIFOs and missing files, special
# files, damaged .npy/idx/CSV inputs. tests/hostile/make_data_cases.py
# writes the files here and lists the cases; each runs through `midscale
# data-info`, `midscale check`, `mpiexec -n 2 midscale train`, `midscale
# prepare`, or (issue 19) `mpiexec -n 2 midscale predict` / `eval`, and must end with its exit code, exactly one "midscale: error:"
# line holding the expected text (none on success), within 10 s and (in a
# build without sanitizers) 200 MiB of peak memory, or the case's own bound
# (name@MB). A failed prepare must leave its output file byte-identical.
source "$(dirname "$0")/lib.sh"
need_h5py
[ -x /usr/bin/time ] || fail "needs GNU time (/usr/bin/time; apt-get install time, scripts/setup.sh does)"

WALL_LIMIT=10
RSS_LIMIT_MB=200
# The serial commands also run under a 2 GiB address-space limit, so that a
# reservation sized by a declaration (1024 CSV rows of 6M columns: 24 GB)
# fails even where the kernel overcommits and would never touch it.
VM_LIMIT_KB=$((2 << 20))
# Sanitizers (ASan shadow memory, slower code): exit codes and messages
# only, a looser wall-time bound.
if ldd "$MIDSCALE" 2>/dev/null | grep -q -e libasan -e libubsan; then
  RSS_LIMIT_MB=0
  VM_LIMIT_KB=unlimited
  WALL_LIMIT=60
fi

/usr/bin/python3 "$MS_SOURCE_DIR/tests/hostile/make_data_cases.py" >cases.tsv ||
  fail "make_data_cases.py failed"
"$MIDSCALE" prepare synthetic out.h5 --features 8 --classes 4 >/dev/null

cat >cfg.yaml <<YAML
run: {name: hostile, dir: run, seed: 5}
data: {path: good.h5, test_x: ""}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 4}
train: {epochs: 1, batch_size: 32, eval_batch_size: 64}
log: {every_steps: 100, progress: false}
YAML

# A checkpoint of cfg.yaml for predict and eval.
"$MPIEXEC" -n 2 "$MIDSCALE" train cfg.yaml --set data.path=good.h5 --set run.dir=model \
  >model.log 2>&1 || { cat model.log; fail "training the model for predict and eval failed"; }
MODEL_CKPT=$(ls model/checkpoints/step-*.safetensors.zst | tail -n 1)

# run_case NAME CMD RC TEXT ARGS...
FAILED=0
N_CASES=0
run_case() {
  local name=$1 cmd=$2 want_rc=$3 text=$4
  shift 4
  local limit=$RSS_LIMIT_MB
  if [[ $name == *@* ]]; then
    [ "$limit" -eq 0 ] || limit=${name##*@}
    name=${name%@*}
  fi
  local -a argv
  case $cmd in
    info) argv=("$MIDSCALE" data-info "$1") ;;
    check) argv=("$MIDSCALE" check cfg.yaml --set "data.path=$1" "${@:2}") ;;
    train) argv=("$MPIEXEC" -n 2 "$MIDSCALE" train cfg.yaml --set "data.path=$1" "${@:2}") ;;
    prepare) argv=("$MIDSCALE" "$@") ;;
    predict) argv=("$MPIEXEC" -n 2 "$MIDSCALE" predict cfg.yaml "$MODEL_CKPT" "$1:/train/images"
                   pred.h5 --force) ;;
    eval) argv=("$MPIEXEC" -n 2 "$MIDSCALE" eval cfg.yaml "$MODEL_CKPT" --split "$1:/train/images") ;;
    *) fail "unknown command '$cmd' in cases.tsv" ;;
  esac
  local before="" after=""
  [ "$cmd" != prepare ] || before=$(md5sum out.h5)
  local log="$name.$cmd"
  N_CASES=$((N_CASES + 1))
  rm -rf run
  local t0 t1 rc
  t0=$(date +%s%N)
  set +e
  local vm=$VM_LIMIT_KB
  case $cmd in train | predict | eval) vm=unlimited ;; esac # Open MPI maps large shared segments
  (
    ulimit -v "$vm"
    exec /usr/bin/time -v -o "$log.time" timeout -k 2 "$WALL_LIMIT" "${argv[@]}"
  ) </dev/null >"$log.out" 2>"$log.err"
  rc=$?
  set -e
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000))
  local rss_kb
  rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log.time")
  local errs
  errs=$(grep -c '^midscale: error:' "$log.err" || true)
  local why=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    why="timed out after ${WALL_LIMIT} s (a hang?)"
  elif [ "$rc" -ne "$want_rc" ]; then
    why="exit $rc, expected $want_rc"
  elif [ "$text" = "-" ] && [ "$errs" -ne 0 ]; then
    why="an error line on success"
  elif [ "$text" != "-" ] && [ "$errs" -ne 1 ]; then
    why="$errs error lines, expected 1"
  elif [ "$text" != "-" ] && ! grep -F -q -- "$text" "$log.err"; then
    why="the message lacks: $text"
  elif [ "$ms" -gt $((WALL_LIMIT * 1000)) ]; then
    why="took $ms ms"
  elif [ "$limit" -gt 0 ] && [ "${rss_kb:-0}" -gt $((limit * 1024)) ]; then
    why="peak RSS $((rss_kb / 1024)) MiB over $limit MiB"
  fi
  if [ -z "$why" ] && [ "$cmd" = prepare ] && [ "$want_rc" -ne 0 ]; then
    after=$(md5sum out.h5)
    [ "$before" = "$after" ] || why="the failed prepare changed out.h5"
  fi
  if [ -n "$why" ]; then
    FAILED=$((FAILED + 1))
    echo "FAIL $name ($cmd): $why"
    sed 's/^/    /' "$log.err" | head -n 5
  else
    printf 'ok   %-22s %-7s exit %d %5d ms %4d MiB  %s\n' "$name" "$cmd" "$rc" "$ms" \
      "$((${rss_kb:-0} / 1024))" "$(grep -m1 '^midscale: error:' "$log.err" | cut -c1-110)"
  fi
}

while IFS=$'\t' read -r -a f; do
  run_case "${f[@]}"
done <cases.tsv

[ "$N_CASES" -ge 30 ] || fail "only $N_CASES cases ran"
[ "$FAILED" -eq 0 ] || fail "$FAILED of $N_CASES hostile data cases failed"
note "$N_CASES hostile data cases: exit code, one message, < $WALL_LIMIT s, < $RSS_LIMIT_MB MiB"

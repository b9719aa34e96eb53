#!/usr/bin/env bash
# comm.shared_params across emulated hosts (tests/cluster/cluster.sh; issue
# 21 on the hierarchical path): with several ranks a node, the parameters
# and optimizer state are once per node and each local rank updates its
# slice after the slice's sum across nodes. Asserts, for 2 hosts x 2 ranks
# (shared) and 3 hosts x 1 rank (nothing to share: a copy per node is a
# copy per rank, and the banner says so), with SGD and Adam, clipping every
# step: the banner's params line and sync method; sharing on and off end
# with bitwise-identical parameters and optimizer state (off is today's
# hierarchical path, untouched); with the comm thread's buckets too (2
# hosts); a run stopped at step 12 with sharing on resumes on 1 host x 2
# ranks and on 2 hosts x 2 bitwise equal to the same with sharing off; and
# `midscale check --world 4 --nodes 2` prints the per-node shared memory
# line. Needs root and ip netns, else SKIPPED.
source "$(dirname "$0")/cluster.sh"
cluster_need
source "$(dirname "$0")/../e2e/lib.sh"
cluster_up 3

synth data.h5 --train 1536 --test 256 --features 784
MLP=$MS_SOURCE_DIR/configs/fashion_mnist_mlp.yaml
STEPS=30
# 96 divides by 2, 3 and 4 ranks. optim.clip_norm 0.05 clips every step of
# this model (the e2e shared_params test checks that with this value).
common=(--set data.path="$WORK/data.h5" --set data.scale=1 --set train.batch_size=96
  --set schedule.warmup_steps=5 --set log.every_steps=10 --set log.progress=false
  --set run.threads=1 --set comm.timeout_s=60 --set optim.clip_norm=0.05
  --set train.max_steps=$STEPS)

cl_ok() {
  [ "$RC" -eq 0 ] || { tail -n 30 "$LAST_OUT" "$LAST_ERR"; fail "exit $RC, expected 0 ($*)"; }
}

# expect_params WANT: the banner's params line matches WANT (ERE).
expect_params() {
  grep -Eq "$1" "$LAST_OUT" || { grep '^params' "$LAST_OUT"; fail "params line not /$1/ ($LAST_OUT)"; }
}

# final NAME: NAME's last checkpoint with the optimizer state, as NAME.safetensors.
final() {
  "$MIDSCALE" export "$1/checkpoints/step-$(printf %08d $STEPS).safetensors.zst" \
    "$1.safetensors" --with-optimizer >/dev/null
}

same() {
  final "$1"
  final "$2"
  "$PYTHON" "$CHECKER" --compare "$1.safetensors" "$2.safetensors" >/dev/null ||
    fail "$1 and $2 differ"
}

SHARED_HIER='^params: shared: .*each of a node.s 2 ranks updates its 1/2 of them after its slice.s sum across nodes'
ONE_PER_NODE='^params: off \(one rank per node: '

for opt in sgd adam; do
  case $opt in
    sgd) set=(--set optim.name=sgd --set optim.lr=0.01) ;;
    adam) set=(--set optim.name=adam --set optim.lr=0.001) ;;
  esac
  for layout in 2x2 3x1; do
    want=$SHARED_HIER
    [ "$layout" = 2x2 ] || want=$ONE_PER_NODE
    for shared in true false; do
      note "$opt, $layout: comm.shared_params $shared"
      cl_mpirun "$layout" "$MIDSCALE" train "$MLP" "${common[@]}" "${set[@]}" \
        --set run.dir="$opt$layout$shared" --set comm.shared_params=$shared
      cl_ok "$opt $layout shared $shared"
      grep -Eq '^comm: .*hierarchical' "$LAST_OUT" || { grep '^comm:' "$LAST_OUT"; fail "not hierarchical"; }
      if [ "$shared" = true ]; then expect_params "$want"; else
        expect_params '^params: off \(comm.shared_params false\)'; fi
      [ "$layout:$shared" != 2x2:true ] || note "$(grep '^params' "$LAST_OUT")"
      [ "$layout:$shared" != 3x1:true ] || note "$(grep '^params' "$LAST_OUT")"
    done
    same "$opt${layout}true" "$opt${layout}false"
    note "$opt, $layout: sharing on and off bitwise identical"
  done
done

note "2x2, Adam, the comm thread's buckets (bucket 0.25 MB) with sharing on and off"
for shared in true false; do
  cl_mpirun 2x2 "$MIDSCALE" train "$MLP" "${common[@]}" --set optim.name=adam --set optim.lr=0.001 \
    --set comm.bucket_mb=0.25 --set comm.first_bucket_mb=0.1 --set run.dir="buckets$shared" \
    --set comm.shared_params=$shared
  cl_ok "buckets shared $shared"
  [ "$shared" = false ] || expect_params "$SHARED_HIER"
  grep -q '^comm: .*overlap: the inter-node ring in a comm thread' "$LAST_OUT" ||
    { grep '^comm:' "$LAST_OUT"; fail "the comm thread did not run the buckets"; }
done
same bucketstrue bucketsfalse
same bucketstrue adam2x2true
note "buckets: sharing on and off bitwise identical, and equal to the whole-arena run"

note "resume across layouts with sharing on: 2 hosts x 2 stop at step 12, go on on 1x2 and on 2x2"
for shared in true false; do
  for to in 1x2 2x2; do
    name="res$to$shared"
    cl_mpirun 2x2 "$MIDSCALE" train "$MLP" "${common[@]}" --set optim.name=adam --set optim.lr=0.001 \
      --set run.dir="$name" --set comm.shared_params=$shared --stop-at 12
    cl_ok "$name stop at 12"
    cl_mpirun "$to" "$MIDSCALE" train "$MLP" "${common[@]}" --set optim.name=adam --set optim.lr=0.001 \
      --set run.dir="$name" --set comm.shared_params=$shared --resume auto
    cl_ok "$name resume"
    grep -q 'at step 12 (' "$LAST_OUT" || { cat "$LAST_OUT"; fail "$name did not resume at step 12"; }
    [ "$shared" = false ] || expect_params '^params: shared: '
  done
done
same res1x2true res1x2false
same res2x2true res2x2false
# Resuming on the same layout continues the same run: the uninterrupted one's bits.
same res2x2true adam2x2true
note "resume 2x2 -> 1x2 and 2x2 -> 2x2 at step 12: sharing on and off bitwise identical"

note "midscale check --world 4 --nodes 2: the memory line per node with sharing"
"$MIDSCALE" check "$MLP" "${common[@]}" --set optim.name=adam --world 4 --nodes 2 >check.out 2>&1 ||
  { cat check.out; fail "check failed"; }
grep -Eq '^  memory: parameters and optimizer state shared \(.* once per node\): .* per node of 2 ranks; .*; 2 nodes: .* in all \(without .*\)$' check.out ||
  { grep memory check.out; fail "check's memory line is not the shared one across 2 nodes"; }
"$MIDSCALE" check "$MLP" "${common[@]}" --set optim.name=adam --world 3 --nodes 3 >check1.out 2>&1 ||
  { cat check1.out; fail "check failed"; }
grep -Eq '^  memory: a copy per rank: .* per node of 1 rank; .*; 3 nodes: .* in all \(with .*\)$' check1.out ||
  { grep memory check1.out; fail "check's memory line with one rank per node"; }
[ -z "$(cl_leftovers)" ] || { cl_leftovers; fail "processes left in the hosts"; }
echo "cluster_shared: ok"

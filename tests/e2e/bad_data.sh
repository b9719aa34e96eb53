#!/usr/bin/env bash
# A corpus of bad data files, each trained on under mpiexec -n 2: every rank
# must exit 3, stderr must hold exactly one "midscale: error:" line that
# names the file (and the dataset and sample where there is one), and
# nothing may hang (each case runs under timeout). The files are written
# here with h5py, and with `midscale prepare` + truncate.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
need_h5py

"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(1)
N, F = 256, 8
x = rng.normal(0, 1, (N, F)).astype(np.float32)
y = rng.integers(0, 4, N)

def write(name, x=x, y=y, tx=None, ty=None, **kw):
    with h5py.File(name, "w") as f:
        f.create_dataset("train/images", data=x, **kw)
        f.create_dataset("train/labels", data=y)
        f.create_dataset("test/images", data=x[:64] if tx is None else tx)
        f.create_dataset("test/labels", data=y[:64] if ty is None else ty)

write("good.h5")
write("mismatch.h5", y=y[:250])
write("label_rank.h5", y=np.stack([y, y, y], axis=1))
with h5py.File("scalar.h5", "w") as f:
    f["train/images"] = np.float32(3)
    f["train/labels"] = y
write("string.h5", x=np.array([b"sample%d" % i for i in range(N)]))
write("compound.h5", x=np.zeros(N, dtype=[("a", "<i4"), ("b", "<f4")]))
bad = y.copy(); bad[123] = 7; bad[200] = 9
write("range.h5", y=bad)
neg = y.copy(); neg[45] = -1
write("negative.h5", y=neg)
write("float_labels.h5", y=y.astype(np.float64) + 0.5)
write("empty.h5", x=np.zeros((0, F), np.float32), y=np.zeros(0, np.int64))
write("small.h5", x=x[:20], y=y[:20])
write("test_features.h5", tx=np.zeros((64, F + 1), np.float32))
write("lzf.h5", compression="lzf", chunks=(64, F))
nan = x.copy(); nan[77, 3] = np.nan
write("nan.h5", x=nan)
# A damaged chunk: the gzip stream of chunk 1 of the inputs overwritten.
write("corrupt.h5", compression="gzip", chunks=(64, F))
with h5py.File("corrupt.h5", "r") as f:
    info = f["train/images"].id.get_chunk_info(1)
with open("corrupt.h5", "r+b") as f:
    f.seek(info.byte_offset + 2)
    f.write(b"\xff" * (info.size - 4))
PY
cp good.h5 truncated.h5
truncate -s 3000 truncated.h5
echo "just some text, not HDF5" >not_hdf5.h5
mkdir a_directory.h5

cat >cfg.yaml <<YAML
run: {name: bad, dir: run, seed: 5}
data: {path: good.h5}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 4}
train: {epochs: 1, batch_size: 32, eval_batch_size: 64}
log: {every_steps: 100, progress: false}
YAML

# bad CASE TEXT [--set ...]: trains on 2 ranks; every rank exits 3, one
# error line, which holds TEXT. Open MPI is told not to kill the other ranks
# when the first one exits non-zero, so that each rank reports its own code.
CASES=0
bad() {
  local name=$1 text=$2
  shift 2
  CASES=$((CASES + 1))
  rm -f rc.*
  set +e
  OMPI_MCA_orte_abort_on_non_zero_status=0 timeout --kill-after=10 60 \
    "$MPIEXEC" -n 2 bash -c '"$@"; rc=$?; echo $rc >"rc.$OMPI_COMM_WORLD_RANK"; exit $rc' \
    rank "$MIDSCALE" train cfg.yaml "$@" >"out.$name.log" 2>"err.$name.log"
  local rc=$?
  set -e
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || { cat "err.$name.log"; fail "$name: timed out (a hang)"; }
  for r in 0 1; do
    [ -f "rc.$r" ] || { cat "out.$name.log" "err.$name.log"; fail "$name: rank $r left no exit code"; }
    [ "$(cat "rc.$r")" -eq 3 ] || { cat "err.$name.log"; fail "$name: rank $r exited $(cat "rc.$r"), expected 3"; }
  done
  local n
  n=$(grep -c '^midscale: error:' "err.$name.log" || true)
  [ "$n" -eq 1 ] || { cat "err.$name.log"; fail "$name: $n error lines, expected 1"; }
  grep -F -q -- "$text" "err.$name.log" || { cat "err.$name.log"; fail "$name: message lacks '$text'"; }
  note "$name: $(grep '^midscale: error:' "err.$name.log")"
}

bad missing_dataset "dataset '/train/imagez' not found in 'good.h5'; datasets in the file: /test/images, /test/labels, /train/images, /train/labels" \
  --set data.train_x=/train/imagez
bad length_mismatch "'/train/images' has 256 samples but '/train/labels' has 250 in 'mismatch.h5'" \
  --set data.path=mismatch.h5
bad label_rank "labels '/train/labels' in 'label_rank.h5' have shape (256, 3); integer labels are class indices" \
  --set data.path=label_rank.h5
bad scalar_inputs "dataset '/train/images' in 'scalar.h5' is a scalar (shape ()); inputs need a sample axis" \
  --set data.path=scalar.h5 --set data.test_x=
bad string_inputs "dataset '/train/images' in 'string.h5' has type string; supported input types are" \
  --set data.path=string.h5
bad compound_inputs "dataset '/train/images' in 'compound.h5' has type compound" \
  --set data.path=compound.h5
bad labels_out_of_range "label 7 of sample 123 in '/train/labels' of 'range.h5' is outside [0, 4)" \
  --set data.path=range.h5
bad negative_labels "label -1 of sample 45 in '/train/labels' of 'negative.h5' is negative" \
  --set data.path=negative.h5
bad float_labels "labels '/train/labels' in 'float_labels.h5' are float64 regression targets, but the model is a classifier" \
  --set data.path=float_labels.h5
bad empty "'/train/images' in 'empty.h5' has no samples" \
  --set data.path=empty.h5
bad fewer_than_a_batch "'/train/images' in 'small.h5' has 20 samples, fewer than one global batch (train.batch_size 32)" \
  --set data.path=small.h5
bad truncated "cannot open 'truncated.h5' as HDF5 (truncated or damaged?): truncated file" \
  --set data.path=truncated.h5
bad not_hdf5 "'not_hdf5.h5' is not an HDF5 file" \
  --set data.path=not_hdf5.h5
bad directory "'a_directory.h5' is a directory, not an HDF5 file" \
  --set data.path=a_directory.h5
bad test_features "'test_features.h5'" --set data.path=test_features.h5
grep -q "test samples (/test/images) have 9 features but training samples (/train/images) have 8" err.test_features.log \
  || fail "test_features: message"
bad unknown_filter "dataset '/train/images' in 'lzf.h5' is compressed with HDF5 filter 32000 (lzf), which this HDF5 cannot decode" \
  --set data.path=lzf.h5
bad corrupt_chunk "cannot read samples 64..127 of '/train/images' in 'corrupt.h5' (truncated or damaged?): its chunk does not inflate" \
  --set data.path=corrupt.h5
bad nan_inputs "sample 77 of '/train/images' in 'nan.h5' has a non-finite value (nan) at element 3 (data.check_finite)" \
  --set data.path=nan.h5 --set data.check_finite=true
note "$CASES bad data files, each: exit 3 on both ranks, one message"

# `midscale check` (serial) finds the same problems before any job starts.
for c in "range.h5|outside [0, 4)" "float_labels.h5|regression targets" "small.h5|fewer than one global batch" \
         "nan.h5|(nan) at element 3"; do
  f=${c%%|*}
  set +e
  "$MIDSCALE" check cfg.yaml --set data.path="$f" --set data.check_finite=true >check.out 2>check.err
  rc=$?
  set -e
  [ $rc -eq 3 ] && grep -q -F -- "${c#*|}" check.err || { cat check.err; fail "check on $f: exit $rc"; }
done

# Without data.check_finite a NaN input reaches the loss (ReLU keeps NaN, as
# PyTorch's does) and the step that reads it stops the run: exit 3 on every
# rank, naming the step, before the parameters are updated.
run_np 2 train cfg.yaml --set data.path=nan.h5 --set train.epochs=1
expect_error 3 "the training loss is not finite (nan) at step"

# The good file passes, with the finite check on.
run_np 2 train cfg.yaml --set data.check_finite=true
expect_ok
echo "bad_data: ok"

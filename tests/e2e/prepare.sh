#!/usr/bin/env bash
# `midscale prepare csv` and `prepare npy` on files written by Python
# (numpy): h5py reads back exactly what went in, the layout is chunked with
# shuffle + gzip, and midscale trains on the result under mpiexec -n 2.
source "$(dirname "$0")/lib.sh"
export RUN_TIMEOUT=120
PY=/usr/bin/python3
need_h5py

"$PY" - <<'PY'
import numpy as np
rng = np.random.default_rng(5)
# CSV: 3 classes around separated centres, 4 features, header with spaces.
n = 300
y = rng.integers(0, 3, n)
x = rng.normal(0, 0.3, (n, 4)) + y[:, None] * 1.5
with open("iris_like.csv", "w") as f:
    f.write("sepal_len, sepal_wid,species, petal_len,petal_wid\n")
    for i in range(n):
        f.write(f"{x[i,0]!r},{x[i,1]!r},{y[i]},{x[i,2]!r},{x[i,3]!r}\n")
np.save("csv_x.npy", x.astype(np.float32))
np.save("csv_y.npy", y)
# CSV with float targets.
with open("reg.csv", "w") as f:
    f.write("a,b,target\n")
    for i in range(64):
        f.write(f"{i},{i*2},{i*0.5}\n")
# npy: float16 images (N, 1, 4, 4), int64 labels; and a Fortran-order copy.
xi = (rng.normal(0, 1, (512, 1, 4, 4)) + rng.integers(0, 4, (512, 1, 1, 1))).astype(np.float16)
yi = (xi.astype(np.float32).mean(axis=(1, 2, 3)) > 1.5).astype(np.int64)
np.save("img_x.npy", xi)
np.save("img_y.npy", yi)
np.save("img_xf.npy", np.asfortranarray(xi))
PY

note "prepare csv with a test split"
"$MIDSCALE" prepare csv iris_like.csv csv.h5 --label species --test-fraction 0.2 --seed 9 >/dev/null
"$PY" - <<'PY' || fail "csv.h5 does not hold the CSV"
import h5py, numpy as np
x = np.load("csv_x.npy"); y = np.load("csv_y.npy")
with h5py.File("csv.h5") as f:
    tr, te = f["train/images"], f["test/images"]
    assert tr.dtype == np.float32 and tr.shape == (240, 4) and te.shape == (60, 4), (tr.shape, te.shape)
    assert tr.compression == "gzip" and tr.compression_opts == 1 and tr.chunks[1] == 4
    assert f["train/labels"].dtype == np.int64
    allx = np.concatenate([tr[()], te[()]]); ally = np.concatenate([f["train/labels"][()], f["test/labels"][()]])
    order = np.lexsort(allx.T[::-1]); ref = np.lexsort(x.T[::-1])
    assert np.array_equal(allx[order], x[ref]) and np.array_equal(ally[order], y[ref])
PY
cat >csv.yaml <<YAML
run: {name: csv, dir: run_csv, seed: 3}
data: {path: csv.h5, mean: [1.5], std: [1.2]}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 3}
optim: {lr: 0.1, momentum: 0.9}
train: {epochs: 3, batch_size: 16, eval_batch_size: 60}
log: {every_steps: 10, progress: false}
YAML
run_np 2 train csv.yaml
expect_ok

note "prepare npy: float16 images kept as float16, Fortran order converted"
"$MIDSCALE" prepare npy --x img_x.npy --y img_y.npy img.h5 >/dev/null
"$MIDSCALE" prepare npy --x img_x.npy --y img_y.npy --group test img.h5 >/dev/null
"$MIDSCALE" prepare npy --x img_xf.npy --y img_y.npy --group fortran img.h5 >/dev/null
"$PY" - <<'PY' || fail "img.h5 does not hold the arrays"
import h5py, numpy as np
x = np.load("img_x.npy"); y = np.load("img_y.npy")
with h5py.File("img.h5") as f:
    for g in ("train", "test", "fortran"):
        d = f[g + "/images"]
        assert d.dtype == np.float16 and d.shape == x.shape and d.chunks[1:] == x.shape[1:], g
        assert np.array_equal(d[()].view(np.uint16), x.view(np.uint16)), g
        assert np.array_equal(f[g + "/labels"][()], y), g
PY
smoke_config img.yaml img.h5 run_img
run_np 2 train img.yaml --set 'model.layers[2].units=2' --set train.epochs=1
expect_ok

note "float targets for a classifier: exit 3 on every rank"
"$MIDSCALE" prepare csv reg.csv reg.h5 --label target --test-fraction 0.25 >/dev/null
run_np 2 train img.yaml --set data.path=reg.h5 --set train.batch_size=16
expect_error 3 "are float32 regression targets, but the model is a classifier"

note "a bad CSV: exit 3, naming the line"
printf 'a,label\n1,0\n2,x\n' >bad.csv
set +e
"$MIDSCALE" prepare csv bad.csv bad.h5 --label label 2>err.log
rc=$?
set -e
[ $rc -eq 3 ] || fail "prepare csv on a bad file: exit $rc, expected 3"
grep -q "^midscale: error: bad.csv:3: column 'label': 'x' is not a number" err.log || { cat err.log; fail "message"; }
[ ! -e bad.h5 ] || fail "a failed conversion left bad.h5 behind"
echo "prepare: ok"

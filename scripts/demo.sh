#!/usr/bin/env bash
# The README's first command: install what is missing, build, turn
# Fashion-MNIST into HDF5 and train the MLP 784-256-256-10 on 2 MPI ranks.
#   scripts/demo.sh [extra 'midscale train' options, e.g. --set train.epochs=3]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
build
cd "$ROOT"
mkdir -p data-cache
CONFIG=configs/fashion_mnist_mlp.yaml
DATA=data-cache/fashion_mnist.h5
FMNIST=/usr/share/datasets/fashion-mnist
extra=()
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  [ -f "$DATA" ] || "$BUILD_DIR/midscale" prepare fashion-mnist "$FMNIST" "$DATA"
else
  echo "midscale: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist);"
  echo "midscale: using a SYNTHETIC dataset of the same shape instead: accuracy figures"
  echo "midscale: below are not Fashion-MNIST results."
  DATA=data-cache/synthetic_784.h5
  [ -f "$DATA" ] || "$BUILD_DIR/midscale" prepare synthetic "$DATA" --train 60000 --test 10000 \
    --features 784 --classes 10 --u8
  extra=(--set data.path="$DATA" --set data.train_x=/train/images)
fi
echo "+ mpirun -np 2 $BUILD_DIR/midscale train $CONFIG ${extra[*]} $*"
mpirun -np 2 "$BUILD_DIR/midscale" train "$CONFIG" "${extra[@]}" "$@"

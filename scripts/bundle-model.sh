#!/usr/bin/env bash
# Reproduce the bundled MNIST model: train on the full MNIST training set on CPU (2 cores,
# ~40 minutes of training time), export the best checkpoint by quick FID, evaluate it with
# gan-eval (10,000 samples) and write the README's pictures.
#   bash scripts/bundle-model.sh            # uses .venv/bin; MNIST from $GAN_DATA_DIR or ../shared/data/mnist
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUN=${RUN:-runs/mnist-default}
"$BIN/gan-train" --data mnist --steps 40000 --batch-size 64 --time-budget 2400 \
    --eval-every 2000 --checkpoint-every 2000 --sample-every 2000 --threads 2 --seed 0 \
    --out "$RUN" --export "$RUN-export" --no-progress
rm -rf checkpoints/mnist
cp -r "$RUN-export" checkpoints/mnist
"$BIN/gan-eval" --checkpoint checkpoints/mnist --num 10000 --seed 0 --write --json docs/images/mnist-eval.json
"$BIN/gan-sample" --checkpoint checkpoints/mnist --num 100 --seed 0 --out docs/images/mnist-samples.png
cp "$RUN/loss_curve.png" docs/images/mnist-loss-curve.png

#!/usr/bin/env bash
# Reproduce the bundled MNIST model: a class-conditional GAN with the recipe bench/recipe_search.py
# picked (Adam 5e-4/5e-4, betas (0.5, 0.99); the defaults), trained on the full MNIST training set
# on CPU (2 cores, 70 minutes of training time), the best checkpoint by quick FID exported,
# given an encoder for projection, evaluated with gan-eval (10,000 samples) and the README's
# pictures written.
#   bash scripts/bundle-model.sh            # uses .venv/bin; MNIST from $GAN_DATA_DIR or ../shared/data/mnist
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUN=${RUN:-runs/mnist-cond}
"$BIN/gan-train" --data mnist --conditional --lr-g 5e-4 --lr-d 5e-4 --beta2 0.99 \
    --steps 200000 --time-budget 4200 --eval-every 2000 --checkpoint-every 2000 \
    --sample-every 2000 --threads 2 --seed 0 --out "$RUN" --export "$RUN-export" --no-progress
rm -rf checkpoints/mnist
cp -r "$RUN-export" checkpoints/mnist
"$BIN/gan-calibrate" --checkpoint checkpoints/mnist --quiet
# the encoder that starts POST /project (an optional third network; the model id stays)
"$BIN/gan-train-encoder" --checkpoint checkpoints/mnist --steps 3000 --threads 2 --quiet
"$BIN/gan-eval" --checkpoint checkpoints/mnist --num 10000 --seed 0 --write --json docs/images/mnist-eval.json
# 100 samples, ten of each digit (image seed s has class s mod 10: one column per digit)
"$BIN/gan-sample" --checkpoint checkpoints/mnist --num 100 --seed 0 --out docs/images/mnist-samples.png
cp "$RUN/loss_curve.png" docs/images/mnist-loss-curve.png

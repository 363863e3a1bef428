#!/usr/bin/env bash
# denoiserec side of the SASRec / ml-100k accuracy comparison with RecBole (same protocol,
# same hyper-parameters, same 10-epoch budget and seeds as benchmarks/recbole_peer.py runs).
# Usage: DENOISEREC_DATA=../shared/data bash benchmarks/run_sasrec_ml100k.sh [EPOCHS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
THREADS=${2:-1}
for SEED in 2020 2021 2022; do
  .venv/bin/denoiserec train --model sasrec --dataset ml-100k --protocol recbole \
    --set epochs="$EPOCHS" --set seed="$SEED" --set train.threads="$THREADS" \
    --set train.progress=false --output "benchmarks/out/ours_prefix_seed${SEED}"
done

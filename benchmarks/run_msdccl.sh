#!/usr/bin/env bash
# MSDCCL benchmark (issue 4, RECORD.md section 3): MSDCCL vs its BERT4Rec backbone vs SASRec at
# equal size (H = 64, L = 50, MSDCCL's encoders' FFN 256), recbole protocol, 8-epoch budget,
# 3 seeds, clean and 20 % inserted noise; then the ablations (seed 2020, clean).
# Each worker is one process on one thread; cells are locked, so WORKERS processes share the
# comparison and a rerun reuses every finished cell (~5 min per MSDCCL epoch per core here).
# Usage: DENOISEREC_DATA=../shared/data bash benchmarks/run_msdccl.sh [DATASET] [WORKERS]
# Environment: EPOCHS (default 8; another budget writes to OUT-e<EPOCHS>), CLEAN_ONLY=1 (the clean
# cells only: no ablations, no noisy cells).
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-ml-100k}
WORKERS=${2:-2}
EPOCHS=${EPOCHS:-8}
CLEAN_ONLY=${CLEAN_ONLY:-0}
OUT=benchmarks/out/msdccl-$DATASET
[ "$EPOCHS" = 8 ] || OUT+="-e$EPOCHS"
# MSDCCL's model settings for the dataset (spec §5.3: attention and autoencoder dropout, the short
# window m, the contrastive weight lambda), scoped to its cells; ml-100k's are the defaults.
case "$DATASET" in
  beauty) TUNED=(att_dropout=0.4 ae_dropout=0.5 sequence_last_m=2 loss_lambda=0.2) ;;
  ml-1m) TUNED=(att_dropout=0.3 ae_dropout=0.2 sequence_last_m=6 loss_lambda=0.6) ;;
  *) TUNED=() ;;
esac
COMMON=(--models msdccl,bert4rec,sasrec --dataset "$DATASET" --protocol recbole --noise-kind insert
        --seeds 3 --set "epochs=$EPOCHS" --set msdccl:model.backbone.hidden_size=64 --set msdccl:model.backbone.inner_size=64 --set model.inner_size=256
        --set train.threads=1 --set train.progress=false --output "$OUT")
for setting in "${TUNED[@]}"; do COMMON+=(--set "msdccl:model.$setting"); done
ABLATIONS=("no-hard model.use_hard_branch=false" "no-contrastive model.use_contrastive=false"
           "no-curriculum model.curriculum=none")

ablation() {  # name override: one clean seed-2020 MSDCCL run with one part switched off
  .venv/bin/denoiserec train --config "$OUT/cells/msdccl-noise0-seed2020/config.yaml" \
    --set "$2" --output "$OUT-ablation/$1"
}

worker() {  # clean cells first, then this worker's share of the ablations, then the noisy cells
  local index=$1
  .venv/bin/denoiserec compare --noise 0 "${COMMON[@]}"
  [ "$CLEAN_ONLY" = 1 ] && return
  for ((a = index; a < ${#ABLATIONS[@]}; a += WORKERS)); do
    # shellcheck disable=SC2086
    [ -f "$OUT-ablation/${ABLATIONS[a]%% *}/test_ranks.csv" ] || ablation ${ABLATIONS[a]}
  done
  .venv/bin/denoiserec compare --noise 0,0.2 "${COMMON[@]}"
}

for ((w = 0; w < WORKERS; w++)); do
  worker "$w" > "$OUT-worker$w.log" 2>&1 &
  sleep 5
done
wait
[ "$CLEAN_ONLY" = 1 ] || .venv/bin/python benchmarks/msdccl_ablations.py --output "$OUT"

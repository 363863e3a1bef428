#!/usr/bin/env bash
# Converged comparison: every model trained to RecBole's early stop (patience 10 on valid
# NDCG@10, 200 epochs at most), 3 seeds, best checkpoint tested, paired tests against the first
# model; resumable (run it again: finished cells are reused when their inputs match, an
# interrupted one resumes). Several worker processes share the cells (one thread each on a CPU).
#
# usage: DENOISEREC_DATA=../shared/data bash benchmarks/converged.sh DATASET [options]
#   DATASET          ml-100k (recbole protocol) | beauty (fmlp) | ml-1m (recbole, max_len 200)
#                    | retailrocket (target protocol: buy = behaviours 0,3, the shipped
#                    test users, batch 256, as configs/end4rec-retailrocket.yaml; use
#                    --mode prefix for end4rec and fmlp, which refuse window training)
#   --mode M         fast (default: all-position windows, train.instances=window) | prefix
#   --models LIST    default sasrec,bert4rec,gru4rec (first = reference of the paired tests)
#   --seeds N        default 3
#   --workers N      parallel compare processes (default 2 on a CPU, 4 on a GPU)
#   --device D       cpu (default) | cuda
#   --time-limit S   stop every worker after S seconds (cells resume on the next call)
#   --set K=V        extra overrides, repeatable (MODEL:K=V for one model's cells)
#   --tag NAME       suffix of the output folder (a variant, e.g. MSDCCL's alpha = 1 control)
# Output: benchmarks/out/converged-DATASET-MODE/{summary.md,summary.json,results.csv,cells/},
# curves.png (valid NDCG@10 per epoch of every cell, from the trainer's history), and each
# worker's log (one line per epoch) in converged-DATASET-MODE.workerN.log beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:?usage: converged.sh DATASET [options]}; shift
MODE=fast MODELS=sasrec,bert4rec,gru4rec SEEDS=3 WORKERS="" DEVICE=cpu LIMIT=0 EXTRA=() TAG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --time-limit) LIMIT=$2; shift 2 ;;
    --set) EXTRA+=(--set "$2"); shift 2 ;;
    --tag) TAG=-$2; shift 2 ;;
    *) echo "converged.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$WORKERS" ] || { [ "$DEVICE" = cuda ] && WORKERS=4 || WORKERS=2; }
case "$DATASET" in
  ml-100k) PROTOCOL=recbole; DATA=(); BATCH=8; STRIDE=25 ;;  # 8: RECORD.md §5.2
  beauty) PROTOCOL=fmlp; DATA=(); BATCH=256; STRIDE=25 ;;
  ml-1m) PROTOCOL=recbole; DATA=(--set max_len=200); BATCH=64; STRIDE=100 ;;
  retailrocket) PROTOCOL=target; BATCH=256; STRIDE=25
    DATA=(--set protocol.target_behaviour=0,3 --set protocol.shipped_split=true
          --set protocol.mask_history=false --set protocol.train_targets=target
          --set batch_size=$BATCH) ;;
  *) echo "converged.sh: unknown dataset $DATASET (ml-100k, beauty, ml-1m, retailrocket)" >&2
     exit 2 ;;
esac
# the fast mode's settings (benchmarks/RECORD.md §5): all-position windows overlapping by half
# (every target counted where it has at least max_len/2 items of context) with per-epoch
# offsets, selection on the mean of 3 evaluations, dropout 0.2 for SASRec (RecBole: 0.5)
case "$MODE" in
  fast) TRAIN=(--set train.instances=window --set train.window_offsets=true
               --set train.window_stride=$STRIDE
               --set train.selection_window=3 --set batch_size=$BATCH)
        if [[ ",$MODELS," == *,sasrec,* ]]; then
          TRAIN+=(--set sasrec:model.hidden_dropout=0.2 --set sasrec:model.attn_dropout=0.2)
        fi ;;
  prefix) TRAIN=() ;;
  *) echo "converged.sh: --mode is fast or prefix, not $MODE" >&2; exit 2 ;;
esac
OUT=benchmarks/out/converged-$DATASET-$MODE$TAG
ARGS=(--models "$MODELS" --dataset "$DATASET" --protocol "$PROTOCOL" --noise 0 --seeds "$SEEDS"
      --set epochs=200 --set train.patience=10 --set train.threads=1 --set train.progress=false
      --set train.device="$DEVICE" "${DATA[@]}" "${TRAIN[@]}" "${EXTRA[@]}" --output "$OUT")
run_limited() { if [ "$LIMIT" -gt 0 ]; then timeout "$LIMIT" "$@"; else "$@"; fi; }
for w in $(seq 1 "$WORKERS"); do
  run_limited .venv/bin/denoiserec compare "${ARGS[@]}" > "$OUT.worker$w.log" 2>&1 &
  sleep 2  # let each worker claim its first cell
done
wait || true
.venv/bin/denoiserec compare "${ARGS[@]}" --no-train
.venv/bin/python benchmarks/curves.py "$OUT" --output "$OUT/curves.png"

#!/usr/bin/env bash
# Tuning SASRec in the fast mode on ml-100k (issue 30): an Optuna study of 30 trials run by
# 2 workers (one thread each) on one SQLite study, then the best trial's settings and the
# default configuration (configs/sasrec-ml-100k-fast.yaml), 3 seeds each, valid and test.
#
# usage: DENOISEREC_DATA=../shared/data bash benchmarks/tune_sasrec.sh study|seeds|table
#   study   run the 2 workers (resumable: run it again after a kill; finished trials stay)
#   seeds   train default and best settings with seeds 2020-2022 (2 lanes; resumable)
#   table   print the valid / test NDCG@10 table of the seeds (mean +- sd, paired t interval)
# Output: benchmarks/out/tune-sasrec-ml-100k-fast/ (the study) and .../seeds/{default,best}-S
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/out/tune-sasrec-ml-100k-fast
BASE=(--config configs/sasrec-ml-100k-fast.yaml --set train.threads=1
      --set train.progress=false)
case "${1:?usage: tune_sasrec.sh study|seeds|table}" in
  study)
    mkdir -p "$OUT"
    for w in 0 1; do
      .venv/bin/denoiserec tune sasrec-fast "${BASE[@]}" --output "$OUT" --worker $w \
        >> "$OUT.worker$w.log" 2>&1 &
      sleep 5  # the first worker creates the study
    done
    wait ;;
  seeds)
    BEST=$(.venv/bin/python -c "import json,sys; p=json.load(open('$OUT/best.json'))['params']
print(' '.join(f'--set {k}={json.dumps(v)}' for k, v in p.items()))")
    lane() {  # $1: default|best
      local extra=(); [ "$1" = best ] && read -ra extra <<< "$BEST"
      for seed in 2020 2021 2022; do
        .venv/bin/denoiserec train "${BASE[@]}" "${extra[@]}" --set seed=$seed \
          --output "$OUT/seeds/$1-$seed"
      done
    }
    lane default > "$OUT.seeds-default.log" 2>&1 &
    lane best > "$OUT.seeds-best.log" 2>&1 &
    wait ;;
  table) .venv/bin/python benchmarks/tune_table.py "$OUT" ;;
  *) echo "tune_sasrec.sh: study, seeds or table" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Resume the long background computations at the start of a session, each from its own git
# worktree pinned to one commit (so that foreground work on main never changes them):
#   ../campaign  the denoising campaign (issue 26; RESULTS.md §1.2-1.3)
#   ../tune      the SASRec fast-mode tuning study (issue 30; RESULTS.md §8.2)
# Every run resumes from its last epoch; finished cells and trials are skipped.
# usage: DENOISEREC_DATA=../shared/data bash benchmarks/resume_background.sh [campaign|tune|all]
#        CAMPAIGN_WORKERS=2 (default 1 when both run, so that the two share the 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=$root/.venv/bin/python
what=${1:-all}
running() { pgrep -f "$1" > /dev/null; }
if [[ $what == campaign || $what == all ]] && [ -d ../campaign ]; then
  if running "campaign.py (run|work)"; then
    echo "campaign: already running"
  else
    workers=${CAMPAIGN_WORKERS:-$([ "$what" = all ] && echo 1 || echo 2)}
    (cd ../campaign && PYTHONPATH=$PWD/src nohup "$python" benchmarks/campaign.py run \
      --workers "$workers" > campaign.log 2>&1 &)
    echo "campaign: resumed with $workers worker(s) in ../campaign (log ../campaign/campaign.log)"
  fi
fi
if [[ $what == tune || $what == all ]] && [ -d ../tune ]; then
  if running "denoiserec tune"; then
    echo "tune: already running"
  else
    ln -sfn "$root/.venv" ../tune/.venv
    (cd ../tune && PYTHONPATH=$PWD/src nohup bash benchmarks/tune_sasrec.sh study \
      > tune.log 2>&1 &)
    echo "tune: study resumed in ../tune (logs ../tune/benchmarks/out/*.worker*.log)"
  fi
fi

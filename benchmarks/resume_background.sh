#!/usr/bin/env bash
# Resume the long background computations at the start of a session, each from its own git
# worktree pinned to one commit (so that foreground work on main never changes them):
#   ../campaign2 the denoising campaign (issue 26; RESULTS.md §1.2-1.3), pinned at b08b12f since
#                the ninth session; its output folder is a link to ../campaign's (pinned at
#                6ec7e38 before), so that the cells of both pins stay in one folder
#   ../tune      the SASRec fast-mode tuning study (issue 30; RESULTS.md §8.2)
# Every run resumes from its last epoch; finished cells and trials are skipped. The campaign's
# output gets code.json (the commit it was first pinned at) so that `denoiserec report` can
# name the commit of cells whose code is too old to record it; it is written once and never
# replaced, because cells trained after a re-pin record their own commit in metrics.json.
# usage: DENOISEREC_DATA=../shared/data bash benchmarks/resume_background.sh [campaign|tune|all]
#        CAMPAIGN_WORKERS=N (default 2; 1 while the tuning study still runs beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=$root/.venv/bin/python
what=${1:-all}
running() { pgrep -f "$1" > /dev/null; }
pin_record() {  # $1: a pinned checkout, $2: its output folder -> $2/code.json for the report
  mkdir -p "$2"
  [ -f "$2/code.json" ] && return 0  # the first pin's: the commit of the cells that lack one
  "$python" - "$1" "$2" <<'PY'
import json, os, subprocess, sys
checkout, folder = sys.argv[1:]
git = lambda *a: subprocess.run(["git", "-C", checkout, *a], capture_output=True, text=True,
                                check=True).stdout.strip()
record = {"commit": git("rev-parse", "HEAD"),
          "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
with open(os.path.join(folder, "code.json.tmp"), "w") as handle:
    json.dump(record, handle)
os.replace(os.path.join(folder, "code.json.tmp"), os.path.join(folder, "code.json"))
PY
}
campaign=../campaign2
if [[ $what == campaign || $what == all ]] && [ -d $campaign ]; then
  pin_record $campaign $campaign/benchmarks/out/campaign
  if running "campaign.py (run|work)"; then
    echo "campaign: already running"
  else
    tune_left=$([ "$what" = all ] && [ -d ../tune ] \
      && [ ! -f ../tune/benchmarks/out/tune-sasrec-ml-100k-fast/best.json ] && echo 1 || echo 0)
    workers=${CAMPAIGN_WORKERS:-$([ "$tune_left" = 1 ] && echo 1 || echo 2)}
    (cd $campaign && PYTHONPATH=$PWD/src nohup "$python" benchmarks/campaign.py run \
      --workers "$workers" > campaign.log 2>&1 &)
    echo "campaign: resumed with $workers worker(s) in $campaign (log $campaign/campaign.log)"
  fi
fi
if [[ $what == tune || $what == all ]] && [ -d ../tune ]; then
  if [ -f ../tune/benchmarks/out/tune-sasrec-ml-100k-fast/best.json ]; then
    echo "tune: the study is finished (RESULTS.md §8.2); nothing to resume"
  elif running "denoiserec tune"; then
    echo "tune: already running"
  else
    ln -sfn "$root/.venv" ../tune/.venv
    (cd ../tune && PYTHONPATH=$PWD/src nohup bash benchmarks/tune_sasrec.sh study \
      > tune.log 2>&1 &)
    echo "tune: study resumed in ../tune (logs ../tune/benchmarks/out/*.worker*.log)"
  fi
fi

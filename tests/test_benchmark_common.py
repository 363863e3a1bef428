"""``benchmarks/common.py``: the fast mode it hands the scripts is the converged suite's
(``benchmarks/converged.sh``, read here as text), and its timing loop times what it runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

from benchmarks.common import FAST, SASREC_DROPOUT, fast_mode, seconds_per_call

CONVERGED = Path(__file__).resolve().parents[1] / "benchmarks" / "converged.sh"


def test_fast_mode_equals_the_converged_suites():
    script = CONVERGED.read_text()
    for dataset, mode in FAST.items():
        line = re.search(rf"^\s*{re.escape(dataset)}\) .*?BATCH=(\d+); STRIDE=(\d+)", script,
                         re.M | re.S)
        assert line, dataset
        assert (int(line.group(1)), int(line.group(2))) == (mode.batch_size, mode.stride)
    fast = re.search(r"fast\) TRAIN=\((.*?)\)\n", script, re.S).group(1)
    flags = set(re.findall(r"--set (\S+)", fast))
    flags = {f.replace("$STRIDE", "25").replace("$BATCH", "8") for f in flags}
    assert flags == set(fast_mode("ml-100k")) - {"train.patience=10"}
    assert "--set train.patience=10" in script
    assert all(f"sasrec:{d}" in script for d in SASREC_DROPOUT)


def test_seconds_per_call_times_each_call_after_the_warmup():
    calls = []
    times = seconds_per_call(lambda: (calls.append(1), time.sleep(0.02)), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3
    assert all(0.02 <= t < 0.5 for t in times)


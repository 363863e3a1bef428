"""The table of ``tune_sasrec.sh seeds``: valid and test NDCG@10 of the default configuration
and of the best trial's settings, 3 seeds each: mean ± sd and the paired difference (best -
default, same seed) with its 95 % t interval.

usage: python benchmarks/tune_table.py benchmarks/out/tune-sasrec-ml-100k-fast
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/NAME.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from denoiserec.report.stats import mean_interval, sample_sd, seed_differences  # noqa: E402

SEEDS = (2020, 2021, 2022)


def values(study: Path, name: str, split: str) -> dict[int, float]:
    """seed -> NDCG@10 on ``split`` (valid at the selected epoch) of the finished seeds."""
    out = {}
    for seed in SEEDS:
        path = study / "seeds" / f"{name}-{seed}" / "metrics.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            if metrics.get("finished"):
                key = "best_valid" if split == "valid" else "test"
                out[seed] = metrics[key]["ndcg@10"]
    return out


def mean_sd_cell(values: list[float]) -> str:
    """'mean ± sd' over the seeds; the mean alone for one seed (its sd is unknown)."""
    if not values:
        return "–"
    sd = sample_sd(values)
    return f"{statistics.mean(values):.4f}" + ("" if sd != sd else f" ± {sd:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    args = parser.parse_args()
    print("| settings | seeds | valid NDCG@10 | test NDCG@10 |\n|---|---|---|---|")
    table = {name: {split: values(args.study, name, split) for split in ("valid", "test")}
             for name in ("default", "best")}
    for name, splits in table.items():
        cells = [mean_sd_cell(list(v.values())) for v in splits.values()]
        print(f"| {name} | {len(splits['test'])} | {cells[0]} | {cells[1]} |")
    for split in ("valid", "test"):
        differences = seed_differences(table["best"][split], table["default"][split])
        if len(differences) > 1:
            mean, half = mean_interval(list(differences.values()))
            print(f"\nbest - default, {split} NDCG@10, {len(differences)} paired seeds: "
                  f"{mean:+.4f} ± {half:.4f} (95 % t interval)")


if __name__ == "__main__":
    main()

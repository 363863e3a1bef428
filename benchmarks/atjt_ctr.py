"""DIN with and without ATJT under the ``ctr`` protocol: issue 18, spec §8.9 (CTR part).

    DENOISEREC_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/atjt_ctr.py \
        --dataset ml-100k --epochs 20 --seeds 3 --output benchmarks/out/atjt-ctr-ml-100k

For every seed, trains DIN twice on the same CTR samples (``protocol.seed`` fixed, so the same
users, negatives and data order): ``train.reweight=none`` (base) and ``train.reweight=atjt``
(``variant``), schedule-matched (same epochs, batch, lr, selection on validation AUC), one
thread. Prints per run and the mean with a paired 95 % t interval of ATJT - base on test AUC,
HR@5 and NDCG@5 (standard), plus the paper's variants (``_atjt``); saves ``results.json`` and
``table.md`` under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from denoiserec.run import train_config
from denoiserec.runconfig import load_config

METRICS = ("auc", "hit@5", "ndcg@5", "hit@5_atjt", "ndcg@5_atjt")
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262}  # Student t 0.975 quantiles by degrees of freedom (1.96 beyond)


def run_one(args: argparse.Namespace, seed: int, reweight: str, root: Path) -> dict:
    """One training run; its test metrics, best epoch and seconds."""
    overrides = [f"model={args.model}", "protocol=ctr", f"dataset={args.dataset}",
                 f"max_len={args.max_len}", f"epochs={args.epochs}",
                 f"batch_size={args.batch_size}", f"lr={args.lr}", f"seed={seed}",
                 "train.threads=1", "train.progress=false", "train.valid_metric=auc",
                 "protocol.ctr.paper_metrics=true", f"train.reweight={reweight}"]
    if reweight == "atjt":
        overrides.append(f"train.atjt.variant={args.variant}")
    started = time.perf_counter()
    result = train_config(load_config(overrides=overrides), root / f"{reweight}-seed{seed}")
    return {"seed": seed, "reweight": reweight, "best_epoch": result.best_epoch,
            "seconds": round(time.perf_counter() - started, 1),
            "last_parts": result.history[-1]["loss_parts"],
            **{m: result.test[m] for m in METRICS}}


def paired(runs: list[dict], metric: str) -> tuple[float, float, float]:
    """Mean of ATJT - base over seeds and its 95 % t half-width (nan for one seed)."""
    base = {r["seed"]: r[metric] for r in runs if r["reweight"] == "none"}
    diff = np.array([r[metric] - base[r["seed"]] for r in runs if r["reweight"] == "atjt"])
    half = (T975.get(len(diff) - 1, 1.96) * diff.std(ddof=1) / np.sqrt(len(diff))
            if len(diff) > 1 else float("nan"))
    return float(diff.mean()), float(half), len(diff)


def table(runs: list[dict]) -> str:
    head = "| run | seed | best epoch | s | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (4 + len(METRICS))]
    for r in runs:
        lines.append(f"| {r['reweight']} | {r['seed']} | {r['best_epoch']} | {r['seconds']} | "
                     + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " |")
    for reweight in ("none", "atjt"):
        mine = [r for r in runs if r["reweight"] == reweight]
        lines.append(f"| **mean {reweight}** | {len(mine)} | | | "
                     + " | ".join(f"{np.mean([r[m] for r in mine]):.4f}" for m in METRICS)
                     + " |")
    cells = []
    for m in METRICS:
        mean, half, _ = paired(runs, m)
        cells.append(f"{mean:+.4f} ± {half:.4f}")
    lines.append("| **atjt - none (95 % CI)** | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="din")
    parser.add_argument("--variant", default="atjt", choices=("atjt", "wat", "dnr"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-len", type=int, default=19)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/atjt-ctr-ml-100k"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in range(1, args.seeds + 1):
        for reweight in ("none", "atjt"):
            runs.append(run_one(args, seed, reweight, args.output))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "last_parts"}),
                  flush=True)
    text = (f"{args.model} on {args.dataset}, protocol ctr (user split 0.7/0.1/0.2, 63 "
            f"pop^0.75 negatives), {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
            f"max_len {args.max_len}, ATJT variant {args.variant}, selection on valid AUC\n\n"
            + table(runs))
    print(text)
    (args.output / "table.md").write_text(text + "\n")
    (args.output / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()

"""ATJT's gain over the same model trained without reweighting, with its ablations: issue 18.

    # CTR: DIN under the ``ctr`` protocol (spec §8.9)
    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/atjt_gain.py --setting ctr \
        --dataset beauty --epochs 30 --seeds 5 --output benchmarks/out/atjt-ctr-beauty
    # sequential: SASRec, ``recbole`` protocol, the converged suite's fast mode, to early stop
    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/atjt_gain.py --setting sequential \
        --dataset ml-100k --seeds 5 --output benchmarks/out/atjt-seq-ml-100k

For every seed, trains the model once per ``--variants`` entry on the same data (same split,
negatives and data order): ``none`` (no reweighting, the base) and each ATJT variant
(``train.atjt.variant``: ``wat``, ``dnr``, ``atjt``), schedule-matched (same epochs, batch,
lr, patience and selection rule), one thread. A finished run is reused when its folder's
``result.json`` was written with the same overrides (so an interrupted call resumes).
Prints every run and, per variant, the mean with a paired 95 % t interval of variant - none;
saves ``results.json`` and ``table.md`` under ``--output``.

Settings: ``ctr`` = DIN (``--model``), selection on valid AUC, standard metrics plus the paper's
``_atjt`` variants; ``sequential`` = SASRec (``--model``) in the fast mode of
``benchmarks/converged.sh`` (window instances, stride 25 with offsets, selection on the mean of 3
valid NDCG@10, dropout 0.2, patience 10, 200 epochs at most), test NDCG@10 / Hit@10 / MRR@10.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file (python benchmarks/NAME.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PROTOCOL, SASREC_DROPOUT, fast_mode  # noqa: E402
from denoiserec.atomic import atomic_write_text
from denoiserec.errors import DenoiserecError
from denoiserec.report.stats import mean_interval, seed_differences
from denoiserec.run import train_config
from denoiserec.runconfig import load_config

METRICS = {"ctr": ("auc", "hit@5", "ndcg@5", "hit@5_atjt", "ndcg@5_atjt"),
           "sequential": ("ndcg@10", "hit@10", "mrr@10")}
DATASETS = ("ml-100k", "ml-1m", "beauty")


def overrides_for(args: argparse.Namespace, seed: int, variant: str) -> list[str]:
    """The run's ``--set`` list: the setting's protocol and schedule, the seed, the variant."""
    common = [f"model={args.model}", f"dataset={args.dataset}", f"seed={seed}",
              f"epochs={args.epochs}", f"batch_size={args.batch_size}", f"lr={args.lr}",
              "train.threads=1", "train.progress=false"]
    if args.setting == "ctr":
        setting = ["protocol=ctr", f"max_len={args.max_len}", "train.valid_metric=auc",
                   "protocol.ctr.paper_metrics=true"]
    else:
        setting = [f"protocol={PROTOCOL[args.dataset]}", *fast_mode(args.dataset, False),
                   *SASREC_DROPOUT]
    reweight = (["train.reweight=none"] if variant == "none"
                else ["train.reweight=atjt", f"train.atjt.variant={variant}"])
    return common + setting + reweight + list(args.set)


def run_one(args: argparse.Namespace, seed: int, variant: str) -> dict:
    """One training run (or its saved result when the overrides match); its test metrics."""
    folder = args.output / f"{variant}-seed{seed}"
    overrides = overrides_for(args, seed, variant)
    saved = folder / "result.json"
    if saved.exists():
        result = json.loads(saved.read_text())
        if result["overrides"] == overrides:
            return result
    started = time.perf_counter()
    trained = train_config(load_config(overrides=overrides), folder)
    result = {"seed": seed, "variant": variant, "best_epoch": trained.best_epoch,
              "epochs_run": len(trained.history),
              "seconds": round(time.perf_counter() - started, 1),
              "last_parts": trained.history[-1]["loss_parts"], "overrides": overrides,
              **{m: trained.test[m] for m in METRICS[args.setting]}}
    atomic_write_text(saved, json.dumps(result, indent=1))
    return result


def paired(runs: list[dict], variant: str, metric: str) -> tuple[float, float]:
    """Mean of variant - none over seeds and its 95 % t half-width (nan for one seed)."""
    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: r[metric] for r in runs if r["variant"] == name}

    return mean_interval(list(seed_differences(by_seed(variant), by_seed("none")).values()))


def table(runs: list[dict], variants: list[str], metrics: tuple[str, ...]) -> str:
    """Markdown: every run, the mean per variant, each variant's paired difference to none."""
    lines = ["| run | seed | best epoch (of) | s | " + " | ".join(metrics) + " |",
             "|" + "---|" * (4 + len(metrics))]
    for r in runs:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['best_epoch']} ({r['epochs_run']}) | "
                     f"{r['seconds']} | " + " | ".join(f"{r[m]:.4f}" for m in metrics) + " |")
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        lines.append(f"| **mean {variant}** | {len(mine)} | | | "
                     + " | ".join(f"{np.mean([r[m] for r in mine]):.4f}" for m in metrics)
                     + " |")
    for variant in (v for v in variants if v != "none"):
        cells = [f"{mean:+.4f} ± {half:.4f}"
                 for mean, half in (paired(runs, variant, m) for m in metrics)]
        lines.append(f"| **{variant} - none (95 % CI)** | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=("ctr", "sequential"), default="ctr")
    parser.add_argument("--dataset", default="ml-100k", choices=DATASETS)
    parser.add_argument("--model", default=None, help="default din (ctr) / sasrec (sequential)")
    parser.add_argument("--variants", default="none,wat,dnr,atjt",
                        help="comma-separated: none (the base, always run) and ATJT variants")
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (ctr) / 200")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (ctr) / 8")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-len", type=int, default=19, help="ctr only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for every run, repeatable")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    ctr = args.setting == "ctr"
    args.model = args.model or ("din" if ctr else "sasrec")
    args.epochs = args.epochs or (30 if ctr else 200)
    args.batch_size = args.batch_size or (32 if ctr else 8)
    variants = ["none"] + [v for v in args.variants.split(",") if v and v != "none"]
    unknown = set(variants) - {"none", "wat", "dnr", "atjt"}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)} (none, wat, dnr, atjt)")
    args.output.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in range(1, args.seeds + 1):
        for variant in variants:
            runs.append(run_one(args, seed, variant))
            print(json.dumps({k: v for k, v in runs[-1].items()
                              if k not in ("last_parts", "overrides")}), flush=True)
    head = (f"{args.model} on {args.dataset}, setting {args.setting}, {args.epochs} epochs at "
            f"most, batch {args.batch_size}, lr {args.lr}, seeds 1-{args.seeds}, extra "
            f"{args.set or 'none'}\n\n")
    text = head + table(runs, variants, METRICS[args.setting])
    print(text)
    atomic_write_text(args.output / "table.md", text + "\n")
    atomic_write_text(args.output / "results.json", json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1))


if __name__ == "__main__":
    try:
        main()
    except DenoiserecError as err:  # one line naming the problem, as the CLI does
        sys.exit(f"error: {err}")

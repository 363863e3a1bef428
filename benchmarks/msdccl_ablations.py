"""MSDCCL ablation table: each variant's run against the full model and against its backbone.

Reads finished run directories (``metrics.json`` + ``test_ranks.csv``): the full MSDCCL and
BERT4Rec cells of a ``denoiserec compare`` output (``--seed``, clean) and the ablation runs
written by ``benchmarks/run_msdccl.sh`` under ``<output>-ablation/<variant>``. Differences are
paired permutation tests of per-user test NDCG@10 (the same test as ``compare``).

Usage::

    .venv/bin/python benchmarks/msdccl_ablations.py --output benchmarks/out/msdccl-ml-100k
"""

from __future__ import annotations

import argparse
from pathlib import Path

from denoiserec.compare import paired_user_test, per_user_ndcg
from denoiserec.report.tables import markdown_table
from denoiserec.runfolder import RunFolder

VARIANTS = {"no-hard": "w/o hard branch (`model.use_hard_branch=false`)",
            "no-contrastive": "w/o contrastive loss (`model.use_contrastive=false`)",
            "no-curriculum": "w/o curriculum (`model.curriculum=none`)"}


def versus(run: Path, reference: Path) -> str:
    """``difference (p)`` of per-user test NDCG@10, run minus reference."""
    p_value, difference = paired_user_test(per_user_ndcg(run), per_user_ndcg(reference))
    return f"{difference:+.4f} ({p_value:.3g})"


def row(name: str, run: Path, full: Path, backbone: Path) -> list[object]:
    metrics = RunFolder(run).read_metrics()
    return [name, metrics["best_epoch"] + 1, f"{metrics['test']['ndcg@10']:.4f}",
            f"{metrics['test']['hit@10']:.4f}",
            "-" if run == full else versus(run, full), versus(run, backbone),
            round(metrics["timings"]["mean_train_epoch_seconds"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the compare output directory")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    cells = args.output / "cells"
    full = cells / f"msdccl-noise0-seed{args.seed}"
    backbone = cells / f"bert4rec-noise0-seed{args.seed}"
    rows = [row("MSDCCL (full)", full, full, backbone)]
    for variant, name in VARIANTS.items():
        run = args.output.with_name(args.output.name + "-ablation") / variant
        if RunFolder(run).test_ranks.exists():
            rows.append(row(name, run, full, backbone))
    epochs = RunFolder(full).trained_epochs()
    print(markdown_table(["variant", f"selected epoch (of {epochs})", "test NDCG@10", "test Hit@10",
                          "vs full MSDCCL (p)", "vs BERT4Rec (p)", "train epoch s"], rows))


if __name__ == "__main__":
    main()

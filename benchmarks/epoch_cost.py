"""Training cost per batch of several models on one dataset, measured alternately in one process.

Models are timed in rounds (each round: ``--batches`` training batches of every model in turn),
so a machine whose load changes during the measurement slows all of them alike; the table gives
the median seconds per batch, the ratio to the first model and the projected epoch time.

usage: DENOISEREC_DATA=../shared/data python benchmarks/epoch_cost.py --dataset ml-100k \
           --models bert4rec,mgsd-wss --config-dir configs [--rounds 3] [--batches 10]
Each model reads ``configs/<model>-<dataset>.yaml`` when it exists, its defaults otherwise;
``train.instances=prefix``, batch 256, one thread; ``--set [MODEL:]key=value`` adds overrides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config


def scoped(extra: list[str], model: str) -> list[str]:
    """The overrides for ``model``: unscoped ones and ``MODEL:key=value`` ones for it."""
    picked = []
    for text in extra:
        scope, _, rest = text.partition(":")
        if rest and "=" not in scope:
            if scope == model:
                picked.append(rest)
        else:
            picked.append(text)
    return picked


def build(model: str, dataset: str, config_dir: Path, extra: list[str]):
    path = config_dir / f"{model}-{dataset}.yaml"
    overrides = [f"model={model}", f"dataset={dataset}", "train.instances=prefix",
                 "batch_size=256", "train.threads=1", "train.progress=false",
                 *scoped(extra, model)]
    config = load_config(path if path.exists() else None, overrides=overrides)
    return make_trainer(config, prepare(config), Path(tempfile.mkdtemp()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default="bert4rec,mgsd-wss")
    parser.add_argument("--config-dir", type=Path, default=Path("configs"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], dest="extra")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = args.models.split(",")
    trainers = {m: build(m, args.dataset, args.config_dir, args.extra) for m in models}
    seconds: dict[str, list[float]] = {m: [] for m in models}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for model, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_epoch(round_, max_batches=args.batches)
            if round_:
                seconds[model].append((time.perf_counter() - start) / args.batches)
    batches = -(-len(next(iter(trainers.values())).instances.users) // 256)
    reference = statistics.median(seconds[models[0]])
    rows = [{"model": m, "seconds_per_batch": statistics.median(s),
             "ratio": statistics.median(s) / reference,
             "epoch_seconds": statistics.median(s) * batches} for m, s in seconds.items()]
    print(f"| model | s / batch | x {models[0]} | epoch ({batches} batches) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['seconds_per_batch']:.3f} | {row['ratio']:.2f} | "
              f"{row['epoch_seconds']:.0f} s |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

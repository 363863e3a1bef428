"""Scale-out measurements (issue 29): out-of-core preprocessing, an epoch and an evaluation on a
large synthetic log. Run each step under ``/usr/bin/time -v`` for the peak memory.

    denoiserec synthesize /scratch/synth10m.parquet --users 250000 --items 1000000
    /usr/bin/time -v python benchmarks/scale_out.py prepare /scratch/synth10m.parquet \\
        --cache /scratch/cache
    /usr/bin/time -v python benchmarks/scale_out.py epoch /scratch/synth10m.parquet \\
        --cache /scratch/cache --batches 400
    /usr/bin/time -v python benchmarks/scale_out.py evaluate /scratch/synth10m.parquet \\
        --cache /scratch/cache --users 20000 --item-chunk 65536

Each prints one JSON line of figures, with the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from denoiserec.data.cache import entry_bytes
from denoiserec.data.datasets import DataConfig, load_dataset
from denoiserec.models import build_model
from denoiserec.protocols import EvalSet, ProtocolConfig, split
from denoiserec.runconfig import load_config
from denoiserec.train.trainer import Trainer, prepare_torch


def _log(args: argparse.Namespace):
    os.environ["DENOISEREC_CACHE"] = str(args.cache)
    return load_dataset(DataConfig(dataset=str(args.file), engine="duckdb",
                                   memory_limit=args.memory_limit))


def cmd_prepare(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    log = _log(args)
    seconds = time.perf_counter() - started
    key = Path(log.items.filename).parent.name
    return {"step": "prepare", "rows": log.n_interactions, "users": log.n_users,
            "items": log.n_items, "seconds": round(seconds, 1),
            "cache_bytes": entry_bytes(key, args.cache)}


def _trainer(args: argparse.Namespace, run_dir: Path) -> Trainer:
    log = _log(args)
    config = load_config(None, [
        "model.name=sasrec", f"train.loss={args.loss}", f"train.n_negatives={args.negatives}",
        f"train.batch_size={args.batch_size}", "train.threads=1", "train.progress=false",
        "train.instances=window", f"train.eval_item_chunk={args.item_chunk}",
        f"train.eval_batch_size={args.eval_batch_size}",
        f"data.max_len={args.max_len}"])
    prepare_torch(config.train)
    parts = split(log, ProtocolConfig())
    model = build_model(config.model, log.n_items, args.max_len)
    return Trainer(model, parts, config.train, args.max_len, run_dir)


def cmd_epoch(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    trainer = _trainer(args, args.cache / "run")
    setup = time.perf_counter() - started
    total = len(trainer.instances.users)
    n_batches = -(-total // args.batch_size)
    measured = min(args.batches or n_batches, n_batches)
    started = time.perf_counter()
    loss, _ = trainer.train_epoch(0, max_batches=measured)
    seconds = time.perf_counter() - started
    return {"step": "epoch", "windows": total, "batches": n_batches,
            "measured_batches": measured, "seconds": round(seconds, 1),
            "projected_epoch_seconds": round(seconds * n_batches / measured, 1),
            "loss": round(loss, 4), "setup_seconds": round(setup, 1)}


def cmd_evaluate(args: argparse.Namespace) -> dict:
    trainer = _trainer(args, args.cache / "run")
    test = trainer.split.test
    rows = np.random.default_rng(0).choice(len(test), min(args.users, len(test)),
                                           replace=False)
    subset = EvalSet(users=test.users[np.sort(rows)], targets=test.targets[np.sort(rows)])
    trainer.split = replace(trainer.split, test=subset)
    started = time.perf_counter()
    evaluation = trainer.evaluate("test")
    return {"step": "evaluate", "instances": len(subset), "items": trainer.split.log.n_items,
            "item_chunk": args.item_chunk, "eval_batch_size": args.eval_batch_size,
            "seconds": round(time.perf_counter() - started, 1),
            "ndcg@10": round(evaluation.metrics["ndcg@10"], 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "epoch", "evaluate"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--loss", default="sampled")
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batches", type=int, default=0, help="0 = the whole epoch")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--item-chunk", type=int, default=65_536)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    step = {"prepare": cmd_prepare, "epoch": cmd_epoch, "evaluate": cmd_evaluate}[args.step]
    figures = step(args)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

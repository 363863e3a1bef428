"""Training speed of MSDCCL vs its backbone (BERT4Rec) and SASRec at equal size and length.

All models at hidden size ``--hidden`` (64 = the backbones' default), L = ``--max-len``, batch
256, on ml-100k under the recbole protocol (5-core, as the MSDCCL configs). Each model trains
``--batches`` batches through the real training loop (``Trainer.train_epoch`` on a subset of
the epoch's instances) after ``--warmup`` untimed batches, in ``--repeats`` round-robin rounds
(the fastest kept, as the machine may be shared); the table gives seconds per batch and the
extrapolation to one full epoch. MSDCCL is measured once per ``--inner`` value: the FFN
width of its two extra encoders (reference 2048; 4H = 256 is the natural choice), which
dominates its cost (spec §9).

Usage::

    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/msdccl.py \\
        --batches 40 --inner 2048 256 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

if not __package__:  # run as a file (python benchmarks/NAME.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import seconds_per_batch  # noqa: E402
from denoiserec.report.tables import markdown_table
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config
from denoiserec.train.trainer import Trainer


def build(overrides: list[str], run_dir: Path, split=None) -> Trainer:
    """A Trainer for one model (``split`` reused between models)."""
    config = load_config(overrides=overrides)
    split = prepare(config) if split is None else split
    return make_trainer(config, split, run_dir)  # nothing is written there


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=1,
                        help="round-robin rounds over the models; the fastest round is kept")
    parser.add_argument("--inner", type=int, nargs="+", default=[2048, 256],
                        help="FFN width(s) of MSDCCL's extra encoders")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    common = [f"dataset={args.dataset}", f"max_len={args.max_len}", "protocol=recbole",
              "data.user_core=5", "data.item_core=5", "train.progress=false",
              f"train.threads={args.threads}", f"train.device={args.device}",
              ]
    size = f"model.hidden_size={args.hidden}"
    models = [("SASRec", ["model=sasrec", size]), ("BERT4Rec (Cloze)", ["model=bert4rec", size])]
    models += [(f"MSDCCL-BERT4Rec, extra FFN {inner}",
                ["model=msdccl", f"model.inner_size={inner}", f"model.backbone.hidden_size="
                 f"{args.hidden}", f"model.backbone.inner_size={args.hidden}"])
               for inner in args.inner]
    trainers, split = [], None
    run_dir = Path(tempfile.gettempdir()) / "msdccl-bench-unused"
    for _, model in models:
        trainer = build([*model, *common], run_dir, split)
        split = trainer.split
        seconds_per_batch(trainer, 0, args.warmup)  # untimed: first-call overheads
        trainers.append(trainer)
    # round-robin repeats, fastest kept: the machine may be shared with other jobs
    best = [float("inf")] * len(models)
    for repeat in range(args.repeats):
        for index, trainer in enumerate(trainers):
            best[index] = min(best[index], seconds_per_batch(trainer, repeat + 1, args.batches))
        print(f"round {repeat + 1}/{args.repeats} done", flush=True)
    size = trainers[0].train_config.batch_size
    epoch_batches = -(-len(trainers[0].instances.users) // size)
    rows = []
    for (label, _), trainer, seconds in zip(models, trainers, best, strict=True):
        params = sum(p.numel() for p in trainer.model.parameters())
        params -= trainer.model.item_embeddings().numel()
        rows.append([label, f"{params / 1e6:.3f}", f"{seconds:.4f}",
                     f"{seconds * epoch_batches:.1f}", f"{seconds / best[0]:.1f}x"])
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"\n{args.dataset}, recbole protocol, H={args.hidden}, L={args.max_len}, batch 256, "
          f"fastest of {args.repeats} x {args.batches} timed batches ({epoch_batches} per "
          f"epoch), device {device}, "
          f"torch threads {torch.get_num_threads()}\n")
    print(markdown_table(["model", "non-embedding params (M)", "s / batch",
                          "s / epoch (extrapolated)", "vs SASRec"], rows))


if __name__ == "__main__":
    main()

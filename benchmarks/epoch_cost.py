"""Training cost of every model of the four papers, before and after a change, in one process.

Each code version (``--before SRC``: the ``src`` folder of an older checkout, e.g. a git
worktree; ``after``: this checkout) runs in a worker process that builds every model's trainer
once; the parent then asks the workers in turn to train ``--batches`` batches of one model, so
only one measurement runs at a time and a machine whose load drifts slows every model and both
versions alike (rounds interleave them). Round r trains the first batches of epoch r's order:
batches are shuffled, so they are a random sample of the epoch's batches, wide and narrow
alike. The table gives the mean seconds per batch and the projected epoch (mean x batches per
epoch), per version and the speed-up, and each model's cost relative to the first model.

usage: DENOISEREC_DATA=../shared/data python benchmarks/epoch_cost.py --dataset ml-100k \
           [--models sasrec,bert4rec,fmlp,msdccl,...] [--before ../wt-before/src] \
           [--rounds 3] [--batches 10] [--output out.json]

The models are the campaign's (``benchmarks/campaign.py``, equal width H = 64, prefix
instances, batch 256), one thread; ``--set [MODEL:]key=value`` adds overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def worker(spec: dict) -> None:
    """Build the trainers, then answer ``{"model", "epoch", "batches"}`` lines with seconds."""
    import torch
    from campaign import row_config

    from denoiserec.run import make_trainer, prepare

    torch.set_num_threads(1)
    trainers, batches = {}, {}
    for row in spec["rows"]:
        config = row_config(row, spec["dataset"], 2020,
                            ["train.progress=false", *scoped(spec["extra"], row)],
                            legacy=spec["legacy"])
        trainer = make_trainer(config, prepare(config), Path(tempfile.mkdtemp()))
        trainers[row] = trainer
        batches[row] = -(-len(trainer.instances.users) // config.train.batch_size)
    print(json.dumps({"ready": batches}), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        start = time.perf_counter()
        trainers[ask["model"]].train_epoch(ask["epoch"], max_batches=ask["batches"])
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def start_worker(src: Path, spec: dict) -> tuple[subprocess.Popen, dict[str, int]]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    ready = json.loads(process.stdout.readline())["ready"]
    return process, ready


def ask(process: subprocess.Popen, model: str, epoch: int, batches: int) -> float:
    process.stdin.write(json.dumps({"model": model, "epoch": epoch, "batches": batches}) + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default="sasrec,bert4rec,fmlp,msdccl,msdccl-control,"
                                                "mgsd-wss,mgsd-control")
    parser.add_argument("--before", type=Path, help="src folder of the code to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], dest="extra")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    rows = args.models.split(",")
    versions = {"after": HERE.parent / "src"}
    if args.before:
        versions = {"before": args.before.resolve(), **versions}
    workers = {}
    for name, src in versions.items():
        spec = {"rows": rows, "dataset": args.dataset, "extra": args.extra,
                "legacy": name == "before"}
        workers[name] = start_worker(src, spec)
    seconds = {(v, m): [] for v in versions for m in rows}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for model in rows:
            for version, (process, _) in workers.items():
                value = ask(process, model, round_, args.batches) / args.batches
                if round_:
                    seconds[version, model].append(value)
                    print(f"round {round_} {version:6s} {model:16s} {value:.3f} s / batch",
                          flush=True)
    for process, _ in workers.values():
        process.stdin.close()
        process.wait()
    table = []
    for model in rows:
        row = {"model": model}
        for version, (_, batches) in workers.items():
            mean = statistics.mean(seconds[version, model])
            row[version] = {"seconds_per_batch": mean, "batches": batches[model],
                            "epoch_seconds": mean * batches[model]}
        table.append(row)
    reference = table[0]["after"]["epoch_seconds"]
    before_reference = table[0]["before"]["epoch_seconds"] if args.before else None
    print(f"\n{args.dataset}, one thread, {args.rounds} x {args.batches} batches per model "
          "and version")
    head = "| model | epoch s before | x first before | epoch s after | x first after | speed-up |"
    print(head + "\n|---|---|---|---|---|---|")
    for row in table:
        after = row["after"]["epoch_seconds"]
        if args.before:
            before = row["before"]["epoch_seconds"]
            print(f"| {row['model']} | {before:.1f} | {before / before_reference:.2f} | "
                  f"{after:.1f} | {after / reference:.2f} | {before / after:.2f}x |")
        else:
            print(f"| {row['model']} | | | {after:.1f} | {after / reference:.2f} | |")
    if args.output:
        args.output.write_text(json.dumps({"dataset": args.dataset, "rounds": args.rounds,
                                           "batches": args.batches, "rows": table}, indent=2))


if __name__ == "__main__":
    main()

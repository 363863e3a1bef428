"""Where a SASRec training step spends its time (prefix mode, ml-100k), and torch.compile vs eager.

1. ``torch.profiler`` over ``--batches`` training steps (batch building, forward, backward,
   Adam step), after a few warm-up steps: the top operators by self CPU time.
2. The loss step (forward + backward; Adam stays eager) compiled with ``torch.compile``, each
   batch right-padded to one of a few bucketed widths so that a graph is compiled once per
   width; steady-state seconds per step compiled vs eager on the same batches, timed
   interleaved. Compiled twice: with inductor's own RNG for dropout, and with
   ``fallback_random`` (eager ``bernoulli_``). If compiling fails, the report gives the
   one-line error.

Usage (one thread, as the numbers in the report were measured)::

    DENOISEREC_DATA=/path/to/data .venv/bin/python benchmarks/profile_prefix.py --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch._inductor.config
from torch.profiler import ProfilerActivity, profile

from denoiserec.data.batches import Batch, Batcher
from denoiserec.models import SequentialRecommender, build_model
from denoiserec.nn.losses import Objective, next_item_loss
from denoiserec.run import prepare
from denoiserec.runconfig import load_config

OUT = Path(__file__).resolve().parent / "out"
WIDE_FIELDS = ("items", "rows", "behaviours")  # (B, L) fields of a prefix batch; rows pad -1


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pad_width(batch: Batch, width: int) -> Batch:
    """Right-pad the (B, L) fields to ``width`` columns (padding: item 0, row -1)."""
    extra = width - batch.items.shape[1]
    if extra <= 0:
        return batch
    padded = {name: torch.nn.functional.pad(getattr(batch, name), (0, extra),
                                            value=-1 if name == "rows" else 0)
              for name in WIDE_FIELDS if getattr(batch, name) is not None}
    return dataclasses.replace(batch, **padded)


def bucket(width: int, buckets: list[int]) -> int:
    return next(b for b in buckets if b >= width)


Instances = list[tuple[torch.Tensor, torch.Tensor]]


def setup(args: argparse.Namespace) -> tuple:
    """Model, batcher and a fixed list of full training batches' (users, targets)."""
    config = load_config(overrides=["model=sasrec", "dataset=ml-100k", "protocol=recbole",
                                    f"batch_size={args.batch_size}", f"seed={args.seed}"])
    split = prepare(config)
    torch.manual_seed(args.seed)
    model = build_model(config.model, split.log.n_items, config.data.max_len)
    batcher = Batcher(split.log, config.data.max_len, torch.device("cpu"))
    order = np.random.default_rng(args.seed).permutation(len(split.train_targets))
    n = args.warmup + args.batches
    chunks = [order[i * args.batch_size:(i + 1) * args.batch_size] for i in range(n)]
    instances = [(torch.as_tensor(split.train_users[c]), torch.as_tensor(split.train_targets[c]))
                 for c in chunks]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    return config, model, batcher, instances, optimizer


def profile_steps(model: SequentialRecommender, batcher: Batcher, instances: Instances,
                  optimizer: torch.optim.Optimizer,
                  args: argparse.Namespace) -> tuple[str, float]:
    """Profile the steps after ``args.warmup``: Markdown table and milliseconds per step."""
    objective = Objective("ce")
    model.train()

    def step(users: torch.Tensor, targets: torch.Tensor) -> None:
        output = model.loss(batcher.prefix(users, targets), objective, model.progress_at(0))
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()

    for users, targets in instances[:args.warmup]:
        step(users, targets)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for users, targets in instances[args.warmup:]:
            step(users, targets)
        ms_per_step = (time.perf_counter() - started) * 1000 / args.batches
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [[f"`{e.key}`", e.count, f"{e.self_cpu_time_total / 1000:.1f}",
             f"{100 * e.self_cpu_time_total / total:.1f}", f"{e.cpu_time_total / 1000:.1f}",
             f"{e.self_cpu_time_total / 1000 / args.batches:.2f}"]
            for e in events[:args.top]]
    header = ["operator", "calls", "self CPU ms", "self %", "CPU total ms", "self ms / step"]
    return table(header, rows), ms_per_step


def train_step(loss_step: Callable[[Batch], torch.Tensor], batch: Batch,
               optimizer: torch.optim.Optimizer) -> float:
    """One step (loss, backward, Adam); its seconds."""
    started = time.perf_counter()
    loss = loss_step(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


def compare_compile(model: SequentialRecommender, batcher: Batcher, instances: Instances,
                    optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> str:
    """Steady-state ms per step, eager vs torch.compile over bucketed widths.

    Modes are timed interleaved (each batch in every mode, in rotating order) so that load
    from other processes hits them alike; compile happens in the warm-up steps.
    """
    max_len = model.max_len
    buckets = sorted({-(-max_len * i // args.buckets) for i in range(1, args.buckets + 1)})
    objective = Objective("ce")
    raw = [batcher.prefix(users, targets) for users, targets in instances]
    widths = [b.items.shape[1] for b in raw]
    batches = [pad_width(b, bucket(w, buckets)) for b, w in zip(raw, widths, strict=True)]
    used = sorted({b.items.shape[1] for b in batches})
    model.train()

    def loss_step(batch: Batch) -> torch.Tensor:
        hidden = model.sequence_representation(batch)
        return next_item_loss(hidden, model.item_embeddings(), batch.targets, objective, None)

    torch._inductor.config.compile_threads = 1  # one core: no parallel compile workers
    modes: dict[str, Callable[[Batch], torch.Tensor]] = {
        "eager": loss_step,
        "torch.compile": torch.compile(loss_step, dynamic=False),
        "torch.compile, fallback_random": torch.compile(  # dropout masks by eager bernoulli
            loss_step, dynamic=False, options={"fallback_random": True}),
    }
    warm: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, step in modes.items():
        try:
            warm[name] = sum(train_step(step, b, optimizer) for b in batches[:args.warmup])
        except Exception as error:  # any compile failure is reported in one line
            errors[name] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    working = [name for name in modes if name not in errors]
    seconds: dict[str, list[float]] = {name: [] for name in working}
    for i, batch in enumerate(batches[args.warmup:]):
        for j in range(len(working)):
            name = working[(i + j) % len(working)]
            seconds[name].append(train_step(modes[name], batch, optimizer))
    eager = statistics.median(seconds["eager"])
    rows = [[name, f"{1000 * statistics.median(s):.1f}", f"{1000 * statistics.mean(s):.1f}",
             f"{eager / statistics.median(s):.2f}x", f"{warm[name]:.1f}"]
            for name, s in seconds.items()]
    header = ["mode", "median ms / step", "mean ms / step", "speed-up (median)",
              f"first {args.warmup} steps s (incl. compile)"]
    lines = [f"Buckets {buckets}; widths before padding: min {min(widths)}, max {max(widths)}; "
             f"bucket widths used: {used} (one compile each). {args.batches} steps per mode, "
             f"interleaved; load average at the end: {os.getloadavg()[0]:.1f}.", "",
             table(header, rows)]
    lines += [f"\n{name} failed: {message}" for name, message in errors.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="profiled / timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--top", type=int, default=15, help="operators in the table")
    parser.add_argument("--buckets", type=int, default=4, help="bucketed widths for compile")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--output", type=Path, default=OUT / "profile_prefix.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, model, batcher, instances, optimizer = setup(args)
    profiled, ms_per_step = profile_steps(model, batcher, instances, optimizer, args)
    report = [
        "# SASRec prefix-mode training step on ml-100k",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch "
        f"{args.batch_size}, max_len {config.data.max_len}, hidden "
        f"{config.model.hidden_size}; {args.batches} profiled steps after {args.warmup} "
        f"warm-up steps: {ms_per_step:.1f} ms / step under the profiler (load average "
        f"{os.getloadavg()[0]:.1f}).",
        "",
        f"## Top {args.top} operators by self CPU time",
        "",
        profiled,
    ]
    if not args.no_compile:
        report += ["", "## torch.compile (loss step, bucketed widths) vs eager", "",
                   compare_compile(model, batcher, instances, optimizer, args)]
    text = "\n".join(report) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()

"""Cost as sequences grow: END4Rec's miner (O(L log L)) vs SASRec's self-attention (O(L^2)).

Issue 17 "Must show" (END4Rec spec §5.1): training time and peak memory at L = 50, 200, 1000,
on synthetic data, one thread, the same batch size and width for both. Two scopes:

* ``layer``: the sequence mixer alone, forward + backward of ``output.sum()`` on a random
  (batch, L, d) input: END4Rec's miner (``nn/fft.ChunkedSpectralMixer``: rfft, frequency
  filter, chunked complex MLP, irfft) vs SASRec's causal multi-head self-attention sublayer
  (``nn/transformer.MultiHeadSelfAttention``, 2 heads, with its projections, residual, LN).
* ``model``: a whole training step of the registered models (``model.loss`` -> backward ->
  Adam step, CE over ``--items`` items, every row full length, with behaviours): END4Rec
  (defaults, all four levels training: stage 4) vs SASRec (RecBole defaults, 2 layers).

"Epoch time" is the wall time of a fixed number of training batches (``--batches``, after one
untimed warm-up batch), so the epoch is the same for every L; ``ms / batch`` is their median
(robust to a busy neighbour on a shared machine).

**Peak memory** is the rise of the process's resident set during one more training batch
(Linux ``VmHWM`` from ``/proc/self/status``, reset through ``/proc/self/clear_refs`` just
before it) over its resident set at that moment, each cell in a fresh one-thread process;
before the reset glibc is told to map large blocks one by one and to return its cache
(``mallopt``, ``malloc_trim``), so the resident set follows the live tensors. It counts every
allocation the steps make (torch's CPU allocator, autograd's saved tensors, oneDNN/MKL
workspaces, the FFT plans), unlike ``tracemalloc``, which only sees Python's own allocator and
misses torch's tensors, and unlike ``ru_maxrss``, which cannot be reset and would include the
import's peak. It is fair because both models run the same steps in identical fresh processes
and the baseline (interpreter, torch, parameters, batch) is subtracted. As an
allocator-independent second measure, ``saved_mb`` is the size of the tensors autograd saves
for the backward pass of one batch (counted once per storage, parameters excluded): the
activation memory that makes attention O(L^2).

Usage (about 4 minutes on one thread)::

    .venv/bin/python benchmarks/end4rec_cost.py            # L = 50 200 1000, batch 32, d 64

Writes ``benchmarks/out/end4rec_cost.{json,csv,png}`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
SERIES = {("layer", "end4rec"): "END4Rec miner",
          ("layer", "sasrec"): "SASRec self-attention",
          ("model", "end4rec"): "END4Rec (whole model)",
          ("model", "sasrec"): "SASRec (whole model)"}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


# -- one cell, in its own process --------------------------------------------------------------
def _memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    status = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{key}:\s+(\d+)", status).group(1))  # type: ignore[return-value]
                 for key in ("VmRSS", "VmHWM"))


def _reset_peak() -> int:
    """Make the resident set follow the live allocations, release what glibc caches, and reset
    the peak to the current resident set; returns it (KiB).

    glibc keeps freed blocks (and raises its mmap threshold after large frees), so later steps
    reuse resident memory and a peak would miss them: blocks of 64 KiB and more are now mapped
    and unmapped one by one, and ``malloc_trim`` returns the cache.
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 65536)
    libc.mallopt(M_TRIM_THRESHOLD, 131072)
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _memory_kib()[0]


def _saved_bytes(step: Callable[[], Any], parameters: set[int]) -> int:
    """Bytes of the tensors autograd saves during ``step()`` (one count per storage)."""
    import torch

    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def _layer_step(model: str, length: int, batch: int, hidden: int):
    """(module, step) for the mixer alone: forward + backward of the output's sum."""
    import torch

    from denoiserec.nn.fft import ChunkedSpectralMixer
    from denoiserec.nn.transformer import MultiHeadSelfAttention, attention_mask

    x = torch.randn(batch, length, hidden, requires_grad=True)
    if model == "end4rec":
        module = ChunkedSpectralMixer(length, hidden, 4, frequency_filter=True)
        forward = lambda: module(x)  # noqa: E731
    else:
        module = MultiHeadSelfAttention(hidden, 2, 0.5, 0.5, 1e-12)
        mask = attention_mask(torch.ones(batch, length, dtype=torch.long), causal=True)
        forward = lambda: module(x, mask)  # noqa: E731
    module.train()

    def step() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        forward().sum().backward()

    return module, step


def _synthetic_batch(length: int, batch: int, n_items: int):
    """Full-length rows of random items with random behaviours (0 = buy, 1 = cart, 2 = pv)."""
    import torch

    from denoiserec.data.batches import Batch

    generator = torch.Generator().manual_seed(0)
    items = torch.randint(1, n_items + 1, (batch, length), generator=generator)
    return Batch(items=items, lengths=torch.full((batch,), length),
                 targets=torch.randint(1, n_items + 1, (batch,), generator=generator),
                 users=torch.arange(batch),
                 rows=torch.arange(batch * length).view(batch, length),
                 behaviours=torch.randint(0, 3, (batch, length), generator=generator))


def _model_step(model: str, length: int, batch: int, hidden: int, n_items: int):
    """(module, step) for a whole training step of a registered model."""
    import torch

    from denoiserec.models import build_model, model_config_class
    from denoiserec.nn.losses import Objective

    config = model_config_class(model)(hidden_size=hidden)
    module = build_model(config, n_items, length).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    data, objective = _synthetic_batch(length, batch, n_items), Objective()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module.loss(data, objective, module.progress_at(0)).loss.backward()
        optimizer.step()

    return module, step


def measure(scope: str, model: str, length: int, batch: int, hidden: int, n_items: int,
            batches: int) -> dict[str, Any]:
    """Time and memory of ``batches`` training batches of one (scope, model, L) cell."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module, step = (_layer_step(model, length, batch, hidden) if scope == "layer"
                    else _model_step(model, length, batch, hidden, n_items))
    step()  # warm-up: first-call allocations, FFT plans
    times = []
    for _ in range(batches):  # timed with the allocator's defaults
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved = _saved_bytes(step, parameters)
    baseline = _reset_peak()
    step()
    peak = _memory_kib()[1]
    return {"scope": scope, "model": model, "L": length, "batch": batch, "hidden": hidden,
            "batches": batches, "epoch_s": round(sum(times), 3),
            "ms_per_batch": round(1000 * statistics.median(times), 1),
            "peak_mb": round((peak - baseline) / 1024, 1), "saved_mb": round(saved / 2**20, 1),
            "parameters": sum(p.numel() for p in module.parameters())}


def run_cell(args: argparse.Namespace, scope: str, model: str, length: int) -> dict[str, Any]:
    """``measure`` in a fresh one-thread process (its own peak, no allocator carry-over)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--cell", scope, model, str(length),
               "--batch", str(args.batch), "--hidden", str(args.hidden),
               "--items", str(args.items), "--batches", str(args.batches)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"cell {scope}/{model}/L={length} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- report -------------------------------------------------------------------------------------
def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scope | model | L | epoch (s) | ms / batch | peak memory (MB) | saved for "
            "backward (MB) | parameters |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scope']} | {SERIES[r['scope'], r['model']]} | {r['L']} | "
                     f"{r['epoch_s']:.2f} | {r['ms_per_batch']:.1f} | {r['peak_mb']:.1f} | "
                     f"{r['saved_mb']:.1f} | {r['parameters']:,} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log: ms per batch and peak memory against L, one line per (scope, model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (scope, model), label in SERIES.items():
        series = sorted((r for r in rows if (r["scope"], r["model"]) == (scope, model)),
                        key=lambda r: r["L"])
        if not series:
            continue
        style = dict(marker="o", linestyle="-" if scope == "model" else "--",
                     color="tab:blue" if model == "end4rec" else "tab:red", label=label)
        lengths = [r["L"] for r in series]
        axes[0].plot(lengths, [r["ms_per_batch"] for r in series], **style)
        axes[1].plot(lengths, [max(r["peak_mb"], 0.1) for r in series], **style)
    for axis, title in zip(axes, ("training time (ms / batch)", "peak memory (MB above base)"),
                           strict=True):
        axis.set(xscale="log", yscale="log", xlabel="sequence length L", title=title)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    first = rows[0]
    figure.suptitle(f"END4Rec miner vs SASRec self-attention: batch {first['batch']}, "
                    f"d {first['hidden']}, one thread")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--items", type=int, default=1000, help="catalogue (model scope)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per cell")
    parser.add_argument("--scopes", nargs="+", default=["layer", "model"])
    parser.add_argument("--output", type=Path, default=OUT / "end4rec_cost")
    parser.add_argument("--cell", nargs=3, metavar=("SCOPE", "MODEL", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        scope, model, length = args.cell
        print(json.dumps(measure(scope, model, int(length), args.batch, args.hidden,
                                 args.items, args.batches)))
        return
    rows = []
    for scope in args.scopes:
        for length in args.lengths:
            for model in ("end4rec", "sasrec"):
                rows.append(run_cell(args, scope, model, length))
                print(f"[cost] {scope} {model} L={length}: {rows[-1]['ms_per_batch']} ms/batch, "
                      f"peak {rows[-1]['peak_mb']} MB", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    with open(args.output.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.output.with_suffix(".png"))
    print(markdown(rows))
    print(f"\nwritten: {args.output}.{{json,csv,png}}")


if __name__ == "__main__":
    main()

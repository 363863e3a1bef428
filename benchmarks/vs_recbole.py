"""SASRec on ml-100k, RecBole 1.2.1 vs denoiserec, same protocol and hyper-parameters, one run.

Three parts, all printed as Markdown and saved to ``benchmarks/out/vs_recbole.json``:

1. **Speed** (measured now, one after the other, same thread count): seconds per training
   epoch in prefix mode (RecBole's only mode), seconds of one full-ranking evaluation of the 943
   valid users and of the 943 test users. RecBole runs through ``benchmarks/recbole_peer.py`` in
   its own venv (anomaly mode off, recbole.md §1 row 5).
2. **Accuracy** (read from the background runs of ``benchmarks/run_sasrec_ml100k.sh`` and
   ``recbole_peer.py``, same seeds and epoch budget): test NDCG@10 / Hit@10, mean ± std and
   the per-seed spread of each side.
3. **All-position (window) mode** (batch 32: an ml-100k epoch has only ~2.4k windows): trained
   here until its valid NDCG@10 reaches the mean best valid NDCG@10 of the prefix-mode runs;
   time to that value vs the prefix mode's (epochs needed x seconds per epoch of part 1).

Usage::

    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/vs_recbole.py \\
        --recbole-python .venv-recbole/bin/python --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from denoiserec.report.tables import markdown_table
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import RunConfig, load_config

OUT = Path(__file__).resolve().parent / "out"
SASREC = ["model=sasrec", "dataset=ml-100k", "protocol=recbole", "train.progress=false"]


def recbole_speed(python: str, threads: int, epochs: int) -> dict:
    output = OUT / "speed_recbole.json"
    subprocess.run([python, str(Path(__file__).parent / "recbole_peer.py"), "--seed", "2020",
                    "--epochs", str(epochs), "--threads", str(threads), "--output", str(output)],
                   check=True, stdout=subprocess.DEVNULL)
    result = json.loads(output.read_text())
    return {"train_epoch_seconds": statistics.median(e["train_seconds"] for e in result["epochs"]),
            "valid_eval_seconds": statistics.median(e["valid_seconds"] for e in result["epochs"]),
            "test_eval_seconds": result["test_eval_seconds"]}


# the converged suite's fast mode on ml-100k (benchmarks/converged.sh, RECORD.md §5.1)
FAST = ["train.window_stride=25", "train.window_offsets=true", "train.selection_window=3",
        "model.hidden_dropout=0.2", "model.attn_dropout=0.2"]


def ours_speed(threads: int, epochs: int, instances: str = "prefix",
               batch_size: int = 256, extra: tuple[str, ...] = ()) -> dict:
    config = load_config(overrides=[*SASREC, f"train.threads={threads}",
                                    f"train.instances={instances}", f"batch_size={batch_size}",
                                    *extra])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(replace_epochs(config, epochs), prepare(config), Path(run_dir))
        trainer.fit()
        start = time.perf_counter()
        trainer.evaluate("test")
        test_seconds = time.perf_counter() - start
    history = trainer.state.history  # the trainer's own timings
    return {"train_epoch_seconds": statistics.median(e["train_seconds"] for e in history),
            "valid_eval_seconds": statistics.median(e["valid_seconds"] for e in history),
            "test_eval_seconds": test_seconds}


def replace_epochs(config: RunConfig, epochs: int) -> RunConfig:
    """``epochs`` epochs exactly (no early stop)."""
    return replace(config, train=replace(config.train, epochs=epochs, patience=epochs))


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f} (n={len(values)})"


def accuracy() -> dict:
    sides: dict[str, dict[str, list[float]]] = {"recbole": {}, "denoiserec": {}}
    for path in sorted(OUT.glob("recbole_seed*.json")):
        result = json.loads(path.read_text())
        if result.get("finished"):
            for metric in ("ndcg@10", "hit@10"):
                sides["recbole"].setdefault(metric, []).append(result["test"][metric])
            sides["recbole"].setdefault("best_valid", []).append(
                result["epochs"][result["best_epoch"]]["valid"]["ndcg@10"])
    for path in sorted(OUT.glob("ours_prefix_seed*/metrics.json")):
        result = json.loads(path.read_text())
        if result.get("finished"):
            for metric in ("ndcg@10", "hit@10"):
                sides["denoiserec"].setdefault(metric, []).append(result["test"][metric])
            sides["denoiserec"].setdefault("best_valid", []).append(
                result["best_valid"]["ndcg@10"])
            sides["denoiserec"].setdefault("epochs_to_best", []).append(result["best_epoch"] + 1)
    return sides


def window_time_to(target: float, threads: int, max_epochs: int, batch_size: int) -> dict:
    config = load_config(overrides=[*SASREC, f"train.threads={threads}", "train.instances=window",
                                    f"epochs={max_epochs}", f"batch_size={batch_size}"])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(replace_epochs(config, max_epochs), prepare(config), Path(run_dir))
        trainer.fit()
    elapsed, curve = 0.0, []
    for entry in trainer.state.history:  # the trainer's recorded epochs
        elapsed += entry["train_seconds"] + entry["valid_seconds"]
        value = entry["valid"]["ndcg@10"]
        curve.append((entry["epoch"], round(elapsed, 2), value))
        if value >= target:
            return {"reached": True, "epochs": entry["epoch"] + 1, "seconds": elapsed,
                    "curve": curve}
    return {"reached": False, "epochs": max_epochs, "seconds": elapsed, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recbole-python", default=".venv-recbole/bin/python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-epochs", type=int, default=1)
    parser.add_argument("--window-epochs", type=int, default=60)
    parser.add_argument("--window-batch", type=int, default=32,
                        help="window mode batch size (few windows per epoch: small batches)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help="only part 1 (no accuracy, no time-to-target run)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    report: dict = {"threads": args.threads, "torch": torch.__version__}

    if not args.skip_speed:
        report["speed"] = {"recbole": recbole_speed(args.recbole_python, args.threads,
                                                    args.speed_epochs),
                           "denoiserec": ours_speed(args.threads, args.speed_epochs),
                           "denoiserec_window": ours_speed(args.threads, args.speed_epochs,
                                                           "window", args.window_batch),
                           "denoiserec_fast_suite": ours_speed(args.threads, args.speed_epochs,
                                                               "window", 8, tuple(FAST))}
        speed = report["speed"]
        rows = [[name, *(f"{speed[name][k]:.2f}" for k in ("train_epoch_seconds",
                                                          "valid_eval_seconds",
                                                          "test_eval_seconds"))]
                for name in speed]
        rows.append(["speed-up (recbole / denoiserec prefix)", *(
            f"{speed['recbole'][k] / speed['denoiserec'][k]:.1f}x"
            for k in ("train_epoch_seconds", "valid_eval_seconds", "test_eval_seconds"))])
        print(f"## Speed ({args.threads} threads)\n")
        print(markdown_table(["", "train epoch s", "valid eval s", "test eval s"], rows))

    if args.speed_only:
        (OUT / "vs_recbole_speed.json").write_text(json.dumps(report, indent=1))
        return
    sides = accuracy()
    report["accuracy"] = sides
    print("\n## Accuracy (test, recbole protocol)\n")
    print(markdown_table(["", "NDCG@10", "Hit@10", "best valid NDCG@10"],
                         [[name, mean_std(v.get("ndcg@10", [])), mean_std(v.get("hit@10", [])),
                           mean_std(v.get("best_valid", []))] for name, v in sides.items()]))
    ours = sides["denoiserec"]
    if ours.get("best_valid") and "speed" in report:
        target = statistics.mean(ours["best_valid"])
        window = window_time_to(target, args.threads, args.window_epochs, args.window_batch)
        prefix_epochs = statistics.mean(ours["epochs_to_best"])
        prefix_seconds = prefix_epochs * (report["speed"]["denoiserec"]["train_epoch_seconds"]
                                          + report["speed"]["denoiserec"]["valid_eval_seconds"])
        report["window"] = {"target_valid_ndcg@10": target, **window,
                            "prefix_epochs": prefix_epochs, "prefix_seconds": prefix_seconds}
        print(f"\n## Time to valid NDCG@10 >= {target:.4f}\n")
        print(markdown_table(["mode", "epochs", "seconds"], [
            ["prefix (every prefix an instance)", f"{prefix_epochs:.1f}", f"{prefix_seconds:.0f}"],
            [f"window (all positions){'' if window['reached'] else ' (not reached)'}",
             window["epochs"], f"{window['seconds']:.0f}"]]))
    (OUT / "vs_recbole.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())

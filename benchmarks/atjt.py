"""ATJT's weights against real (injected) noise: issue 18, spec §8.7 and Table 5.

    DENOISEREC_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/atjt.py \
        --dataset ml-100k --ratio 0.2 --epochs 3 --output benchmarks/out/atjt-ml-100k
    ... benchmarks/atjt.py --dataset beauty --fast --epochs 200 --set noise.users=0.5 \
        --output benchmarks/out/atjt-beauty-fast

Trains a model (SASRec by default) with ``train.reweight=atjt`` on the dataset with ``ratio``
of every training sequence's items replaced (``noise.kind=replace``), one thread, then prints:

* the Table 5 analogue: mean weight of the noise models' corrupted vs original rows (their own
  artificial noise batches, last epoch: ``w_noisy`` / ``w_clean`` of the loss parts);
* on the injected noise, over every training instance (a prefix and its target row): the
  mean weight w of instances whose target is injected vs clean, of those whose last history
  item is injected vs clean, and of those whose input (the last ``max_len`` items before the
  target) holds any injected item vs none, with the ROC-AUC of 1 - w for each label, next to
  the surprise baseline of the same trained model (``noise.scores.surprise_scores``): of the
  target, or its mean over the input for the input label.

``--set noise.users=0.5`` corrupts half the users and leaves the others clean, so that the
input label compares noisy with clean sequences (ATJT weighs a sequence, not an item).
``--summary DIR ...`` tabulates finished runs (one per seed) as means with 95 % t intervals.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from atjt_gain import FAST_MODE, PROTOCOL, mean_interval

from denoiserec.atomic import atomic_write_text
from denoiserec.noise.detection import roc_auc
from denoiserec.noise.scores import surprise_scores
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config


def instance_weights(trainer, chunk: int = 2048) -> np.ndarray:
    """(m,) ATJT weight of every prefix training instance (evaluation mode)."""
    split, out = trainer.split, []
    users = torch.as_tensor(split.train_users, device=trainer.device)
    targets = torch.as_tensor(split.train_targets, device=trainer.device)
    for start in range(0, len(users), chunk):
        batch = trainer.batcher.prefix(users[start:start + chunk], targets[start:start + chunk])
        out.append((1.0 - trainer.reweighter.noise_scores(batch)).cpu().numpy())
    return np.concatenate(out)


def input_sums(values: np.ndarray, split, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of per-row ``values`` over every training instance's input rows, and their count."""
    totals = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    targets = split.train_targets
    first = np.maximum(split.log.offsets[split.train_users], targets - max_len)
    return totals[targets] - totals[first], targets - first


def summarise(folders: list[Path], output: Path) -> None:
    """Mean and 95 % t interval over the runs in ``folders`` of every figure, as a table."""
    reports = [json.loads((folder / "atjt_weights.json").read_text()) for folder in folders]
    rows = [("noise models' own corrupted rows", [r["artificial"] for r in reports])]
    rows += [(name, [r["injected"][name] for r in reports]) for name in reports[0]["injected"]]
    for parts in (p for _, group in rows for p in group):
        parts["gap"] = parts["w_clean"] - parts["w_noisy"]  # paired within each run
    columns = ("share", "w_noisy", "w_clean", "gap", "auc_atjt", "auc_surprise")
    header = " | ".join(columns).replace("gap", "w_clean - w_noisy")
    lines = [f"{len(reports)} runs: {', '.join(str(f) for f in folders)}", "",
             f"| instances | {header} |", "|---" * (len(columns) + 1) + "|"]
    summary = {}
    for name, parts in rows:
        cells = {c: mean_interval([p[c] for p in parts]) for c in columns
                 if all(p.get(c) is not None for p in parts)}
        summary[name] = cells
        lines.append(f"| {name} | " + " | ".join(
            f"{cells[c][0]:.3f} ± {cells[c][1]:.3f}" if c in cells else "-" for c in columns)
            + " |")
    print("\n".join(lines))
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "summary.md", "\n".join(lines) + "\n")
    atomic_write_text(output / "summary.json", json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fast", action="store_true",
                        help="train in the converged suite's fast mode to early stop "
                             "(--epochs is then the cap) under the dataset's protocol")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/atjt-ml-100k"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--summary", type=Path, nargs="+",
                        help="tabulate these finished runs into --output instead of training")
    args = parser.parse_args()
    if args.summary:
        summarise(args.summary, args.output)
        return
    config = load_config(overrides=[
        f"model={args.model}", f"dataset={args.dataset}", f"epochs={args.epochs}",
        f"seed={args.seed}", "train.threads=1", "train.progress=false", "train.reweight=atjt",
        "noise.kind=replace", f"noise.ratio={args.ratio}", "noise.seed=0",
        *([f"protocol={PROTOCOL[args.dataset]}", *FAST_MODE] if args.fast else []),
        *args.overrides])
    split = prepare(config)
    args.output.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(config, split, args.output)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    parts = trainer.state.history[-1]["loss_parts"]
    weights = instance_weights(trainer)
    noise, max_len = split.log.is_noise, config.data.max_len
    injected_inputs, _ = input_sums(noise, split, max_len)
    labels = {"target injected": noise[split.train_targets],
              "last history item injected": noise[split.train_targets - 1],
              "input holds an injected item": injected_inputs > 0}
    row_surprise = surprise_scores(trainer.model, split.log, max_len, trainer.device)
    input_surprise, input_rows = input_sums(row_surprise, split, max_len)
    baselines = {"target injected": row_surprise[split.train_targets],
                 "input holds an injected item": input_surprise / np.maximum(input_rows, 1)}
    report = {"dataset": args.dataset, "model": args.model, "ratio": args.ratio,
              "epochs": args.epochs, "seed": args.seed, "train_seconds": round(seconds, 1),
              "valid_ndcg@10": trainer.state.history[-1]["valid"]["ndcg@10"],
              "artificial": {"w_noisy": parts["w_noisy"], "w_clean": parts["w_clean"]},
              "injected": {}}
    for name, label in labels.items():
        report["injected"][name] = {
            "share": float(label.mean()), "w_noisy": float(weights[label].mean()),
            "w_clean": float(weights[~label].mean()), "auc_atjt": roc_auc(1 - weights, label),
            "auc_surprise": roc_auc(baselines[name], label) if name in baselines else None}
    print(json.dumps(report, indent=2))
    atomic_write_text(args.output / "atjt_weights.json", json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""ATJT's weights against real (injected) noise: issue 18, spec §8.7 and Table 5.

    DENOISEREC_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/atjt.py \
        --dataset ml-100k --ratio 0.2 --epochs 3 --output benchmarks/out/atjt-ml-100k
    ... benchmarks/atjt.py --dataset beauty --fast --epochs 200 --set noise.users=0.5 \
        --output benchmarks/out/atjt-beauty-fast

Trains a model (SASRec by default) with ``train.reweight=atjt`` on the dataset with ``ratio``
of every training sequence's items replaced (``noise.kind=replace``), one thread, through the
one training path (``train_config``: resumable, its test metrics in ``metrics.json``; a finished
run is only re-tested), then prints, from the last epoch's models:

* the Table 5 analogue: mean weight of the noise models' corrupted vs original rows (their own
  artificial noise batches, last epoch: ``w_noisy`` / ``w_clean`` of the loss parts);
* on the injected noise, over every training instance (a prefix and its target row), for four
  labels: its target is injected; its last input item is; its input (the last ``max_len``
  items before the target) holds any injected item; and, over each user's last instance only,
  that input holds one. For each: the mean weight w of the noisy and the clean instances and the
  ROC-AUC of 1 - w, next to two baselines: the surprise of the same trained model
  (``noise.scores.surprise_scores``; of the item for the item labels, its mean over the input's
  rows that have a prefix for the input labels) and the input's length alone (longer inputs
  hold more items, so they are likelier to hold an injected one); and both AUCs again over the
  pairs of equal input length only, which removes that confound.

``--set noise.users=0.5`` corrupts half the users and leaves the others clean, so that the
input label compares noisy with clean sequences (ATJT weighs a sequence, not an item).
``--summary DIR ...`` tabulates finished runs (one per seed) as means with 95 % t intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

if not __package__:  # run as a file (python benchmarks/NAME.py): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PROTOCOL, SASREC_DROPOUT, fast_mode  # noqa: E402
from denoiserec.atomic import atomic_write_text
from denoiserec.errors import DenoiserecError
from denoiserec.noise.detection import roc_auc
from denoiserec.noise.scores import surprise_scores
from denoiserec.report.stats import mean_interval
from denoiserec.run import make_trainer, prepare, train_config
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


def last_instances(split) -> np.ndarray:
    """Index of every user's last training instance (its longest input)."""
    order = np.lexsort((split.train_targets, split.train_users))
    users = split.train_users[order]
    return order[np.r_[users[1:] != users[:-1], True]]


def auc_same_length(scores: np.ndarray, label: np.ndarray, lengths: np.ndarray) -> float | None:
    """ROC-AUC over the (noisy, clean) pairs of equal input length only: the per-length AUCs
    weighted by their number of pairs (None when no length has both kinds)."""
    total = pairs = 0.0
    for length in np.unique(lengths):  # at most max_len values
        part = lengths == length
        noisy = int(label[part].sum())
        clean = int(part.sum()) - noisy
        if noisy and clean:
            total += roc_auc(scores[part], label[part]) * noisy * clean
            pairs += noisy * clean
    return total / pairs if pairs else None


def measure(trainer, max_len: int) -> dict[str, dict[str, float | None]]:
    """The weights against each injected-noise label, with the surprise and length baselines."""
    split = trainer.split
    log, targets = split.log, split.train_targets
    weights = instance_weights(trainer)
    held, lengths = input_sums(log.is_noise, split, max_len)
    surprise = surprise_scores(trainer.model, log, max_len, trainer.device)
    has_prefix = np.ones(log.n_interactions, dtype=bool)
    has_prefix[log.offsets[:-1][log.lengths > 0]] = False  # a user's first row: no surprise
    total, _ = input_sums(np.where(has_prefix, surprise, 0.0), split, max_len)
    counted, _ = input_sums(has_prefix, split, max_len)
    input_surprise = total / np.maximum(counted, 1)
    every, last = np.arange(len(targets)), last_instances(split)
    cases = {"target injected": (every, log.is_noise[targets], surprise[targets]),
             "last history item injected": (every, log.is_noise[targets - 1],
                                            surprise[targets - 1]),
             "input holds an injected item": (every, held > 0, input_surprise),
             "a user's last input holds one": (last, held[last] > 0, input_surprise[last])}
    out = {}
    for name, (rows, label, baseline) in cases.items():
        w, length = weights[rows], lengths[rows]
        out[name] = {"share": float(label.mean()), "w_noisy": float(w[label].mean()),
                     "w_clean": float(w[~label].mean()), "auc_atjt": roc_auc(1 - w, label),
                     "auc_surprise": roc_auc(baseline, label),
                     "auc_length": roc_auc(length.astype(np.float64), label),
                     "auc_atjt_same_length": auc_same_length(1 - w, label, length),
                     "auc_surprise_same_length": auc_same_length(baseline, label, length)}
    return out


def summarise(folders: list[Path], output: Path) -> None:
    """Mean and 95 % t interval over the runs in ``folders`` of every figure, as a table."""
    reports = [json.loads((folder / "atjt_weights.json").read_text()) for folder in folders]
    rows = [("noise models' own corrupted rows", [r["artificial"] for r in reports])]
    rows += [(name, [r["injected"][name] for r in reports]) for name in reports[0]["injected"]]
    for parts in (p for _, group in rows for p in group):
        parts["gap"] = parts["w_clean"] - parts["w_noisy"]  # paired within each run
    columns = ("share", "w_noisy", "w_clean", "gap", "auc_atjt", "auc_surprise", "auc_length",
               "auc_atjt_same_length", "auc_surprise_same_length")
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
        *([f"protocol={PROTOCOL[args.dataset]}", *fast_mode(args.dataset, False),
           *SASREC_DROPOUT] if args.fast else []),
        *args.overrides])
    result = train_config(config, args.output)  # resumes; a finished run only re-tests
    split = prepare(config)
    trainer = make_trainer(config, split, args.output)
    trainer.resume()  # the last epoch's recommender and noise models
    parts = trainer.state.history[-1]["loss_parts"]
    report = {"dataset": args.dataset, "model": args.model, "ratio": args.ratio,
              "epochs": args.epochs, "seed": args.seed, "overrides": args.overrides,
              "best_epoch": result.best_epoch, "epochs_run": len(result.history),
              "test": result.test,
              "artificial": {"w_noisy": parts["w_noisy"], "w_clean": parts["w_clean"]},
              "injected": measure(trainer, config.data.max_len)}
    print(json.dumps(report, indent=2))
    atomic_write_text(args.output / "atjt_weights.json", json.dumps(report, indent=2))


if __name__ == "__main__":
    try:
        main()
    except DenoiserecError as err:  # one line naming the problem, as the CLI does
        sys.exit(f"error: {err}")

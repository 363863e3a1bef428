"""MSDCCL's denoising levels over the first batches of training, one row per gate option.

Reproduces the dead-level diagnosis (issue: the reference gate opens to keep-all within ~5
batches and log pi saturates to 0 by batch 20) and measures the fixes side by side: for each
variant, the keep rate, the normalised entropy of the soft weights (1 = uniform) and the share
of saturated log-probabilities at given batches, from the trainer's own loss parts.

    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/msdccl_gate.py --batches 150
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from denoiserec.report.tables import markdown_table
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config

VARIANTS = {
    "reference (published gate, unbounded, projected)": [
        "model.gate=reference", "model.margin_bound=0", "model.soft_input=projected"],
    "reference gate, bounded margin": ["model.gate=reference"],
    "centred, bias 1 (default)": [],
    "centred, bias 0": ["model.gate_bias=0"],
    "keep prior 0.8": ["model.gate=prior"],
    "fixed ratio 0.2": ["model.gate=ratio"],
}
COMMON = ["model=msdccl", "model.backbone.hidden_size=64", "model.backbone.inner_size=64",
          "model.inner_size=256", "protocol=recbole", "train.progress=false",
          "train.threads=1", "seed=2020"]
REPORTED = ("kept", "weight_entropy", "saturated")


def trace(overrides: list[str], dataset: str, batches: int, at: list[int]) -> dict:
    config = load_config(overrides=[*COMMON, f"dataset={dataset}", *overrides])
    rows: dict[int, dict[str, float]] = {}

    def record(step: int, output) -> None:
        if step + 1 in at:
            rows[step + 1] = {k: output.parts.get(k, float("nan")) for k in REPORTED}
            print(step + 1, rows[step + 1], flush=True)

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(config, prepare(config), Path(run_dir))
        trainer.train_epoch(0, max_batches=batches, on_batch=record)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/out/msdccl_gate.json"))
    args = parser.parse_args()
    at = sorted({1, 5, 10, 20, 50, 100, args.batches} & set(range(1, args.batches + 1)))
    results = {}
    for name, overrides in VARIANTS.items():
        print(f"== {name}", flush=True)
        results[name] = trace(overrides, args.dataset, args.batches, at)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1))
    for metric in REPORTED:
        print(f"\n{metric} at batch:\n")
        print(markdown_table(["variant", *map(str, at)],
                             [[name, *(f"{rows[b][metric]:.3f}" for b in at)]
                              for name, rows in results.items()]))


if __name__ == "__main__":
    main()

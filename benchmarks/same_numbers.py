"""One epoch per model on a fixed seed: the test metrics a refactor must leave unchanged.

    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/same_numbers.py \
        --models sasrec,gru4rec --output benchmarks/out/same-before.json

Each model trains 1 epoch (prefix instances, `recbole` protocol, seed 2020, 1 thread) on
ml-100k and its test metrics are written as JSON; compare two such files with ``--against``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import denoiserec


def run(models: list[str], dataset: str) -> dict[str, dict[str, float]]:
    out = {}
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            result = denoiserec.train(
                model=model, dataset=dataset, protocol="recbole",
                overrides=["epochs=1", "seed=2020", "train.threads=1", "train.progress=false"],
                output=Path(tmp) / model)
        out[model] = result.test
        print(model, {k: round(v, 6) for k, v in result.test.items() if k.endswith("@10")},
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sasrec,bert4rec,gru4rec,msdccl")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--against", type=Path, help="a JSON written before, to compare with")
    args = parser.parse_args()
    now = run(args.models.split(","), args.dataset)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(now, indent=1))
    if args.against is not None:
        before = json.loads(args.against.read_text())
        for model, metrics in now.items():
            worst = max(abs(metrics[k] - before[model][k]) for k in metrics)
            print(f"{model}: largest |difference| over {len(metrics)} test metrics = {worst:.2e}")


if __name__ == "__main__":
    main()

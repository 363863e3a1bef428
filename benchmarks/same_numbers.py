"""Fixed-seed runs whose test metrics a refactor must leave unchanged.

    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/same_numbers.py \
        --output benchmarks/out/same-before.json
    ... change the code ...
    DENOISEREC_DATA=../shared/data .venv/bin/python benchmarks/same_numbers.py \
        --output benchmarks/out/same-after.json --against benchmarks/out/same-before.json

Two kinds of case, each trained with seed 2020 on 1 thread and its test metrics written as JSON:

* ``<model>``: every registered model, 1 epoch with prefix instances (the sequential models
  under ``recbole``, the CTR models under ``ctr``, as they must), and ``sasrec/<protocol>``
  under the other protocols that rank (``fmlp``, ``sampled``), on the synthetic log
  (``--dataset``: another; ml-100k takes ~4x longer);
* ``<model>/<what>`` on the synthetic log, 3 epochs: the settings that reach a model through
  the training loop rather than its config -- the denoisers' schedules after epoch 0 (MSDCCL's
  curriculum and temperatures, MGSD-WSS's temperatures, END4Rec's four stages), window
  instances (next-item and Cloze), label smoothing, weight decay, BPR negatives, ATJT weights.

``--cases`` picks some (comma-separated names); ``--against`` prints the largest difference of
each case's metrics to a JSON written before.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import denoiserec
from denoiserec.models import MODELS

COMMON = ["seed=2020", "train.threads=1", "train.progress=false"]
SHORT = ["dataset=synthetic", "epochs=3", "train.batch_size=128"]
VARIANTS: dict[str, list[str]] = {
    "msdccl/schedules": ["model=msdccl", "model.curriculum_epochs=3",
                         "model.anneal_epochs=2", "model.backbone.hidden_size=32",
                         "model.backbone.inner_size=32", "model.inner_size=64"],
    "mgsd-wss/schedules": ["model=mgsd-wss", "model.anneal_epochs=2",
                           "model.backbone.hidden_size=32", "model.backbone.inner_size=32",
                           "model.inner_size=64"],
    "end4rec/stages": ["model=end4rec", "epochs=5", "model.stage_epochs=[1, 1, 1]",
                       "model.hidden_size=32"],
    "sasrec/window": ["model=sasrec", "train.instances=window", "train.window_stride=10",
                      "train.window_offsets=true"],
    "bert4rec/window": ["model=bert4rec", "train.instances=window"],
    "sasrec/label-smoothing": ["model=sasrec", "train.label_smoothing=0.1"],
    "mgsd-wss/label-smoothing": ["model=mgsd-wss", "train.label_smoothing=0.1",
                                 "model.backbone.hidden_size=32",
                                 "model.backbone.inner_size=32", "model.inner_size=64"],
    "gru4rec/weight-decay": ["model=gru4rec", "train.weight_decay=0.01"],
    "sasrec/bpr": ["model=sasrec", "train.loss=bpr", "train.n_negatives=2"],
    "sasrec/atjt": ["model=sasrec", "train.reweight=atjt"],
}


def cases(dataset: str) -> dict[str, list[str]]:
    """Every case's overrides (see the module docstring)."""
    out = {}
    for name, cls in sorted(MODELS.items()):
        protocol = "ctr" if cls.task == "ctr" else "recbole"
        out[name] = [f"model={name}", f"dataset={dataset}", f"protocol={protocol}", "epochs=1"]
    for protocol in ("fmlp", "sampled"):
        out[f"sasrec/{protocol}"] = ["model=sasrec", f"dataset={dataset}",
                                     f"protocol={protocol}", "epochs=1"]
    out.update({name: [*SHORT, *overrides] for name, overrides in VARIANTS.items()})
    return out


def run(chosen: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, overrides in chosen.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = denoiserec.train(overrides=[*overrides, *COMMON],
                                      output=Path(tmp) / "run")
        out[name] = result.test
        shown = {k: round(v, 6) for k, v in result.test.items() if k.endswith("@10")}
        print(name, shown, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--dataset", default="synthetic", help="of the one-epoch cases")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--against", type=Path, help="a JSON written before, to compare with")
    args = parser.parse_args()
    every = cases(args.dataset)
    names = args.cases.split(",") if args.cases else list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(every)}")
    now = run({n: every[n] for n in names})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(now, indent=1))
    if args.against is not None:
        before = json.loads(args.against.read_text())
        for name, metrics in now.items():
            if name not in before:
                print(f"{name}: not in {args.against}")
                continue
            worst = max(abs(metrics[k] - before[name][k]) for k in metrics)
            print(f"{name}: largest |difference| over {len(metrics)} test metrics = {worst:.2e}")


if __name__ == "__main__":
    main()

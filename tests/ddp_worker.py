"""Run by tests/test_distributed.py, as one process or under torchrun: train a small SASRec on
a small synthetic log into ``argv[1]`` and write the loss of every step and the test metrics
(rank 0) to ``argv[2]``. Extra arguments are ``--set`` overrides."""

from __future__ import annotations

import json
import sys

from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.run import train
from denoiserec.train.distributed import is_main_process
from denoiserec.train.trainer import Trainer

SETTINGS = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1",
            "model.hidden_dropout=0", "model.attn_dropout=0", "data.max_len=12",
            "train.batch_size=51", "train.eval_batch_size=37", "train.threads=1",
            "train.progress=false", "train.epochs=2", "train.lr=0.005"]


def main() -> None:
    output, report, *extra = sys.argv[1:]
    losses: list[float] = []
    epoch = Trainer.train_epoch

    def recorded(self, number, max_batches=None, on_batch=None):
        return epoch(self, number, max_batches, lambda _, out: losses.append(float(out.loss)))

    Trainer.train_epoch = recorded
    log = generate(SyntheticConfig(n_users=90, n_items=60, mean_length=14, max_length=30))
    result = train("sasrec", "synthetic", overrides=[*SETTINGS, *extra], output=output, log=log)
    if is_main_process():
        with open(report, "w") as handle:
            json.dump({"losses": losses, "test": result.test, "valid": result.valid}, handle)


if __name__ == "__main__":
    main()

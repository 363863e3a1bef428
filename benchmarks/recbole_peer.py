"""RecBole 1.2.1 peer run for the SASRec / ml-100k benchmark.

This is the RecBole side of ``benchmarks/vs_recbole.py``: it trains RecBole's own SASRec on
RecBole's bundled ml-100k under exactly the protocol of
``docs/protocols/recbole.md`` of the shared folder (section 2: leave-one-out split by user, time
order, full ranking, CE loss, no negative sampling, 50-item windows) and records, per epoch,
the wall-clock seconds of training and of the validation evaluation together with the loss and
the validation metrics, then the test metrics of the best validation epoch.

It must run under the RecBole virtual environment (``.venv-recbole``, built by ``make peer`` from
the shared lock file, recbole.md section 1), not under denoiserec's own environment::

    .venv-recbole/bin/python benchmarks/recbole_peer.py \\
        --seed 2020 --epochs 20 --threads 1 --output benchmarks/out/recbole_seed2020.json

The pipeline is RecBole's ``run_recbole`` (Config, ``init_seed``, ``create_dataset``,
``data_preparation``, ``init_seed`` again, model, ``Trainer``), except that the epoch loop of
``Trainer.fit`` is driven here so that each phase can be timed on its own:

* ``Trainer._train_epoch`` and ``Trainer._valid_epoch`` are RecBole's own methods;
* early stopping uses RecBole's own ``early_stopping`` helper on the (4-decimal) valid
  NDCG@10, so the stop epoch and the retained best epoch are those ``Trainer.fit`` would give
  (note: RecBole treats a tie with the best score as an improvement);
* the best weights are kept as an in-memory copy instead of a checkpoint file (RecBole's
  ``fit`` writes one with ``torch.save`` after every improvement; that disk time is not
  counted here), and reloaded once at the end for the test evaluation.

Two deliberate differences from a plain ``run_recbole`` call, both neutral for the numbers:
``torch.autograd.set_detect_anomaly(False)`` after importing RecBole's sequential models
(recbole.md, table row 5: RecBole turns anomaly mode on at import, which makes training about
3x slower), and ``topk`` also includes 1 so that @1 metrics are reported.

The JSON result is rewritten atomically after every epoch, so an interrupted run still
leaves usable data (``"finished": false``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# RecBole's checkpoints pickle its Config; torch >= 2.6 refuses them by default (recbole.md row 4).
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

FRAMEWORK = "recbole 1.2.1"
MODEL = "SASRec"
DATASET = "ml-100k"
VALID_METRIC = "ndcg@10"
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out" / "recbole_work"  # git-ignored
SASREC_HPARAMS = (
    "n_layers",
    "n_heads",
    "hidden_size",
    "inner_size",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
    "learner",
    "shuffle",
    "eval_step",
    "metric_decimal_place",
    "repeatable",
    "normalize_all",
    "clip_grad_norm",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--epochs", type=int, default=20, help="epoch budget")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", type=Path, required=True, help="JSON result file")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="RecBole's working directory (its log/, log_tensorboard/ and checkpoint dirs)",
    )
    parser.add_argument(
        "--max-train-batches",
        type=int,
        default=None,
        help="timing mode: stop every training epoch after this many batches",
    )
    return parser.parse_args(argv)


def recbole_config_dict(seed: int, epochs: int, workdir: Path) -> dict[str, Any]:
    """The configuration of recbole.md section 2 (RecBole defaults for everything else)."""
    return {
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "MAX_ITEM_LIST_LENGTH": 50,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [1, 5, 10, 20],
        "valid_metric": "NDCG@10",
        "epochs": epochs,
        "stopping_step": 10,
        "train_batch_size": 256,
        "learning_rate": 0.001,
        "weight_decay": 0.0,
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "eval_batch_size": 4096,
        "show_progress": False,
        "checkpoint_dir": str(workdir / "saved"),
    }


def lower_metrics(result: dict[str, Any]) -> dict[str, float]:
    """RecBole's metric dict as plain floats with lower-case keys (``ndcg@10``)."""
    return {str(key).lower(): float(value) for key, value in result.items()}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


class FirstBatches:
    """A RecBole train loader cut to its first ``limit`` batches (timing mode only)."""

    def __init__(self, loader: Any, limit: int) -> None:
        self.loader = loader
        self.limit = limit
        self.shuffle = loader.shuffle

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.limit)

    def __len__(self) -> int:
        return min(self.limit, len(self.loader))


def build_config(config_dict: dict[str, Any]) -> Any:
    """RecBole's Config for SASRec on ml-100k, shielded from this script's own argv.

    RecBole's Config also reads ``--key=value`` arguments from ``sys.argv``; this script's
    arguments must not leak into it.
    """
    from recbole.config import Config

    saved_argv = sys.argv
    sys.argv = saved_argv[:1]
    try:
        return Config(model=MODEL, dataset=DATASET, config_dict=config_dict)
    finally:
        sys.argv = saved_argv


def dataset_stats(dataset: Any, train_data: Any, valid_data: Any, test_data: Any) -> dict:
    """Sizes as in recbole.md 2.1/2.3 (RecBole's counts include the [PAD] id, removed here)."""
    return {
        "users": int(dataset.user_num - 1),
        "items": int(dataset.item_num - 1),
        "train_instances": len(train_data._dataset),
        "valid": len(valid_data._dataset),
        "test": len(test_data._dataset),
        "train_batches_per_epoch": len(train_data),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one seed and write its JSON result."""
    args = parse_args(argv)
    output = args.output.resolve()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # RecBole writes ./log/ and ./log_tensorboard/ relative to the working directory.
    os.chdir(workdir)

    import torch

    torch.set_num_threads(args.threads)

    import recbole
    import recbole.model.sequential_recommender  # noqa: F401  (turns anomaly mode on)
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import (
        early_stopping,
        get_model,
        get_trainer,
        init_logger,
        init_seed,
    )

    torch.autograd.set_detect_anomaly(False)

    # --- RecBole's run_recbole pipeline, same calls in the same order -------------------
    config_dict = recbole_config_dict(args.seed, args.epochs, workdir)
    config = build_config(config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)  # first step of Trainer.fit

    stats = dataset_stats(dataset, train_data, valid_data, test_data)
    result: dict[str, Any] = {
        "framework": FRAMEWORK,
        "model": MODEL,
        "dataset": DATASET,
        "seed": args.seed,
        "threads": args.threads,
        "epochs_budget": args.epochs,
        "max_train_batches": args.max_train_batches,
        "config": {
            **config_dict,
            "model_defaults": {key: config[key] for key in SASREC_HPARAMS},
            "anomaly_detection": torch.is_anomaly_enabled(),
        },
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "dataset_stats": stats,
        "train_loss_note": "train_loss = sum of batch losses (as RecBole logs it); "
        "train_loss_mean = per-batch mean",
        "epochs": [],
        "best_epoch": None,
        f"best_valid_{VALID_METRIC}": None,
        "test": None,
        "test_eval_seconds": None,
        "stopped_early": False,
        "finished": False,
    }
    print(f"[recbole_peer] dataset stats: {stats}", flush=True)

    train_loader = train_data
    if args.max_train_batches is not None:
        train_loader = FirstBatches(train_data, args.max_train_batches)
    n_batches = len(train_loader)

    best_state: dict[str, Any] | None = None
    for epoch_idx in range(args.epochs):
        start = time.perf_counter()
        loss = trainer._train_epoch(train_loader, epoch_idx, show_progress=False)
        train_seconds = time.perf_counter() - start
        loss = float(sum(loss) if isinstance(loss, tuple) else loss)

        start = time.perf_counter()
        valid_score, valid_result = trainer._valid_epoch(valid_data, show_progress=False)
        valid_seconds = time.perf_counter() - start

        trainer.best_valid_score, trainer.cur_step, stop_flag, update_flag = early_stopping(
            valid_score,
            trainer.best_valid_score,
            trainer.cur_step,
            max_step=trainer.stopping_step,
            bigger=trainer.valid_metric_bigger,
        )
        if update_flag:
            best_state = copy.deepcopy(trainer.model.state_dict())
            trainer.best_valid_result = valid_result
            result["best_epoch"] = epoch_idx
            result[f"best_valid_{VALID_METRIC}"] = float(valid_score)

        valid = lower_metrics(valid_result)
        result["epochs"].append(
            {
                "epoch": epoch_idx,
                "train_seconds": train_seconds,
                "train_batches": n_batches,
                "seconds_per_batch": train_seconds / n_batches,
                "train_loss": loss,
                "train_loss_mean": loss / n_batches,
                "valid_seconds": valid_seconds,
                "valid": valid,
            }
        )
        write_json_atomic(output, result)
        print(
            f"[recbole_peer] seed {args.seed} epoch {epoch_idx}: train {train_seconds:.1f}s "
            f"({train_seconds / n_batches:.3f}s/batch) loss {loss:.4f}, valid "
            f"{valid_seconds:.1f}s ndcg@10 {valid['ndcg@10']:.4f} hit@10 {valid['hit@10']:.4f}"
            f"{'  *best*' if update_flag else ''}",
            flush=True,
        )
        if stop_flag:
            result["stopped_early"] = True
            break

    assert best_state is not None, "no epoch was evaluated"
    trainer.model.load_state_dict(best_state)
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    result["test_eval_seconds"] = time.perf_counter() - start
    result["test"] = lower_metrics(test_result)
    result["finished"] = True
    write_json_atomic(output, result)
    print(
        f"[recbole_peer] seed {args.seed} best epoch {result['best_epoch']}, test {result['test']}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The one training loop: every model, every protocol, resumable, selected on validation only.

Per epoch: shuffle the instances (a permutation fixed by seed and epoch), train with Adam
(+ weight decay, optional gradient clipping and per-batch linear warm-up), evaluate on the valid
set and keep the best checkpoint. Model selection is RecBole 1.2.1's ``early_stopping`` rule,
exactly: the valid metric is rounded to 4 decimals, a value ``>=`` the best so far counts as an
improvement (so on ties the *later* epoch is kept), and training stops once more than
``train.patience`` consecutive evaluations brought no improvement. Then the best checkpoint is
reloaded and evaluated once on the test set.

After every epoch ``last.pt`` holds model, optimiser, scheduler, history and the torch RNG state,
so an interrupted run resumes where it stopped and ends with the same numbers.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from denoiserec.data.batches import Batch, Batcher, counted_mask, strided_windows
from denoiserec.errors import ConfigError, TrainingError
from denoiserec.models.base import ModelOutput, SequentialRecommender, check_objective
from denoiserec.nn.losses import Objective, uniform_negatives
from denoiserec.nn.schedules import TrainingProgress
from denoiserec.protocols import Split
from denoiserec.runfolder import RunFolder
from denoiserec.train import distributed
from denoiserec.train.atjt import make_reweighter
from denoiserec.train.checkpoint import load_checkpoint, load_weights_into, save_checkpoint
from denoiserec.train.evaluate import Evaluation, evaluate
from denoiserec.train.order import length_batches, random_batches
from denoiserec.train.progress import EpochHeartbeat
from denoiserec.train.settings import TrainConfig
from denoiserec.train.stages import apply_stage


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed every RNG once per run. Deterministic kernels are only requested on CUDA: the CPU
    kernels used here are already repeatable, and the deterministic CPU paths (e.g. the
    embedding backward) are about 3x slower."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    return distributed.local_device(torch.device(name))  # this rank's GPU under torchrun


@dataclass
class Instances:
    """Training instances: ``(users, ends)`` prefixes or windows; for windows, ``counted`` is
    how many of each window's last targets count (see ``data.batches.strided_windows``)."""

    users: torch.Tensor
    ends: torch.Tensor
    counted: torch.Tensor | None


@dataclass
class TrainState:
    """What ``last.pt`` restores: where the run is and what it has seen."""

    epoch: int = 0
    best_epoch: int = -1
    best_value: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def since_best(self) -> int:
        """Evaluations since the last improvement."""
        return self.epoch - 1 - self.best_epoch

    def improves(self, value: float) -> bool:
        """RecBole's rule: 4-decimal value >= best (ties go to the later epoch)."""
        return round(value, 4) >= self.best_value


def prepare_torch(train: TrainConfig) -> torch.device:
    """Threads, device and seeds of a run: call once, before the model is built."""
    if train.threads > 0:
        torch.set_num_threads(train.threads)
    device = resolve_device(train.device)
    seed_everything(train.seed, train.deterministic, device)
    return device


class Trainer:
    """Trains ``model`` on ``split`` with the ``train`` settings; checkpoints go to ``run_dir``.

    The model is built by the caller after :func:`prepare_torch` (so that its initialisation
    draws from the seeded generator); the trainer only needs ``max_len`` of the data settings.
    """

    def __init__(self, model: SequentialRecommender, split: Split, train: TrainConfig,
                 max_len: int, run_dir: Path) -> None:
        self.train_config = train
        self.split = split
        self.run_dir = run_dir
        self.folder = RunFolder(run_dir)  # where checkpoints go (names: runfolder.py)
        self.max_len = max_len
        self.device = resolve_device(train.device)
        if train.instances == "window" and not model.window_training:
            raise ConfigError(f"train.instances=window: {model.window_refusal or model.name}")
        check_objective(model, train.loss, train.label_smoothing, train.n_negatives)
        if train.window_stride > max_len:
            raise ConfigError(f"train.window_stride ({train.window_stride}) must be at most "
                              f"data.max_len ({max_len})")
        self.model = model.to(self.device)
        self.ranks = distributed.current()  # torchrun's ranks (train/distributed.py), or one
        self.data_parallel = distributed.data_parallel(self.model, self.ranks)
        self.objective = Objective(train.loss, train.n_negatives, train.label_smoothing)
        self.batcher = Batcher(split.log, max_len, self.device)
        self.negatives = (None if split.train_negatives is None  # ctr: fixed, paired
                          else torch.as_tensor(split.train_negatives, device=self.device))
        self.eval_batcher = (self.batcher if split.eval_log is None
                             else Batcher(split.eval_log, max_len, self.device))
        self.reweighter = make_reweighter(train.reweight, train.atjt, split, self.batcher,
                                          train.batch_size, train.seed, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train.lr,
                                          weight_decay=train.weight_decay)
        warmup = max(train.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        self.state = TrainState()
        self.instances = self._instances(0)

    # -- instances and batches ---------------------------------------------------------------
    def _instances(self, epoch: int) -> Instances:
        """The epoch's training instances (prefix instances are the same every epoch)."""
        split, train = self.split, self.train_config
        if train.instances == "prefix":
            users, ends, counted = split.train_users, split.train_targets, None
        else:
            rng = (np.random.default_rng([train.seed, epoch]) if train.window_offsets
                   else None)
            # next-item windows tile the targets (rows start+1 ..); Cloze windows the items
            first = split.train_starts - (self.model.window_training == "cloze")
            users, ends, counted = strided_windows(
                first, split.train_end, self.max_len, train.window_stride or self.max_len, rng)
        return Instances(*(None if a is None else torch.as_tensor(a, device=self.device)
                           for a in (users, ends, counted)))

    def _batch(self, index: torch.Tensor) -> Batch:
        instances = self.instances
        users, ends = instances.users[index], instances.ends[index]
        if instances.counted is None:
            batch = self.batcher.prefix(users, ends)
        elif self.model.window_training == "cloze":  # the whole window; the model masks it
            batch = self.batcher.history(users, ends)
        else:  # a target counts in one window only: zero (= no target) elsewhere
            batch = self.batcher.window(users, ends)
            counted = counted_mask(batch.lengths, instances.counted[index],
                                   batch.targets.shape[1])
            batch = replace(batch, targets=torch.where(counted, batch.targets, 0))
        if self.negatives is not None and instances.counted is None:
            batch = batch.with_negatives(self.negatives[index])
        if self.objective.kind == "bpr":
            batch = batch.with_negatives(uniform_negatives(
                batch.targets, self.split.log.n_items, self.objective.n_negatives))
        return batch

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's batches of instance indices (``train.batch_order``)."""
        train, instances = self.train_config, self.instances
        order = train.batch_order
        if order == "auto":
            order = "length" if instances.counted is None else "random"
        if order == "random":
            return random_batches(len(instances.users), train.batch_size, train.seed, epoch)
        return length_batches(self._input_lengths(), train.batch_size, train.seed, epoch)

    def _input_lengths(self) -> torch.Tensor:
        """(n,) input length of every instance, on the CPU (the batcher's arithmetic)."""
        instances = self.instances
        ends = instances.ends.cpu()
        if instances.counted is not None and self.model.window_training != "cloze":
            ends = ends - 1  # a next-item window's input stops before its last target
        starts = self.batcher.starts[instances.users].cpu()
        return torch.clamp(ends - starts, max=self.max_len)

    # -- one epoch ---------------------------------------------------------------------------
    def _loss(self, batch: Batch, progress: TrainingProgress) -> ModelOutput:
        """The model's loss on ``batch``, through DistributedDataParallel under torchrun."""
        if self.data_parallel is None:
            return self.model.loss(batch, self.objective, progress)
        return self.data_parallel(batch, self.objective, progress)

    def train_epoch(self, epoch: int, max_batches: int | None = None,
                    on_batch: Callable[[int, ModelOutput], None] | None = None,
                    ) -> tuple[float, dict[str, float]]:
        """One epoch (or its first ``max_batches`` batches): mean loss and mean loss parts;
        ``on_batch(step, output)`` after every optimiser step (diagnostics). The model learns
        where training is only from the :class:`TrainingProgress` passed to its ``loss``."""
        self.model.train()
        stage = self.model.training_stage(epoch)  # staged models (END4Rec) only
        if stage is not None:
            apply_stage(self.model, stage, epoch, self.optimizer, self.scheduler)
        if self.train_config.window_offsets:
            self.instances = self._instances(epoch)
        batches = self._batches(epoch)
        steps_per_epoch = len(batches)
        total, parts_total, count = 0.0, {}, 0
        shown = self.train_config.progress and self.ranks.is_main  # one process reports
        bar = tqdm(batches[:max_batches], desc=f"epoch {epoch}", leave=False, unit="batch",
                   mininterval=1.0, disable=None if shown else True)  # None: tty only
        beat = EpochHeartbeat(epoch, len(batches[:max_batches]), self.train_config,
                              terminal=not bar.disable, shown=shown)
        for step, index in enumerate(bar):
            progress = TrainingProgress(epoch=epoch, batch=step, steps_per_epoch=steps_per_epoch,
                                        stage=stage)
            index, empty = distributed.shard(index, self.ranks)
            batch = self._batch(index.to(self.device))
            output = self.reweighter.reweight(  # per-sample weights (train.reweight)
                batch, self._loss(batch, progress), progress)
            output, loss_value, factor = distributed.reduce_loss(  # the global batch's
                output, batch, empty, self.ranks, self.device)  # mean loss and parts
            if not math.isfinite(loss_value):
                raise TrainingError(f"loss became {loss_value} at epoch {epoch}, batch {step}; "
                                    "lower train.lr or set train.clip_grad_norm")
            self.optimizer.zero_grad(set_to_none=True)
            (output.loss * factor if self.ranks.active else output.loss).backward()
            norm = float(torch.nn.utils.clip_grad_norm_(  # clips only when clip_grad_norm > 0
                self.model.parameters(), self.train_config.clip_grad_norm or math.inf))
            if not math.isfinite(norm):
                raise TrainingError(f"gradient became {norm} at epoch {epoch}, batch {step} "
                                    "(finite loss); lower train.lr or set train.clip_grad_norm")
            self.optimizer.step()
            self.reweighter.step()  # the weighting's own parameters, if any
            self.scheduler.step()
            if on_batch is not None:
                on_batch(step, replace(output, loss=torch.tensor(loss_value))
                         if self.ranks.active else output)
            total += loss_value
            for name, value in output.parts.items():
                parts_total[name] = parts_total.get(name, 0.0) + value
            count += 1
            beat.tick(step, total / count)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
        return total / count, {name: value / count for name, value in parts_total.items()}

    def evaluate(self, which: str) -> Evaluation:
        eval_set = self.split.valid if which == "valid" else self.split.test
        run = partial(evaluate, self.model, self.eval_batcher, protocol=self.split.protocol,
                      batch_size=self.train_config.eval_batch_size,
                      item_chunk=self.train_config.eval_item_chunk)
        return distributed.sharded_evaluation(run, eval_set, self.split.protocol.name,
                                              self.ranks)

    # -- checkpoints -------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"model": self.model.name, "n_items": self.split.log.n_items,
                "max_len": self.max_len}

    def save_last(self) -> None:
        rngs = distributed.gather_objects(self._rng_state(), self.ranks)  # every rank's draws
        if not self.ranks.is_main:  # rank 0 writes for all
            return
        save_checkpoint(self.folder.checkpoint("last"), {
            "meta": self.meta(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch, "best_epoch": self.state.best_epoch,
            "best_value": self.state.best_value, "history": self.state.history,
            "torch_rng": torch.get_rng_state(), "reweight": self.reweighter.state_dict(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rank_rngs": rngs if self.ranks.active else [],
        })

    def _rng_state(self) -> dict[str, Any]:
        """This process's generators (under torchrun each rank's dropout draws its own)."""
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def resume(self) -> bool:
        """Restore ``last.pt`` if the run directory has one; True when resumed."""
        path = self.folder.checkpoint("last")
        data = distributed.read_on_main(path, self.ranks)  # rank 0 reads it for every rank
        if data is None:
            return False
        state = load_checkpoint(path, expect=self.meta(), data=data)
        load_weights_into(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.reweighter.load_state_dict(state.get("reweight", {}))
        self.state = TrainState(epoch=state["epoch"], best_epoch=state["best_epoch"],
                                best_value=state["best_value"], history=state["history"])
        rngs = state.get("rank_rngs") or []
        mine = (rngs[self.ranks.rank] if len(rngs) == self.ranks.world
                else {"torch": state["torch_rng"], "cuda": state["cuda_rng"]})
        torch.set_rng_state(mine["torch"])
        if mine["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(mine["cuda"])
        return True

    def load_weights(self, checkpoint: str = "best") -> None:
        """Load the weights of ``best.pt`` (or of ``last.pt``, the final epoch's, when asked)."""
        path = self.folder.checkpoint(checkpoint)
        state = load_checkpoint(path, expect=self.meta(),
                                data=distributed.read_on_main(path, self.ranks))
        load_weights_into(self.model, state["model"], path)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, on_epoch: Any = None) -> None:
        """Train until ``train.epochs`` or early stopping; ``on_epoch(state)`` after each.

        Prints one line per epoch (epoch from 0, losses, valid metric, best so far, seconds).
        """
        train = self.train_config
        metric = train.valid_metric
        while self.state.epoch < train.epochs and self.state.since_best <= train.patience:
            epoch = self.state.epoch
            started = time.perf_counter()
            loss, parts = self.train_epoch(epoch)
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            valid = self.evaluate("valid")
            valid_seconds = time.perf_counter() - started
            recent = [e["valid"][metric] for e in self.state.history[-train.selection_window + 1:]
                      ] if train.selection_window > 1 else []
            value = float(np.mean([*recent, valid.metrics[metric]]))  # trailing mean
            stage = self.model.training_stage(epoch)  # staged models (END4Rec)
            self.state.history.append({
                "epoch": epoch, "train_loss": loss, "loss_parts": parts,
                "train_seconds": train_seconds, "valid_seconds": valid_seconds,
                "valid": valid.metrics, "selection_value": value,
                "stage": stage.number if stage is not None else None})
            if self.state.improves(value):
                self.state.best_value, self.state.best_epoch = round(value, 4), epoch
                if self.ranks.is_main:
                    save_checkpoint(self.folder.checkpoint("best"),
                                    {"meta": self.meta(), "model": self.model.state_dict()})
            self.state.epoch = epoch + 1
            self.save_last()
            if self.ranks.is_main:
                print(self.epoch_line(), flush=True)
            if on_epoch is not None:
                on_epoch(self.state)

    def epoch_line(self) -> str:
        """``epoch 3/200  loss 7.1234 (rec 7.1234)  valid ndcg@10 0.0612  best 0.0620 @ 2
        12.3 s + 0.2 s`` for the last recorded epoch (epochs count from 0)."""
        last, train = self.state.history[-1], self.train_config
        parts = "  ".join(f"{k} {v:.4g}" for k, v in last["loss_parts"].items())
        smoothed = (f" (mean of {train.selection_window}: {last['selection_value']:.4f})"
                    if train.selection_window > 1 else "")
        stage = f"  stage {last['stage']}" if last.get("stage") is not None else ""
        return (f"epoch {last['epoch']}/{train.epochs - 1}{stage}  loss {last['train_loss']:.4f}"
                f"  [{parts}]  valid {train.valid_metric} "
                f"{last['valid'][train.valid_metric]:.4f}{smoothed}  best "
                f"{self.state.best_value:.4f} @ epoch {self.state.best_epoch}  "
                f"{last['train_seconds']:.1f} s + {last['valid_seconds']:.1f} s")

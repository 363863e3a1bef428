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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch, Batcher, window_ends
from denoiserec.errors import ConfigError, TrainingError
from denoiserec.metrics import DEFAULT_KS, METRIC_NAMES
from denoiserec.models.base import SequentialRecommender
from denoiserec.nn.losses import LOSSES, Objective, uniform_negatives
from denoiserec.protocols import Split
from denoiserec.train.checkpoint import load_checkpoint, save_checkpoint
from denoiserec.train.evaluate import Evaluation, evaluate

CHECKPOINTS = ("best", "last")  # the run directory's weights: best valid epoch, final epoch
INSTANCES = ("prefix", "window")
DEVICES = ("auto", "cpu", "cuda")
VALID_METRICS = tuple(f"{name}@{k}" for name in METRIC_NAMES for k in DEFAULT_KS)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (one loop for every model)."""

    epochs: int = 200
    """Maximum number of epochs."""
    batch_size: int = 256
    """Training instances per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay (L2, as ``torch.optim.Adam``)."""
    clip_grad_norm: float = 0.0
    """Clip the gradient norm to this value; 0 = off (RecBole default)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many batches, then constant."""
    loss: str = "ce"
    """``ce`` (softmax over all items) or ``bpr`` (with ``n_negatives`` sampled negatives)."""
    n_negatives: int = 1
    """BPR only: uniformly sampled negatives per positive."""
    instances: str = "prefix"
    """``prefix`` = every prefix is an instance (RecBole); ``window`` = all positions of a
    window at once (causal models; the original SASRec's training)."""
    valid_metric: str = "ndcg@10"
    """Early stopping and model selection metric, on the validation set."""
    patience: int = 10
    """Stop once more than this many evaluations brought no improvement (RecBole
    ``stopping_step``, same rule)."""
    eval_batch_size: int = 4096
    """Instances per evaluation batch."""
    seed: int = 2020
    """Seed of parameters, shuffling, dropout and sampling."""
    deterministic: bool = True
    """Request deterministic CUDA kernels (CPU runs are repeatable without it)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    threads: int = 0
    """CPU threads for torch; 0 = torch's default."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        check_choice("train.instances", self.instances, INSTANCES)
        check_choice("train.loss", self.loss, LOSSES)
        check_choice("train.valid_metric", self.valid_metric, VALID_METRICS)
        check_choice("train.device", self.device, DEVICES)
        check_range("train.lr", self.lr, 0, low_open=True)
        check_range("train.weight_decay", self.weight_decay, 0)
        check_range("train.clip_grad_norm", self.clip_grad_norm, 0)
        for key in ("epochs", "batch_size", "n_negatives", "eval_batch_size", "seed"):
            check_range(f"train.{key}", getattr(self, key), 1)
        for key in ("warmup_steps", "patience", "threads"):
            check_range(f"train.{key}", getattr(self, key), 0)


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
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


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
        self.max_len = max_len
        self.device = resolve_device(train.device)
        if train.instances == "window" and not model.causal:
            raise ConfigError(f"train.instances=window needs a causal model; {model.name} is not")
        self.model = model.to(self.device)
        self.objective = Objective(train.loss, train.n_negatives)
        self.batcher = Batcher(split.log, max_len, self.device)
        self.eval_batcher = (self.batcher if split.eval_log is None
                             else Batcher(split.eval_log, max_len, self.device))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train.lr,
                                          weight_decay=train.weight_decay)
        warmup = max(train.warmup_steps, 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        self.users, self.ends = self._instances()
        self.state = TrainState()

    # -- instances and batches ---------------------------------------------------------------
    def _instances(self) -> tuple[torch.Tensor, torch.Tensor]:
        split = self.split
        if self.train_config.instances == "window":
            users, ends = window_ends(split.train_starts, split.train_end,
                                      self.max_len)
        else:
            users, ends = split.train_users, split.train_targets
        return (torch.as_tensor(users, device=self.device),
                torch.as_tensor(ends, device=self.device))

    def _batch(self, index: torch.Tensor) -> Batch:
        users, ends = self.users[index], self.ends[index]
        if self.train_config.instances == "window":
            batch = self.batcher.window(users, ends)
        else:
            batch = self.batcher.prefix(users, ends)
        if self.objective.kind == "bpr":
            batch = batch.with_negatives(uniform_negatives(
                batch.targets, self.split.log.n_items, self.objective.n_negatives))
        return batch

    def _order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.train_config.seed * 100_003 + epoch)
        return torch.randperm(len(self.users), generator=generator).to(self.device)

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        self.model.train()
        order = self._order(epoch)
        size = self.train_config.batch_size
        total, parts_total, count = 0.0, {}, 0
        starts = range(0, len(order), size)
        bar = tqdm(starts, desc=f"epoch {epoch}", leave=False, unit="batch", mininterval=1.0,
                   disable=None if self.train_config.progress else True)  # None: tty only
        for step, start in enumerate(bar):
            self.model.on_batch_start(epoch, epoch * len(starts) + step)
            batch = self._batch(order[start:start + size])
            output = self.model.loss(batch, self.objective)
            loss_value = float(output.loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(f"loss became {loss_value} at epoch {epoch}, batch {step}; "
                                    "lower train.lr or set train.clip_grad_norm")
            self.optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(  # clips only when clip_grad_norm > 0
                self.model.parameters(), self.train_config.clip_grad_norm or math.inf))
            if not math.isfinite(norm):
                raise TrainingError(f"gradient became {norm} at epoch {epoch}, batch {step} "
                                    "(finite loss); lower train.lr or set train.clip_grad_norm")
            self.optimizer.step()
            self.scheduler.step()
            total += loss_value
            for name, value in output.parts.items():
                parts_total[name] = parts_total.get(name, 0.0) + value
            count += 1
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
        return total / count, {name: value / count for name, value in parts_total.items()}

    def evaluate(self, which: str) -> Evaluation:
        eval_set = self.split.valid if which == "valid" else self.split.test
        return evaluate(self.model, self.eval_batcher, eval_set, self.split.protocol,
                        self.train_config.eval_batch_size)

    # -- checkpoints -------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"model": self.model.name, "n_items": self.split.log.n_items,
                "max_len": self.max_len}

    def save_last(self) -> None:
        save_checkpoint(self.run_dir / "last.pt", {
            "meta": self.meta(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch, "best_epoch": self.state.best_epoch,
            "best_value": self.state.best_value, "history": self.state.history,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        })

    def resume(self) -> bool:
        """Restore ``last.pt`` if the run directory has one; True when resumed."""
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return False
        state = load_checkpoint(path, expect=self.meta())
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = TrainState(epoch=state["epoch"], best_epoch=state["best_epoch"],
                                best_value=state["best_value"], history=state["history"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return True

    def load_weights(self, checkpoint: str = "best") -> None:
        """Load the weights of ``best.pt`` (or of ``last.pt``, the final epoch's, when asked)."""
        if checkpoint not in CHECKPOINTS:
            choices = " or ".join(CHECKPOINTS)
            raise ConfigError(f"checkpoint '{checkpoint}' unknown (choose {choices})")
        state = load_checkpoint(self.run_dir / f"{checkpoint}.pt", expect=self.meta())
        self.model.load_state_dict(state["model"])

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, on_epoch: Any = None) -> None:
        """Train until ``train.epochs`` or early stopping; ``on_epoch(state)`` after each."""
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
            value = valid.metrics[metric]
            self.state.history.append({
                "epoch": epoch, "train_loss": loss, "loss_parts": parts,
                "train_seconds": train_seconds, "valid_seconds": valid_seconds,
                "valid": valid.metrics})
            if self.state.improves(value):
                self.state.best_value, self.state.best_epoch = round(value, 4), epoch
                save_checkpoint(self.run_dir / "best.pt",
                                {"meta": self.meta(), "model": self.model.state_dict()})
            self.state.epoch = epoch + 1
            self.save_last()
            if on_epoch is not None:
                on_epoch(self.state)

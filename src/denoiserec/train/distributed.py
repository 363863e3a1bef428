"""Data-parallel training under ``torchrun``: one process per rank, DistributedDataParallel.

``torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint HOST:PORT] -m denoiserec.cli train
...`` runs the same command as one process; the process group (gloo on CPU, NCCL on CUDA) is
set up from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

What a rank does, so that N processes train exactly what one process trains at the same
``train.batch_size`` (the *global* batch):

* every rank draws the same epoch permutation and cuts the same global batches; rank ``r``
  takes instances ``r, r + N, ...`` of each (its shard);
* its loss is scaled by ``N * n_r / n`` before the backward pass (``n_r`` its share of the
  batch's ``n`` targets), so DDP's gradient average is the gradient of the global batch's
  mean loss even when the last batch does not divide evenly; the logged loss is the
  all-reduced global mean;
* evaluation instances are sharded the same way, each rank ranks its shard, and the ranks are
  gathered so that every rank computes the same metrics (and takes the same early-stopping
  decision);
* rank 0 alone writes checkpoints, metrics and the lock; checkpoints are read by rank 0 and
  broadcast, so ranks on other machines need no shared file system.

The same numbers as one process (within float summation order) need the random draws of the
ranks to agree with one process's: true with dropout off for ``ce`` and ``sampled`` (every rank
draws the batch's shared negatives from the same generator state); per-instance draws (BPR
negatives, dropout) differ. Multi-term models' extra losses are scaled by the same factor.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from denoiserec.data.batches import Batch
from denoiserec.metrics import DEFAULT_KS, metric_values, summarize
from denoiserec.models.base import ModelOutput, SequentialRecommender
from denoiserec.nn.losses import Objective
from denoiserec.nn.schedules import TrainingProgress
from denoiserec.protocols import EvalSet
from denoiserec.train.evaluate import Evaluation

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


def world_size() -> int:
    """Processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def local_device(device: torch.device) -> torch.device:
    """``cuda`` becomes this rank's GPU (``LOCAL_RANK``) under torchrun."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start(device: torch.device) -> Ranks:
    """Join torchrun's process group (once per process); a single process joins nothing."""
    if world_size() == 1:
        return Ranks()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_device(device))
        dist.init_process_group(BACKENDS[device.type])
    return Ranks(dist.get_rank(), dist.get_world_size())


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> Ranks:
    """The process group joined by :func:`start`, or a single process."""
    if dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def shard(index: torch.Tensor, ranks: Ranks) -> tuple[torch.Tensor, bool]:
    """This rank's instances of a global batch, and whether it has none.

    A rank left without instances (a last batch smaller than the world) computes the loss of
    one instance with weight 0, so that every rank takes part in the gradient average.
    """
    if not ranks.active:
        return index, False
    local = index[ranks.rank::ranks.world]
    return (index[:1], True) if len(local) == 0 else (local, False)


def reduce_loss(output: ModelOutput, batch: Batch, empty: bool, ranks: Ranks,
                device: torch.device) -> tuple[ModelOutput, float, float]:
    """This rank's output with its logged parts replaced by the global batch's, the global
    batch's mean loss, and this rank's loss factor ``N * n_r / n`` (``n_r`` counts the
    shard's targets; rows for Cloze batches, whose targets the model draws itself)."""
    value = float(output.loss.detach())
    if not ranks.active:
        return output, value, 1.0
    weight = 0.0 if empty else float(int((batch.targets != 0).sum()) or len(batch))
    names = sorted(output.parts)
    total = torch.tensor([weight, value * weight, *(output.parts[n] * weight for n in names)],
                         dtype=torch.float64, device=device)
    dist.all_reduce(total)
    means = (total[1:] / total[0]).tolist()
    parts = dict(zip(names, means[1:], strict=True))
    return replace(output, parts=parts), means[0], ranks.world * weight / float(total[0])


class _Loss(nn.Module):
    """The model's ``loss`` as a ``forward``, the call DDP synchronises gradients through."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: object, objective: Objective,
                progress: TrainingProgress) -> ModelOutput:
        return self.model.loss(batch, objective, progress)


def data_parallel(model: SequentialRecommender, ranks: Ranks) -> nn.Module | None:
    """``model.loss`` under DistributedDataParallel when there are ranks (call it with the
    loss's arguments), else None: the trainer then calls ``model.loss`` itself."""
    if not ranks.active:
        return None
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        _Loss(model), device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=True)  # staged models leave parts unused in some epochs


def sharded_evaluation(evaluate: Callable[[EvalSet], Evaluation], eval_set: EvalSet,
                       protocol: str, ranks: Ranks) -> Evaluation:
    """Each rank ranks its shard; the gathered ranks give every rank the same metrics."""
    if not ranks.active or protocol == "ctr":  # ctr metrics are not functions of ranks alone
        return evaluate(eval_set)
    part = slice(ranks.rank, None, ranks.world)
    local = EvalSet(users=eval_set.users[part], targets=eval_set.targets[part],
                    negatives=None if eval_set.negatives is None else eval_set.negatives[part])
    shards: list[np.ndarray | None] = [None] * ranks.world
    mine = evaluate(local).ranks if len(local.users) else np.empty(0, dtype=np.int64)
    dist.all_gather_object(shards, mine)  # a set smaller than the ranks leaves some empty
    ranks_all = np.empty(len(eval_set), dtype=np.int64)
    for rank, values in enumerate(shards):
        ranks_all[rank::ranks.world] = values
    metrics = summarize(metric_values(torch.as_tensor(ranks_all), DEFAULT_KS))
    return Evaluation(metrics=metrics, ranks=ranks_all, users=eval_set.users, protocol=protocol)


def gather_objects(value: object, ranks: Ranks) -> list[object]:
    """Every rank's ``value``, in rank order (``[value]`` for a single process)."""
    if not ranks.active:
        return [value]
    values: list[object] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def agree(value: object, ranks: Ranks) -> object:
    """Rank 0's ``value`` on every rank."""
    if not ranks.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def read_on_main(path: os.PathLike[str], ranks: Ranks) -> io.BytesIO | None:
    """The bytes of ``path`` as rank 0 reads them (None when rank 0 has no such file)."""
    data = None
    if ranks.is_main and os.path.isfile(path):
        with open(path, "rb") as handle:
            data = handle.read()
    data = agree(data, ranks)
    return None if data is None else io.BytesIO(data)

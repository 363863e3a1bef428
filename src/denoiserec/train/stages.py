"""Staged training through the one trainer (END4Rec's guided 4-stage training, spec §4).

A model that trains its parameters in stages returns a ``TrainingStage`` from
``training_stage(epoch)`` (``nn/schedules.py``; a pure function of the epoch) and names its
groups in ``parameter_groups()``. At the start of every epoch the trainer asks for the stage,
calls :func:`apply_stage` with it and passes it to ``loss`` in the ``TrainingProgress``: the
stage's groups train, every other parameter has ``requires_grad`` off, so it gets no gradient
and Adam skips it (bit-identical, weight decay included); at a stage's first epoch the Adam
state of its parameters starts afresh (a new optimiser per stage, as the reference); the
learning rate is scaled by the stage's ``lr_scale``. Everything is a function of the epoch,
so a resumed run takes the same steps. Models without stages (``training_stage`` returns None)
are left alone.
"""

from __future__ import annotations

import torch

from denoiserec.models.base import SequentialRecommender
from denoiserec.nn.schedules import TrainingStage


def apply_stage(model: SequentialRecommender, stage: TrainingStage, epoch: int,
                optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Train only ``stage``'s parameter groups of ``model`` in ``epoch`` (see the module
    docstring)."""
    groups = model.parameter_groups()
    training = {id(p) for name in stage.groups for p in groups[name]}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in training)
        if epoch == stage.first_epoch and id(parameter) in training:
            optimizer.state.pop(parameter, None)  # a fresh Adam state for the stage
    scheduler.base_lrs = [group["initial_lr"] * stage.lr_scale
                          for group in optimizer.param_groups]
    factor = scheduler.lr_lambdas[0](max(scheduler.last_epoch, 0))
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * factor

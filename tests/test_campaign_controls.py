"""Each denoiser of the campaign against its own control: the control must be the same model
with its denoising switched off (the same encoder, backbone, width, objective, warm-up and
training settings), so that "minus control" measures the denoising and nothing else."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import campaign
from benchmarks.campaign_report import CONTROLS

DENOISING_SWITCHES = {
    "msdccl": {"soft_weighting", "loss_lambda", "use_hard_branch", "use_contrastive"},
    "mgsd-wss": {"use_item_level", "use_interest_level", "ws_weight", "head_gradient"},
}


def _settings(row: str, dataset: str) -> tuple[dict, dict]:
    config = campaign.row_config(row, dataset, 2020, [])
    model = {f.name: getattr(config.model, f.name) for f in dataclasses.fields(config.model)}
    return model, dataclasses.asdict(config.train)


@pytest.mark.parametrize("dataset", ["ml-100k", "beauty"])
@pytest.mark.parametrize("denoiser", ["msdccl", "mgsd-wss"])
def test_a_control_differs_from_its_denoiser_only_in_the_denoising(denoiser, dataset):
    control = CONTROLS[denoiser]
    model, train = _settings(denoiser, dataset)
    control_model, control_train = _settings(control, dataset)
    assert control_model["name"] == model["name"]
    differing = {key for key in model if model[key] != control_model[key]}
    assert differing and differing <= DENOISING_SWITCHES[denoiser]
    assert control_train == train  # warm-up, clipping, weight decay, instances, patience


"""END4Rec's comparison through ``denoiserec compare`` (issue 17; ``benchmarks/converged.sh
retailrocket``): the ``target`` protocol's settings reach every cell, SASRec's behaviour
embedding is scoped to its cells, and END4Rec's guided stages (spec §4) run inside a cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from denoiserec.cli import build_parser
from denoiserec.compare import compare

BEHAVIOURS = ("buy", "cart", "pv")


def _write_log(path: Path, n_users: int = 40, n_items: int = 25) -> Path:
    """A multi-behaviour CSV: every user 12-20 rows, about a third of them buys."""
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp,behavior"]
    for user in range(n_users):
        for step in range(int(rng.integers(12, 21))):
            behaviour = BEHAVIOURS[rng.choice(3, p=[0.35, 0.2, 0.45])]
            lines.append(f"u{user},i{rng.integers(1, n_items + 1)},{step},{behaviour}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("end4rec-compare")
    output = folder / "out"
    overrides = ["protocol.target_behaviour=buy", "protocol.mask_history=true",
                 "protocol.train_targets=all", "max_len=12", "batch_size=32", "epochs=4",
                 "train.patience=10", "train.progress=false", "train.threads=1",
                 "model.hidden_size=16", "end4rec:model.stage_epochs=[1, 1, 1]",
                 "sasrec:model.behaviour_embedding=true", "sasrec:model.inner_size=32"]
    compare(["end4rec", "sasrec"], str(_write_log(folder / "log.csv")), "target", [0.0],
            "insert", 1, overrides, output, poll_seconds=0.1)
    return output


def _cell(output: Path, model: str) -> Path:
    (cell,) = (output / "cells").glob(f"{model}-noise0-seed*")
    return cell


def test_the_protocol_settings_reach_every_cell(comparison: Path):
    for model in ("end4rec", "sasrec"):
        cell = _cell(comparison, model)
        protocol = yaml.safe_load((cell / "config.yaml").read_text())["protocol"]
        assert (protocol["name"], protocol["target_behaviour"]) == ("target", "buy")
        assert protocol["mask_history"] is True and protocol["train_targets"] == "all"
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["split_statistics"]["protocol"] == "target"
        assert metrics["split_statistics"]["target_behaviour"] == "buy"
    sasrec = yaml.safe_load((_cell(comparison, "sasrec") / "config.yaml").read_text())
    end4rec = yaml.safe_load((_cell(comparison, "end4rec") / "config.yaml").read_text())
    assert sasrec["model"]["behaviour_embedding"] is True
    assert end4rec["model"]["stage_epochs"] == [1, 1, 1]
    summary = json.loads((comparison / "summary.json").read_text())
    assert summary["protocol"] == "target"
    sasrec_row = next(r for r in summary["summary"] if r["model"] == "sasrec")
    assert 0 <= sasrec_row["p_vs_first"] <= 1  # paired test against END4Rec


def test_the_guided_stages_run_inside_a_cell(comparison: Path):
    """Each stage's loss terms (spec §4 [REC]): stage 1 L_rec + R, stages 2-3 L_rec + CL,
    stage 4 everything; one epoch per stage 1-3 here."""
    epochs = json.loads((_cell(comparison, "end4rec") / "metrics.json").read_text())["epochs"]
    parts = [set(epoch["loss_parts"]) for epoch in epochs]
    assert len(parts) == 4
    assert [("reg" in p, "cl" in p) for p in parts] == [(True, False), (False, True),
                                                       (False, True), (True, True)]
    assert [epoch["stage"] for epoch in epochs] == [1, 2, 3, 4]  # recorded per epoch
    sasrec = json.loads((_cell(comparison, "sasrec") / "metrics.json").read_text())["epochs"]
    assert {epoch["stage"] for epoch in sasrec} == {None}


def test_the_command_line_compares_under_target():
    args = build_parser().parse_args(["compare", "--models", "end4rec,sasrec", "--dataset",
                                      "retailrocket", "--protocol", "target"])
    assert args.protocol == "target"

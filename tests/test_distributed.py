"""Data-parallel training (train/distributed.py): 2 CPU processes under torchrun train what one
process trains at the same global batch; a 2-process run resumes; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from denoiserec.protocols import EvalSet
from denoiserec.train import distributed
from denoiserec.train.evaluate import Evaluation

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 300


def run_worker(tmp_path: Path, name: str, processes: int, *extra: str) -> dict:
    """The worker's report; ``processes`` > 1 under torchrun (gloo, CPU)."""
    output, report = tmp_path / name, tmp_path / f"{name}-{processes}.json"
    command = [sys.executable, str(WORKER), str(output), str(report), *extra]
    if processes > 1:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    return run_worker(tmp_path_factory.mktemp("single"), "run", 1)


def assert_same_training(found: dict, expected: dict) -> None:
    assert len(found["losses"]) == len(expected["losses"]) > 10
    np.testing.assert_allclose(found["losses"], expected["losses"], rtol=1e-5)
    for split in ("valid", "test"):
        assert found[split] == pytest.approx(expected[split], abs=1e-6)


def test_two_processes_train_what_one_process_trains(tmp_path, one_process):
    # the global batch (51) splits 26 / 25, and the last batch unevenly too
    two = run_worker(tmp_path, "run", 2)
    assert_same_training(two, one_process)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["best.pt", "config.yaml", "curve.png", "fingerprint.json", "last.pt",
                     "metrics.json", "test_ranks.csv"]  # written once, by rank 0; lock gone
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["processes"] == 2


def test_two_processes_resume_where_they_stopped(tmp_path, one_process):
    first = run_worker(tmp_path, "run", 2, "train.epochs=1")
    resumed = run_worker(tmp_path, "run", 2)  # epochs=2: the second epoch, after a resume
    both = {**resumed, "losses": first["losses"] + resumed["losses"]}
    assert_same_training(both, one_process)


def test_two_processes_with_dropout_resume_what_they_would_have_trained(tmp_path):
    """With dropout on, each rank draws its own masks (its shard's size differs): the checkpoint
    keeps every rank's generator, so a resumed 2-process run repeats the uninterrupted one."""
    dropout = ("model.hidden_dropout=0.3", "model.attn_dropout=0.3")
    whole = run_worker(tmp_path, "whole", 2, *dropout)
    first = run_worker(tmp_path, "split", 2, *dropout, "train.epochs=1")
    resumed = run_worker(tmp_path, "split", 2, *dropout)
    assert_same_training({**resumed, "losses": first["losses"] + resumed["losses"]}, whole)


def test_shards_cover_each_global_batch_once():
    index = torch.arange(11)
    shards = [distributed.shard(index, distributed.Ranks(rank, 3)) for rank in range(3)]
    assert sorted(torch.cat([local for local, _ in shards]).tolist()) == list(range(11))
    assert not any(empty for _, empty in shards)
    local, empty = distributed.shard(torch.arange(2), distributed.Ranks(2, 3))
    assert empty and len(local) == 1  # a rank without instances still takes part, weight 0


def _gather_one_instance(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        def evaluate(part: EvalSet) -> Evaluation:  # the real one cannot rank an empty set
            assert len(part.users), "evaluate called on an empty shard"
            return Evaluation(metrics={}, ranks=part.targets * 0 + 4, users=part.users,
                              protocol="recbole")

        one = EvalSet(users=np.array([3]), targets=np.array([9]))
        found = distributed.sharded_evaluation(evaluate, one, "recbole",
                                               distributed.Ranks(rank, world))
        Path(f"{out}.{rank}").write_text(json.dumps(found.ranks.tolist()))
    finally:
        torch.distributed.destroy_process_group()


def test_an_evaluation_set_smaller_than_the_ranks_is_gathered(tmp_path):
    """Rank 1's shard of a one-instance set is empty: it ranks nothing, and both ranks get the
    one rank."""
    port = 29500 + os.getpid() % 1000
    torch.multiprocessing.spawn(_gather_one_instance, args=(2, port, str(tmp_path / "r")),
                                nprocs=2)
    assert [json.loads((tmp_path / f"r.{rank}").read_text()) for rank in (0, 1)] == [[4], [4]]

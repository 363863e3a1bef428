"""END4Rec: the miner (gradients, order, regulariser), the hard mask, the exact decomposition,
and the guided stages through the one trainer (each stage changes only its parameter group)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.models import build_model
from denoiserec.models.end4rec import END4RecConfig
from denoiserec.nn.fft import ChunkedSpectralMixer, compactness
from denoiserec.nn.losses import Objective
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config

MAX_LEN = 12


def _batch(n: int = 6, width: int = 9, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, width + 1, (n,), generator=generator)
    real = torch.arange(width)[None] < lengths[:, None]
    items = torch.where(real, torch.randint(1, 30, (n, width), generator=generator), 0)
    behaviours = torch.where(real, torch.randint(0, 3, (n, width), generator=generator), 0)
    rows = torch.where(real, torch.arange(n * width).view(n, width), -1)
    return Batch(items=items, lengths=lengths, targets=torch.randint(1, 30, (n,)),
                 users=torch.arange(n), rows=rows, behaviours=behaviours)


def _model(**settings) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(END4RecConfig(hidden_size=16, **settings), n_items=30, max_len=MAX_LEN)


def test_decomposition_is_exact_and_the_hard_mask_binary_with_a_gradient():
    model, batch = _model().train(), _batch()
    parts = model.decompose(batch)
    assert set(parts.keep.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(parts.keep * (1 - parts.real), torch.zeros_like(parts.keep))  # pads: 0
    assert torch.equal(parts.s_hp + parts.s_hn, parts.s)
    assert torch.allclose(parts.s_sp + parts.s_sn, parts.s_hp, rtol=0, atol=1e-6)  # rounding
    # the mask carries a gradient to the token scorer and the behaviour preferences
    (parts.keep * torch.randn_like(parts.keep)).sum().backward()
    assert model.scorer.weight.grad.abs().sum() > 0
    assert model.preference.grad[1:4].abs().sum() > 0
    model.eval()
    assert torch.equal(model.decompose(batch).keep, model.decompose(batch).keep)


def test_gradients_reach_the_embeddings_and_order_matters():
    model = _model(dropout=0.0).train()
    batch = _batch()
    model.loss(batch, Objective()).loss.backward()
    assert (model.item_embedding.weight.grad[batch.items[batch.items > 0]].abs().sum(1)
            > 0).all()
    assert model.miner.w1.grad.abs().sum() > 0 and model.kernels.grad.abs().sum() > 0
    # reversing the order changes the representation (the release's miner is time-symmetric)
    mixer = ChunkedSpectralMixer(8, 16, 4, frequency_filter=True)
    x = torch.randn(2, 8, 16)
    flip = (-torch.arange(8)) % 8
    assert not torch.allclose(mixer(x[:, flip])[:, flip], mixer(x), atol=1e-4)


def test_compactness_equals_the_naive_logdet_in_both_gram_forms():
    for L, d in ((5, 8), (8, 5)):
        x = torch.randn(3, L, d, dtype=torch.float64)
        c = d / (L * 0.5 ** 2)
        naive = 0.5 * torch.logdet(torch.eye(L, dtype=torch.float64) + c * x @ x.transpose(1, 2))
        assert torch.allclose(compactness(x, 0.5), naive, rtol=1e-9)
    assert float(compactness(torch.zeros(1, 4, 4), 1.0)) == 0.0


def test_ablations_switch_their_level_off():
    batch = _batch()
    parts = _model(use_hard=False, use_soft=False).eval().decompose(batch)
    assert torch.equal(parts.keep, parts.real) and torch.equal(parts.s_sp, parts.s_hp)


@pytest.fixture(scope="module")
def staged_trainer(tmp_path_factory):
    log = generate(SyntheticConfig(n_users=60, n_items=40, mean_length=10, seed=2))
    config = load_config(overrides=[
        "model=end4rec", "model.hidden_size=16", "model.stage_epochs=[1, 1, 1]",
        f"max_len={MAX_LEN}", "batch_size=64", "train.progress=false", "seed=1"])
    return make_trainer(config, prepare(config, log), tmp_path_factory.mktemp("end4rec"))


def test_stage_k_changes_only_its_parameter_group(staged_trainer):
    trainer = staged_trainer
    model = trainer.model
    groups = model.parameter_groups()
    expected = {0: {"encoder"}, 1: {"hard"}, 2: {"soft"}, 3: {"encoder", "hard", "soft"}}
    lrs = []
    for epoch in range(4):
        before = {name: [p.detach().clone() for p in ps] for name, ps in groups.items()}
        trainer.train_epoch(epoch, max_batches=2)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        for name, params in groups.items():
            changed = [not torch.equal(a, p) for a, p in zip(before[name], params, strict=True)]
            if name in expected[epoch]:
                assert any(changed), (epoch, name)
            else:
                assert not any(changed), (epoch, name)  # bit-identical
    assert lrs[3] == pytest.approx(0.5 * lrs[0])
    # a fresh Adam state at the start of stage 4: the soft kernels' step counter restarts
    assert int(trainer.optimizer.state[model.kernels]["step"]) == 2


def test_staged_training_resumes_to_the_same_stage(staged_trainer):
    stage = staged_trainer.model.training_stage(5)
    assert (stage.number, stage.first_epoch, stage.lr_scale) == (4, 3, 0.5)
    assert dataclasses.replace(stage).groups == ("encoder", "hard", "soft")

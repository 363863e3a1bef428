"""END4Rec: the miner (gradients, order, regulariser), the hard mask, the exact decomposition,
and the guided stages through the one trainer (each stage changes only its parameter group)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.models import build_model
from denoiserec.models.end4rec import END4RecConfig
from denoiserec.nn.fft import ChunkedSpectralMixer, compactness
from denoiserec.nn.losses import Objective
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config
from tests.batches import random_batch

MAX_LEN = 12


def _batch(n: int = 6, width: int = 9, seed: int = 0) -> Batch:
    lengths = torch.randint(2, width + 1, (n,), generator=torch.Generator().manual_seed(seed))
    return random_batch(lengths.tolist(), 29, width, seed, behaviours=2)


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
    model.loss(batch, Objective(), model.progress_at(0)).loss.backward()
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


def _naive_miner(mixer: ChunkedSpectralMixer, x: torch.Tensor) -> torch.Tensor:
    """The miner by direct sums (float64, no torch.fft): the orthonormal DFT of every channel,
    the filter, each chunk's complex 2-layer MLP (GELU on real and imaginary parts), and the
    real inverse of the half spectrum (bins 0 and L/2 once, the others twice, real part)."""
    L, d = x.shape
    n, k = torch.arange(L, dtype=torch.float64), torch.arange(L // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None, :] / L  # (F, L)
    forward = torch.polar(torch.ones_like(angle), -angle) / math.sqrt(L)
    spectrum = forward @ x.double().to(torch.complex128)  # (F, d)
    as_complex = lambda p: torch.view_as_complex(p.detach().double())  # noqa: E731
    if mixer.filter is not None:
        spectrum = spectrum * as_complex(mixer.filter)[: L // 2 + 1]
    size = d // mixer.n_blocks
    out = torch.zeros_like(spectrum)
    for b in range(mixer.n_blocks):
        chunk = spectrum[:, b * size:(b + 1) * size]
        hidden = chunk @ as_complex(mixer.w1)[b] + as_complex(mixer.b1)[b]
        hidden = torch.complex(F.gelu(hidden.real), F.gelu(hidden.imag))
        out[:, b * size:(b + 1) * size] = hidden @ as_complex(mixer.w2)[b] + as_complex(mixer.b2)[b]
    twice = torch.full((L // 2 + 1,), 2.0, dtype=torch.float64)
    twice[0] = 1.0
    if L % 2 == 0:
        twice[-1] = 1.0
    backward = torch.polar(torch.ones_like(angle), angle).T  # (L, F)
    real_bins = out.clone()
    real_bins[0] = out[0].real  # irfft reads only the real part of bins 0 and L/2
    if L % 2 == 0:
        real_bins[-1] = out[-1].real
    return ((backward * twice) @ real_bins).real / math.sqrt(L)


@pytest.mark.parametrize("length", [8, 9])
def test_miner_keeps_the_whole_complex_spectrum(length: int):
    """Against the direct sums: a miner that keeps only the real part of the spectrum (the
    release's, spec §2.2(a)) differs, and an input odd in time (all-imaginary spectrum) still
    gives an output that depends on it."""
    torch.manual_seed(0)
    mixer = ChunkedSpectralMixer(length, 8, 2, frequency_filter=True)
    with torch.no_grad():  # non-zero biases, so that they count in the reference too
        mixer.b1.normal_()
        mixer.b2.normal_()
    x = torch.randn(3, length, 8)
    got = mixer(x)
    for row in range(3):
        torch.testing.assert_close(got[row].double(), _naive_miner(mixer, x[row]),
                                   rtol=1e-4, atol=1e-5)
    odd = x - x[:, (-torch.arange(length)) % length]  # x[-n] = -x[n]: no real spectrum
    assert not torch.allclose(mixer(odd), mixer(2 * odd), atol=1e-4)

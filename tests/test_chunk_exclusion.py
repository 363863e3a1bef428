"""``Protocol.exclude_unrankable`` on item chunks (``first > 0``) against a brute-force mask of
the whole score matrix, sliced: every protocol, targets inside and outside the chunk, histories
spanning chunks, targets repeated in their own history, chunks of every width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.protocols import ProtocolConfig, protocol_of

CONFIGS = {
    "recbole": ProtocolConfig(name="recbole"),
    "fmlp": ProtocolConfig(name="fmlp"),
    "sampled": ProtocolConfig(name="sampled", n_negatives=5),
    "target": ProtocolConfig(name="target"),
    "target-masked": ProtocolConfig(name="target", mask_history=True),
}


def brute_force(scores, log_items, starts, targets, target_items, negatives, config):
    """The protocol's rule, item by item, on the whole (B, n_items + 1) matrix."""
    out = scores.clone()
    out[:, 0] = -torch.inf
    for b in range(len(scores)):
        target = int(target_items[b])
        if config.name == "sampled":
            keep = {target, *negatives[b].tolist()}
            for item in range(out.shape[1]):
                if item not in keep:
                    out[b, item] = -torch.inf
        elif config.name == "fmlp" or (config.name == "target" and config.mask_history):
            for row in range(int(starts[b]), int(targets[b])):
                item = int(log_items[row])
                if item != target:
                    out[b, item] = -torch.inf
    return out


def random_case(seed, n_items=23, users=9):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, n_items + 1, size=int(rng.integers(1, 14))) for _ in range(users)]
    for sequence in sequences[:3]:  # targets repeated in their history
        if len(sequence) > 2:
            sequence[-1] = sequence[0]
    log_items = torch.as_tensor(np.concatenate(sequences))
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])])
    users_, targets = [], []
    for user, sequence in enumerate(sequences):
        for end in range(len(sequence)):  # every row a target; the first has no history
            users_.append(user)
            targets.append(offsets[user] + end)
    starts = torch.as_tensor(offsets[users_])
    targets = torch.as_tensor(np.asarray(targets))
    target_items = log_items[targets]
    negatives = torch.as_tensor(rng.integers(1, n_items + 1, size=(len(targets), 5)))
    scores = torch.as_tensor(rng.normal(size=(len(targets), n_items + 1)), dtype=torch.float32)
    return scores, log_items, starts, targets, target_items, negatives


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunks_equal_the_whole_matrix_masked_then_sliced(name, seed):
    config = CONFIGS[name]
    protocol = protocol_of(config)
    scores, log_items, starts, targets, target_items, negatives = random_case(seed)
    n_columns = scores.shape[1]
    whole = brute_force(scores, log_items, starts, targets, target_items, negatives, config)
    unchunked = protocol.exclude_unrankable(scores.clone(), log_items, starts, targets,
                                            target_items, negatives, first=0)
    torch.testing.assert_close(unchunked, whole, rtol=0, atol=0)
    for width in (1, 2, 5, 8, n_columns - 1, n_columns):
        for first in range(0, n_columns, width):
            stop = min(first + width, n_columns)
            chunk = protocol.exclude_unrankable(scores[:, first:stop].clone(), log_items, starts,
                                                targets, target_items, negatives, first=first)
            torch.testing.assert_close(chunk, whole[:, first:stop], rtol=0, atol=0,
                                       msg=f"{name}: chunk {first}..{stop - 1}")

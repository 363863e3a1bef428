"""Preprocessing: threshold, duplicates, iterated k-core, stable time order, id remapping."""

from __future__ import annotations

import numpy as np
import pytest

from denoiserec.data.log import RawLog
from denoiserec.data.preprocess import build_interactions, k_core
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import DataError


def raw(users, items, timestamps=None, ratings=None) -> RawLog:
    as_str = lambda values: np.array([str(v) for v in values], dtype=object)  # noqa: E731
    return RawLog(users=as_str(users), items=as_str(items),
                  timestamps=None if timestamps is None else np.asarray(timestamps, float),
                  ratings=None if ratings is None else np.asarray(ratings, float), source="t")


def sequences(log):
    return {log.user_tokens[u]: list(log.item_tokens[log.sequence(u)]) for u in range(log.n_users)}


def test_stable_time_order_keeps_file_order_on_ties_and_remaps_by_first_appearance():
    log = build_interactions(raw(["b", "a", "b", "a", "b"], ["x", "y", "z", "x", "w"],
                                 [5, 3, 1, 3, 1]))
    assert sequences(log) == {"b": ["z", "w", "x"], "a": ["y", "x"]}
    assert list(log.item_tokens) == ["[PAD]", "x", "y", "z", "w"]  # first appearance in file
    assert list(log.user_tokens) == ["b", "a"]


def test_recbole_float32_key_merges_near_ties_but_exact_does_not():
    base = 1_000_000_000.0
    # (15000004 - base) / 2e7 and (15000003 - base) / 2e7 are equal in float32
    stamps = [base, base + 2e7, base + 15_000_004, base + 15_000_003]
    log = build_interactions(raw(["u"] * 4, ["a", "b", "c", "d"], stamps))
    exact = build_interactions(raw(["u"] * 4, ["a", "b", "c", "d"], stamps), time_order="exact")
    assert sequences(exact)["u"] == ["a", "d", "c", "b"]
    assert sequences(log)["u"] == ["a", "c", "d", "b"]  # 1 s apart: equal in float32, file order


def test_rating_threshold_and_duplicate_policies():
    data = raw(["u", "u", "u", "u"], ["a", "b", "a", "c"], [1, 2, 3, 4], ratings=[5, 1, 4, 3])
    assert sequences(build_interactions(data, rating_threshold=3))["u"] == ["a", "a", "c"]
    assert sequences(build_interactions(data, duplicates="first"))["u"] == ["a", "b", "c"]
    assert sequences(build_interactions(data, duplicates="last"))["u"] == ["b", "a", "c"]
    with pytest.raises(DataError, match="duplicates must be one of"):
        build_interactions(data, duplicates="drop")
    with pytest.raises(DataError, match="no ratings"):
        build_interactions(raw(["u"], ["a"]), rating_threshold=1)


def naive_k_core(pairs, user_core, item_core):
    pairs = list(pairs)
    while True:
        users = {u: sum(1 for p in pairs if p[0] == u) for u, _ in pairs}
        items = {i: sum(1 for p in pairs if p[1] == i) for _, i in pairs}
        kept = [p for p in pairs if users[p[0]] >= user_core and items[p[1]] >= item_core]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


def test_iterated_k_core_matches_naive_fixpoint():
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 30, 400), rng.integers(0, 40, 400)
    keep = k_core(users, items, 5, 6)
    expected = naive_k_core(zip(users.tolist(), items.tolist(), strict=True), 5, 6)
    assert sorted(zip(users[keep].tolist(), items[keep].tolist(), strict=True)) == sorted(expected)


def test_filtering_everything_is_a_clear_error():
    with pytest.raises(DataError, match="no interactions left"):
        build_interactions(raw(["u", "v"], ["a", "b"], [1, 2]), user_core=5)


def test_synthetic_is_seeded_and_plants_labelled_noise():
    first = generate(SyntheticConfig(n_users=50, noise_ratio=0.1, seed=3))
    again = generate(SyntheticConfig(n_users=50, noise_ratio=0.1, seed=3))
    other = generate(SyntheticConfig(n_users=50, noise_ratio=0.1, seed=4))
    assert np.array_equal(first.items, again.items)
    assert not np.array_equal(first.items[:100], other.items[:100])
    assert 0.05 < first.is_noise.mean() < 0.15
    last_two = np.concatenate([first.offsets[1:] - 1, first.offsets[1:] - 2])
    assert not first.is_noise[last_two].any()  # valid/test targets are never planted noise
    assert first.items.min() >= 1 and first.items.max() <= first.n_items

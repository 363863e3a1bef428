"""A seeded synthetic log that needs no files: Zipf popularity, latent interests, transitions.

Generative story, per user:

* items are split into ``n_interests`` clusters; popularity inside a cluster is Zipf(``zipf``);
* each user likes a few clusters (``interests_per_user``) with Dirichlet weights;
* at every step the user either follows the *successor* of the previous item (a fixed random
  successor inside its cluster, probability ``p_transition``: the sequential signal), or picks a
  cluster (staying in the current one unless switching with probability ``p_switch``) and an
  item by popularity;
* with probability ``noise_ratio`` a step is a planted noisy click: a popular item from a cluster
  the user does not like; those rows get ``is_noise = True``.

Timestamps are the step index, so the time order is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denoiserec.data.log import PAD_TOKEN, Interactions


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of the synthetic log."""

    n_users: int = 600
    """Number of users."""
    n_items: int = 400
    """Number of items."""
    n_interests: int = 10
    """Latent interest clusters the items are split into."""
    interests_per_user: int = 2
    """Clusters each user likes."""
    min_length: int = 10
    """Shortest sequence."""
    mean_length: int = 40
    """Mean sequence length (min_length + geometric excess)."""
    max_length: int = 200
    """Longest sequence."""
    zipf: float = 1.1
    """Zipf exponent of popularity within a cluster."""
    p_transition: float = 0.5
    """Probability of following the previous item's successor."""
    p_switch: float = 0.2
    """Probability of switching to another liked cluster."""
    noise_ratio: float = 0.0
    """Probability that a step is a planted off-interest click (labelled noise)."""
    seed: int = 0
    """Seed of the generator."""


@dataclass(frozen=True)
class SyntheticWorld:
    """What all users share: the clusters, their popularity and the successor of every item.

    Attributes:
        members: per cluster, its item indices (0-based).
        cumulative: per cluster, the cumulative Zipf popularity of its members.
        successor: (n_items,) the fixed successor of every item, in its own cluster.
    """

    members: list[np.ndarray]
    cumulative: list[np.ndarray]
    successor: np.ndarray


@dataclass(frozen=True)
class SyntheticUsers:
    """Sequences of a block of users: ``items[u, :lengths[u]]`` (0-based item indices)."""

    items: np.ndarray
    noise: np.ndarray
    lengths: np.ndarray

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, is_noise, step) of every interaction, users in order."""
        steps = self.items.shape[1]
        valid = np.arange(steps)[None, :] < self.lengths[:, None]
        step = np.broadcast_to(np.arange(steps), self.items.shape)
        return self.items[valid], self.noise[valid], step[valid]


def make_world(config: SyntheticConfig, rng: np.random.Generator) -> SyntheticWorld:
    I, C = config.n_items, config.n_interests
    cluster_of = rng.permutation(np.arange(I) % C)  # item index 0..I-1 -> cluster
    members = [np.flatnonzero(cluster_of == c) for c in range(C)]
    popularity = [1.0 / np.arange(1, len(m) + 1) ** config.zipf for m in members]
    cumulative = [np.cumsum(p / p.sum()) for p in popularity]
    successor = np.empty(I, dtype=np.int64)
    for m in members:
        successor[m] = rng.permutation(m)
    return SyntheticWorld(members, cumulative, successor)


def generate_users(config: SyntheticConfig, world: SyntheticWorld, n_users: int,
                   rng: np.random.Generator) -> SyntheticUsers:
    """``n_users`` users of ``world`` (vectorised over users, one loop over time steps)."""
    U, C = n_users, config.n_interests
    members, cumulative, successor = world.members, world.cumulative, world.successor
    liked = np.stack([rng.choice(C, config.interests_per_user, replace=False) for _ in range(U)])
    weights = rng.dirichlet(np.ones(config.interests_per_user), size=U)
    excess = rng.geometric(1.0 / max(1.0, config.mean_length - config.min_length + 1), U) - 1
    lengths = np.minimum(config.min_length + excess, config.max_length)

    def popular_item(clusters: np.ndarray) -> np.ndarray:
        u = rng.random(len(clusters))
        picks = np.empty(len(clusters), dtype=np.int64)
        for c in np.unique(clusters):
            rows = clusters == c
            index = np.searchsorted(cumulative[c], u[rows]).clip(max=len(members[c]) - 1)
            picks[rows] = members[c][index]
        return picks

    steps = lengths.max()
    items = np.zeros((U, steps), dtype=np.int64)
    noise = np.zeros((U, steps), dtype=bool)
    slot = (rng.random(U)[:, None] > np.cumsum(weights, 1)).sum(1)
    current = liked[np.arange(U), slot]
    previous = popular_item(current)
    for t in range(steps):
        switch = rng.random(U) < config.p_switch
        slot = np.where(switch, (rng.random(U)[:, None] > np.cumsum(weights, 1)).sum(1), slot)
        current = liked[np.arange(U), slot]
        follow = (rng.random(U) < config.p_transition) & (t > 0)
        step_items = np.where(follow, successor[previous], popular_item(current))
        is_noise = rng.random(U) < config.noise_ratio
        if is_noise.any():
            other = (liked[is_noise, 0] + rng.integers(1, C, is_noise.sum())) % C
            clash = (other[:, None] == liked[is_noise]).any(1)
            other = np.where(clash, (other + 1) % C, other)
            step_items[is_noise] = popular_item(other)
        items[:, t] = step_items
        noise[:, t] = is_noise
        previous = np.where(is_noise, previous, step_items)
    # the last two steps (valid and test targets) are never planted noise
    noise &= np.arange(steps)[None, :] < (lengths - 2)[:, None]
    return SyntheticUsers(items, noise, lengths)


def generate(config: SyntheticConfig = SyntheticConfig()) -> Interactions:  # noqa: B008
    """Generate the log (world and users from one generator seeded by ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    U, I = config.n_users, config.n_items
    users = generate_users(config, make_world(config, rng), U, rng)
    items, noise, steps = users.flat()
    offsets = np.concatenate([[0], np.cumsum(users.lengths)]).astype(np.int64)
    return Interactions(
        offsets=offsets,
        items=items + 1,
        user_tokens=np.array([f"u{u}" for u in range(U)], dtype=object),
        item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(I))], dtype=object),
        timestamps=steps.astype(np.float64),
        is_noise=noise if config.noise_ratio > 0 else None,
        name="synthetic",
    )

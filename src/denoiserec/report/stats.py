"""The statistics every result table prints over seeds: the t quantile, the sample sd (unknown
for one seed, not 0), the mean with its 95 % t half-width, and seed-paired differences.

Every table of the project (``denoiserec report``, ``compare``, the campaign's headline, the
tuning and ATJT tables) takes its intervals from here, so that they cannot drift apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

# two-sided 95 % Student t quantiles by degrees of freedom (scipy is no dependency)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
       17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
       25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
       120: 1.980}


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` >= 1 degrees of freedom: the table's
    (3 decimals) up to 30; beyond, the nearest tabulated df below (conservative: the interval
    is at most 1 % too wide)."""
    if df < 1:
        raise ValueError(f"t95 needs at least one degree of freedom, not {df}")
    return T95[max(k for k in T95 if k <= df)]


def sample_sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1); nan with fewer than two values or any nan (an sd
    of one seed is unknown, not 0)."""
    if len(values) < 2 or any(v != v for v in values):
        return math.nan
    return statistics.stdev(values)


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width over seeds (half-width nan for one value; both nan for
    none)."""
    if not values:
        return math.nan, math.nan
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t95(len(values) - 1) * sample_sd(values) / math.sqrt(len(values))


def seed_differences(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """seed -> a - b over the seeds both sides have, in seed order (a paired comparison never
    mixes different seeds)."""
    return {seed: a[seed] - b[seed] for seed in sorted(set(a) & set(b))}

"""Statistics over seeds, as HPO benchmark suites report them: medians with bootstrap intervals,
seeds that reached the target, and the average rank of each method over time.

Times that never happened ("never reached the target") are +inf: they sort after every real time,
so a median or an interval bound that lands on one reads "never".
"""
from __future__ import annotations

import bisect
import itertools
import math
from typing import Optional, Sequence

import numpy as np

EXACT_LIMIT = 50_000   # enumerate every resample up to this many (n**n), else sample
N_BOOT = 20_000


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count; inf-safe)."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def bootstrap_median_ci(values: Sequence[float], level: float = 0.95, seed: int = 0,
                        n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values``.

    With n values the resamples are every one of the n**n equally likely index tuples when
    n**n <= ``EXACT_LIMIT`` (exact: 3 seeds -> 27, 5 -> 3125, 6 -> 46656), else ``n_boot``
    seeded draws. The bounds are order statistics of the sorted resampled medians, no
    interpolation: lower = the floor(a*B)-th, upper = the (ceil((1-a)*B)-1)-th (0-based), with
    a = (1 - level)/2 and B resamples.
    """
    n = len(values)
    if n == 0:
        raise ValueError("no values to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = list(map(float, values))
    if n ** n <= EXACT_LIMIT:
        meds = sorted(median([v[i] for i in idx]) for idx in itertools.product(range(n), repeat=n))
    else:
        rng = np.random.default_rng(seed)
        meds = sorted(median([v[i] for i in row]) for row in rng.integers(0, n, (n_boot, n)))
    a, b = (1 - level) / 2, len(meds)
    return meds[math.floor(a * b)], meds[math.ceil((1 - a) * b) - 1]


def describe(values: Sequence[Optional[float]], level: float = 0.95) -> dict:
    """``{"median", "ci95": [lo, hi]}`` with None for "never" (a None value counts as +inf)."""
    v = [math.inf if x is None else float(x) for x in values]
    lo, hi = bootstrap_median_ci(v, level)
    fin = lambda x: None if math.isinf(x) else x  # noqa: E731
    return {"median": fin(median(v)), "ci95": [fin(lo), fin(hi)]}


def rank_row(values: Sequence[float]) -> list[float]:
    """Ranks of ``values`` (1 = lowest), ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def value_at(curve: Sequence[tuple[float, float]], t: float, before: float = math.inf) -> float:
    """The value standing at time ``t`` of a step curve [(time, value)], ``before`` ahead of it."""
    i = bisect.bisect_right([p[0] for p in curve], t)
    return curve[i - 1][1] if i else before


def ranks_over_time(curves: dict, grid: Sequence[float]) -> dict[str, list[float]]:
    """Average rank of each method at each time of ``grid``.

    ``curves`` is ``{method: {seed: [(time, regret), ...]}}``. For every seed the methods are
    ranked by the regret standing at each time (a method with no result yet ranks last, tied with
    the others that have none), then the ranks are averaged over the seeds that every method ran.
    """
    methods = sorted(curves)
    seeds = sorted(set.intersection(*(set(curves[m]) for m in methods))) if methods else []
    if not seeds:
        return {m: [] for m in methods}
    total = np.zeros((len(methods), len(grid)))
    for s in seeds:
        for j, t in enumerate(grid):
            total[:, j] += rank_row([value_at(curves[m][s], t) for m in methods])
    return {m: list(total[i] / len(seeds)) for i, m in enumerate(methods)}


def disjoint(a: Sequence[Optional[float]], b: Sequence[Optional[float]]) -> bool:
    """Whether two intervals [lo, hi] (None = +inf) do not overlap."""
    lo_a, hi_a, lo_b, hi_b = (math.inf if x is None else x for x in (*a, *b))
    return hi_a < lo_b or hi_b < lo_a

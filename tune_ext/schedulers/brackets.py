"""Bracket and rung arithmetic shared by every scheduler (pure: no Ray import).

Hyperband's bracket table (Li et al. 2018, "Hyperband: A Novel Bandit-Based Approach to
Hyperparameter Optimization", JMLR 18, Algorithm 1) with R = max_t / min_t and eta =
reduction_factor::

    s_max = floor(log_eta R)
    for s in s_max .. 0:                       # most aggressive bracket first
        n = ceil((s_max + 1) / (s + 1) * eta**s)
        rungs (n_i, r_i), i = 0 .. s:  n_i = floor(n * eta**-i),  r_i = max_t * eta**(i - s)

All arithmetic is exact (``fractions.Fraction``), so ``81 * 3**-4`` is 1, not 1.0000000000000002,
and a result with ``time_attr == 1`` reaches that rung.

Example::

    >>> hyperband_brackets(81)[1]
    [(34, 3.0), (11, 9.0), (3, 27.0), (1, 81.0)]
"""
from __future__ import annotations

import math
from bisect import bisect_right
from fractions import Fraction

from tune_ext.validate import at_least, one_of, positive

AGGRESSIVENESS = ("aggressive", "standard", "conservative")


def check_positive(name: str, value) -> None:
    positive(name, value)


def check_geometry(max_t, min_t, reduction_factor) -> None:
    """Validate the (max_t, min_t, reduction_factor) triple every scheduler takes."""
    check_positive("max_t", max_t)
    check_positive("min_t", min_t)
    at_least("reduction_factor", reduction_factor, 2)
    if max_t < min_t:
        raise ValueError(f"max_t must be >= min_t, got max_t={max_t!r} < min_t={min_t!r}")


def max_bracket_index(max_t, min_t=1, reduction_factor=3) -> int:
    """s_max = floor(log_eta(max_t / min_t)), computed exactly (no float log)."""
    check_geometry(max_t, min_t, reduction_factor)
    eta, ratio = Fraction(reduction_factor), Fraction(max_t) / Fraction(min_t)
    s = 0
    while eta ** (s + 1) <= ratio:
        s += 1
    return s


def rung_resources(max_t, reduction_factor, s: int) -> list[float]:
    """The rung milestones of bracket s: r_i = max_t * eta**(i - s), i = 0 .. s."""
    eta, top = Fraction(reduction_factor), Fraction(max_t)
    return [float(top / eta ** (s - i)) for i in range(s + 1)]


def hyperband_brackets(max_t, min_t=1, reduction_factor=3) -> list[list[tuple[int, float]]]:
    """Hyperband's brackets, most aggressive first; each a list of rungs ``(n_i, r_i)``.

    Example: ``hyperband_brackets(81, 1, 3)`` starts its five brackets with 81/1, 34/3, 15/9,
    8/27 and 5/81 (n_0/r_0), the table of Li et al. 2018, section 3.
    """
    s_max = max_bracket_index(max_t, min_t, reduction_factor)
    eta = Fraction(reduction_factor)
    brackets = []
    for s in range(s_max, -1, -1):
        n = math.ceil(Fraction(s_max + 1, s + 1) * eta ** s)
        sizes = [math.floor(n / eta ** i) for i in range(s + 1)]
        brackets.append(list(zip(sizes, rung_resources(max_t, reduction_factor, s))))
    return brackets


def highest_rung_reached(resources: list[float], t: float) -> int:
    """Index of the highest rung whose milestone is <= t, or -1 (results may overstep rungs)."""
    return bisect_right(resources, t) - 1


def continues_at_arrival(num_better: int, num_recorded: int, reduction_factor) -> bool:
    """ASHA "stopping": continue iff the new result ranks in the top 1/eta of its rung.

    ``num_better`` results of the rung are strictly better than it and ``num_recorded`` counts
    every result of the rung including it: continue iff num_better < num_recorded / eta.
    """
    return num_better * reduction_factor < num_recorded


def promotable_count(num_recorded: int, reduction_factor) -> int:
    """ASHA "promotion" (Li et al. 2020, Algorithm 2): top_k(rung, |rung| / eta) -> floor."""
    return math.floor(Fraction(num_recorded) / Fraction(reduction_factor))


def survivors(num_arrived: int, reduction_factor) -> int:
    """Synchronous SHA: how many of a completed rung continue, floor(n / eta) but at least one.

    For a full Hyperband bracket this equals the paper's next n_i, since
    floor(floor(n / eta**i) / eta) == floor(n / eta**(i + 1)).
    """
    return max(1, promotable_count(num_arrived, reduction_factor))


def adaptive_brackets(max_t, max_trials: int, aggressiveness="standard", divisor=4,
                      max_rungs=5) -> list[tuple[int, list[float]]]:
    """Adaptive ASHA's brackets, most aggressive first: ``[(num_trials, rung_milestones)]``.

    The rung count is bounded by ``max_rungs``, by log_divisor(max_t) + 1 and by
    log_divisor(max_trials) + 1; "aggressive" keeps only the bracket with the most rungs,
    "conservative" every bracket down to one rung, "standard" the upper half. Trials are split in
    proportion to divisor**(rungs - 1) / rungs, the remainder going to the most aggressive bracket.
    """
    check_positive("max_t", max_t)
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be a positive integer, got {max_trials!r}")
    one_of("aggressiveness", aggressiveness, AGGRESSIVENESS)
    at_least("divisor", divisor, 2)
    if isinstance(max_rungs, bool) or not isinstance(max_rungs, int) or max_rungs < 1:
        raise ValueError(f"max_rungs must be a positive integer, got {max_rungs!r}")
    # The +1 counts the top rung: max_t = 81, divisor 3 allows 1, 3, 9, 27, 81.
    rungs = min(max_rungs, max_bracket_index(max_t, 1, divisor) + 1,
                max_bracket_index(max_trials, 1, divisor) + 1)
    num_brackets = {"aggressive": 1, "standard": math.ceil(rungs / 2),
                    "conservative": rungs}[aggressiveness]
    lowest = rungs - num_brackets + 1
    counts = list(range(rungs, lowest - 1, -1))
    weights = [Fraction(divisor) ** (k - 1) / k for k in counts]
    total = sum(weights)
    trials = [math.floor(max_trials * w / total) for w in weights]
    trials[0] += max_trials - sum(trials)
    return [(n, rung_resources(max_t, divisor, k - 1)) for n, k in zip(trials, counts)]

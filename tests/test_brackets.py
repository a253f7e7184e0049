import math
import random

import pytest

from tune_ext.schedulers.brackets import (adaptive_brackets, continues_at_arrival,
                                          highest_rung_reached, hyperband_brackets,
                                          max_bracket_index, promotable_count, survivors)
from tune_ext.schedulers.ranking import RankedValues


def reference_brackets(R, eta):
    """Li et al. 2018, Algorithm 1, transcribed with floats and an explicit tolerance."""
    s_max = int(math.floor(math.log(R) / math.log(eta) + 1e-9))
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta ** s - 1e-9))
        r = R * eta ** -s
        out.append([(int(math.floor(n * eta ** -i + 1e-9)), r * eta ** i) for i in range(s + 1)])
    return out


def test_paper_table_max_t_81_eta_3():
    b = hyperband_brackets(81, 1, 3)
    assert [br[0] for br in b] == [(81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]
    assert b[0] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    assert b[1] == [(34, 3), (11, 9), (3, 27), (1, 81)]
    assert b[2] == [(15, 9), (5, 27), (1, 81)]
    assert b[3] == [(8, 27), (2, 81)]
    assert b[4] == [(5, 81)]


@pytest.mark.parametrize("max_t, min_t, eta", [
    (81, 1, 3), (27, 1, 3), (100, 1, 3), (64, 1, 2), (1000, 10, 4), (16, 2, 2), (1, 1, 3),
    (200, 3, 5), (2, 1, 2), (30, 1, 3)])
def test_matches_independent_computation(max_t, min_t, eta):
    ours = hyperband_brackets(max_t, min_t, eta)
    ref = reference_brackets(max_t / min_t, eta)
    assert len(ours) == len(ref)
    for ob, rb in zip(ours, ref):
        assert [n for n, _ in ob] == [n for n, _ in rb]
        # DESIGN: r_i = max_t * eta**(i - s) in units of time_attr
        assert [r for _, r in ob] == pytest.approx([r * min_t for _, r in rb])
        assert ob[-1][1] == max_t


def test_exact_rungs_without_float_drift():
    # 81 * 3**-4 in floats is 1.0000000000000002; the first rung must be reached at t == 1
    assert hyperband_brackets(81, 1, 3)[0][0][1] == 1.0
    assert hyperband_brackets(1000, 1, 10)[0][0][1] == 1.0
    assert max_bracket_index(1000, 1, 10) == 3   # float log10(1000)/log10(10) is fine, log(1000)/log(10) is not
    assert max_bracket_index(243, 1, 3) == 5


@pytest.mark.parametrize("kwargs, match", [
    ({"max_t": 81, "reduction_factor": 1}, "reduction_factor must be >= 2, got 1"),
    ({"max_t": 5, "min_t": 10}, "max_t must be >= min_t"),
    ({"max_t": 0}, "max_t"),
    ({"max_t": float("nan")}, "max_t"),
    ({"max_t": 81, "min_t": -1}, "min_t"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hyperband_brackets(**kwargs)


def test_rung_helpers():
    res = [1.0, 3.0, 9.0]
    assert [highest_rung_reached(res, t) for t in (0, 1, 2.9, 3, 10)] == [-1, 0, 0, 1, 2]
    # top 1/3 at arrival: rank 0 of 1, ranks 0-1 of 4 (1 * 3 < 4), not rank 1 of 3
    assert continues_at_arrival(0, 1, 3) and continues_at_arrival(1, 4, 3)
    assert not continues_at_arrival(1, 3, 3)
    assert [promotable_count(n, 3) for n in (1, 2, 3, 8, 9)] == [0, 0, 1, 2, 3]
    assert [survivors(n, 3) for n in (1, 2, 81, 27, 80)] == [1, 1, 27, 9, 26]
    # nested floors reproduce the paper's n_i for every bracket
    for bracket in hyperband_brackets(243, 1, 3):
        for (n, _), (n_next, _) in zip(bracket, bracket[1:]):
            assert survivors(n, 3) == n_next


def test_adaptive_brackets():
    b = adaptive_brackets(81, 100, "conservative", divisor=3, max_rungs=5)
    assert [len(r) for _, r in b] == [5, 4, 3, 2, 1]
    w = [3 ** (k - 1) / k for k in (5, 4, 3, 2, 1)]
    expect = [math.floor(100 * x / sum(w)) for x in w]
    expect[0] += 100 - sum(expect)
    assert [n for n, _ in b] == expect and sum(n for n, _ in b) == 100
    assert b[0][1] == [1, 3, 9, 27, 81] and b[-1][1] == [81]
    assert [len(r) for _, r in adaptive_brackets(81, 100, "standard", 3)] == [5, 4, 3]
    assert adaptive_brackets(81, 100, "aggressive", 3) == [(100, [1, 3, 9, 27, 81])]
    # bounded by log_divisor(max_trials): 10 trials, divisor 4 -> 2 rungs
    assert adaptive_brackets(256, 10, "aggressive") == [(10, [64, 256])]
    assert len(adaptive_brackets(1000, 10 ** 6, "aggressive", max_rungs=3)[0][1]) == 3
    for bad, match in [({"max_trials": 0}, "max_trials"), ({"aggressiveness": "x"}, "aggressiveness"),
                       ({"divisor": 1}, "divisor"), ({"max_rungs": 0}, "max_rungs")]:
        with pytest.raises(ValueError, match=match):
            adaptive_brackets(**{"max_t": 81, "max_trials": 10, **bad})


def test_ranked_values_against_sorted_list():
    rng = random.Random(0)
    r, ref = RankedValues(), []
    RankedValues.LOAD, old = 4, RankedValues.LOAD  # small blocks: exercise splits and merges
    try:
        for step in range(3000):
            if ref and rng.random() < 0.3:
                x = rng.choice(ref)
                ref.remove(x)
                r.remove(x)
            else:
                x = float(rng.randint(0, 50)) if rng.random() < 0.5 else rng.random() * 50
                # insert ranks and records in one step: values already recorded above x
                assert r.insert(x) == sum(v > x for v in ref)
                ref.append(x)
            q = rng.random() * 52 - 1
            assert r.count_above(q) == sum(v > q for v in ref)
            assert len(r) == len(ref)
        with pytest.raises(ValueError):
            r.remove(1000.5)
    finally:
        RankedValues.LOAD = old

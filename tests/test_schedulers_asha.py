import math
import random

import pytest
from ray.tune.experiment import Trial

from sched_harness import Driver
from tune_ext.schedulers import AdaptiveASHAScheduler, ASHAScheduler

C, P, S = "CONTINUE", "PAUSE", "STOP"


def stopping_reference(arrivals, eta):
    """Independent: sort the rung at each arrival, continue iff rank < n / eta (max mode)."""
    seen, out = [], []
    for v in arrivals:
        rank = sorted(seen + [v], reverse=True).index(v)  # ties: the newcomer ranks first
        seen.append(v)
        out.append(C if rank < len(seen) / eta else S)
    return out


@pytest.mark.parametrize("mode, sign", [("max", 1), ("min", -1)])
def test_stopping_scripted(mode, sign):
    d = Driver(ASHAScheduler(metric="m", mode=mode, max_t=9, reduction_factor=3,
                             variant="stopping"))
    values = [5, 3, 7, 6, 1, 4]
    d.add(*"abcdef")
    got = [d.report(tid, 1, sign * v) for tid, v in zip("abcdef", values)]
    assert got == [C, S, C, C, S, S] == stopping_reference(values, 3)
    # t=2 is between rungs; t=3 is rung 1 (a alone: continue); max_t stops
    assert d.report("a", 2, sign * 5) == C
    assert d.report("a", 3, sign * 5) == C
    assert d.report("c", 4, sign * 1) == S           # oversteps rung 3: ranked there, below a
    assert d.report("a", 9, sign * 9) == S           # max_t


def test_stopping_matches_reference_on_random_arrivals():
    rng = random.Random(1)
    values = [rng.choice([rng.random(), float(rng.randint(0, 5))]) for _ in range(400)]
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=16, reduction_factor=4,
                             variant="stopping"))
    ids = [f"t{i}" for i in range(len(values))]
    d.add(*ids)
    assert [d.report(t, 1, v) for t, v in zip(ids, values)] == stopping_reference(values, 4)


@pytest.mark.parametrize("mode, sign", [("max", 1), ("min", -1)])
def test_promotion_scripted_algorithm_2(mode, sign):
    d = Driver(ASHAScheduler(metric="m", mode=mode, max_t=9, reduction_factor=3,
                             variant="promotion"))
    d.add(*"abcdefghi")
    r = lambda tid, t, v: d.report(tid, t, sign * v)
    for tid in "abcdefghi":
        d.trials[tid].status = Trial.PENDING
    assert r("a", 1, 5) == P            # rung 0 has 1 result: top floor(1/3) = 0
    assert r("b", 1, 3) == P
    assert r("c", 1, 7) == C            # 3 results, c is the best: promoted at once
    assert d.choose().trial_id == "d"   # a ranks 2nd, not in the top 1: a new trial starts
    assert r("d", 1, 6) == P
    assert r("c", 3, 8) == P            # rung 1 has 1 result
    assert r("e", 1, 9) == C            # 5 results, top 1 = e
    assert r("f", 1, 1) == P            # 6 results, top 2 = e, c: both promoted already
    assert r("g", 1, 0) == P
    assert r("h", 1, 2) == P
    assert r("i", 1, 6.5) == C          # 9 results, top 3 = e, c, i
    assert r("e", 3, 10) == P           # rung 1: 2 results
    assert r("i", 3, 4) == P            # rung 1: 3 results, top 1 = e, waiting in a higher rung
    assert d.choose().trial_id == "e"   # ... so e is promoted, not i
    assert r("e", 9, 11) == S           # max_t
    assert d.choose() is None           # nothing promotable, nothing pending, search not done
    assert all(d.trials[t].status == Trial.PAUSED for t in "abcdfghi")
    d.search_alg.finished = True
    assert d.choose() is None           # finite budget: the paused trials are stopped
    assert sorted(t for t, _, what in d.log if what == "STOPPED_BY_SCHEDULER") == list("abcdfghi")
    assert "t=1: 9 recorded" in d.scheduler.debug_string()


def test_promotion_is_idempotent_until_started():
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion"))
    d.add("a", "b", "c")
    d.report("a", 1, 1), d.report("b", 1, 2)
    d.trials["c"].status = Trial.RUNNING
    assert d.report("c", 3, 0) == P       # oversteps rung 0 and lands in rung 1
    # rung 0 now has 3 results; b (2) is 2nd behind... c's 0? no: c counts with 0 -> b is best
    first = d.scheduler.choose_trial_to_run(d)
    assert first.trial_id == "b"
    first.status = Trial.PENDING          # staged, not started yet
    assert d.scheduler.choose_trial_to_run(d) is first


@pytest.mark.parametrize("mode", ["max", "min"])
def test_non_finite_metrics_rank_last(mode):
    d = Driver(ASHAScheduler(metric="m", mode=mode, max_t=9, variant="stopping"))
    d.add(*"abcde")
    best = 1.0 if mode == "max" else -1.0
    assert d.report("a", 1, math.nan) == C          # alone in the rung
    assert d.report("b", 1, best) == C
    assert d.report("c", 1, math.inf) == S          # +inf ranks last even in max mode
    assert d.report("d", 1, -math.inf) == S         # 4th of 4 would continue if it were finite
    assert d.report("e", 1, best * -100) == C       # any finite value ranks ahead: 2nd of 5
    # promotion: a NaN is never promoted ahead of a finite value
    p = Driver(ASHAScheduler(metric="m", mode=mode, max_t=9, variant="promotion"))
    p.add("a", "b", "c")
    assert [p.report("a", 1, math.nan), p.report("b", 1, math.inf), p.report("c", 1, 0.0)] \
        == [P, P, C]


def test_errored_and_removed_trials_leave_their_rung():
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion"))
    d.add(*"abcd")
    d.report("a", 1, 10), d.report("b", 1, 1)
    d.trials["a"].status = Trial.RUNNING   # an actor failure while paused surfaces as RUNNING
    d.error("a")
    d.scheduler.on_trial_remove(d, d.trials["b"])
    assert "t=1: 0 recorded, 0 waiting" in d.scheduler.debug_string()
    assert d.report("c", 1, 5) == P and d.report("d", 1, 4) == P
    d.add("e")
    assert d.report("e", 1, 3) == P   # 3 results, top 1 is c


def test_requeued_trial_rejoins_and_time_going_backwards():
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=9, variant="stopping"))
    d.add("a", "b")
    assert d.report("a", 1, 5) == C and d.report("a", 3, 5) == C
    d.error("a", requeue=True)                 # max_failures: restarts from an older checkpoint
    assert d.report("a", 1, 5) == C            # below its rung: not recorded twice
    assert d.report("a", 2, 5) == C
    assert "t=1: 1 recorded" in d.scheduler.debug_string()
    assert d.report("b", 1, 1) == S            # only a's single record competes at t=1
    # promotion: a trial that fails while pausing re-enters its rung when it comes back
    p = Driver(ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion"))
    p.add("x", "y")
    assert p.report("x", 1, 1) == P
    p.trials["x"].status = Trial.RUNNING
    p.error("x", requeue=True)
    assert "t=1: 0 recorded" in p.scheduler.debug_string()
    assert p.report("x", 1, 1) == P
    assert "t=1: 1 recorded, 1 waiting" in p.scheduler.debug_string()


def test_brackets_and_state_roundtrip(tmp_path):
    s = ASHAScheduler(metric="m", mode="max", max_t=9, brackets=2, variant="stopping")
    d = Driver(s)
    d.add("a", "b")
    assert d.report("b", 1, 1) == C            # bracket 1 starts at t=3: nothing to decide
    assert d.report("b", 3, 1) == C            # first in bracket 1's rung 3
    assert d.report("a", 1, 1) == C
    s.save(str(tmp_path / "s.pkl"))
    s2 = ASHAScheduler(metric="m", mode="max", max_t=9, brackets=2, variant="stopping")
    s2.restore(str(tmp_path / "s.pkl"))
    assert s2.debug_string() == s.debug_string()


@pytest.mark.parametrize("kwargs, match", [
    ({"reduction_factor": 1}, "reduction_factor must be >= 2, got 1"),
    ({"max_t": 3, "min_t": 9}, "max_t must be >= min_t"),
    ({"variant": "median"}, "variant must be one of"),
    ({"brackets": 9}, r"brackets must be an integer in \[1, 3\]"),
    ({"mode": "maximise"}, "mode must be one of"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ASHAScheduler(**{"metric": "m", "mode": "max", "max_t": 9, **kwargs})


def test_bad_results_and_missing_metric():
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=9))
    d.add("a")
    with pytest.raises(ValueError, match="metric 'm'"):
        d.scheduler.on_trial_result(d, d.trials["a"], {"training_iteration": 1, "x": 1})
    with pytest.raises(ValueError, match="time_attr 'training_iteration'"):
        d.scheduler.on_trial_result(d, d.trials["a"], {"m": 1})
    with pytest.raises(ValueError, match="needs metric and mode"):
        Driver(ASHAScheduler(max_t=9)).add("a")


def test_adaptive_splits_trials_and_runs_asha_per_bracket():
    from tune_ext.schedulers import AdaptiveASHAScheduler
    from tune_ext.schedulers.brackets import adaptive_brackets
    s = AdaptiveASHAScheduler(metric="m", mode="max", max_t=16, max_trials=20,
                              aggressiveness="conservative", divisor=4)
    plan = adaptive_brackets(16, 20, "conservative", 4)
    assert [len(r) for _, r in plan] == [3, 2, 1]
    d = Driver(s)
    ids = [f"t{i:02d}" for i in range(20)]
    d.add(*ids)
    # where each trial stands, from the scheduler's public saved state
    bracket = {t: e["bracket"] for t, e in s.get_state()["book"]["trials"].items()}
    counts = [0] * len(plan)
    for t in ids:
        counts[bracket[t]] += 1
    assert counts == [n for n, _ in plan]
    # bracket with rungs 4, 16: the first arrival at t=4 waits (top floor(1/4) = 0)
    b1 = [t for t in ids if bracket[t] == 1]
    assert d.report(b1[0], 4, 1.0) == P
    # single-rung bracket: plain training to max_t
    b2 = [t for t in ids if bracket[t] == 2]
    assert d.report(b2[0], 15, 0.0) == C and d.report(b2[0], 16, 0.0) == S
    with pytest.raises(ValueError, match="aggressiveness must be one of"):
        AdaptiveASHAScheduler(metric="m", mode="max", max_t=16, max_trials=20,
                              aggressiveness="bold")
    with pytest.raises(ValueError, match="max_trials must be a positive integer"):
        AdaptiveASHAScheduler(metric="m", mode="max", max_t=16, max_trials=0)


def test_set_search_properties_follows_rays_rule():
    # metric/mode in the constructor and none in tune.run must work (Ray calls with None, None)
    s = ASHAScheduler(metric="loss", mode="min", max_t=9)
    assert s.set_search_properties(None, None)
    assert not s.set_search_properties("acc", None)  # given on both sides: Ray reports the clash
    assert not s.set_search_properties(None, "max")
    fresh = ASHAScheduler(max_t=9)
    assert fresh.set_search_properties("acc", "max")
    state = fresh.get_state()
    assert (fresh.metric, state["metric"], state["mode"]) == ("acc", "acc", "max")


@pytest.mark.parametrize("make", [
    lambda: ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion", brackets=2),
    lambda: ASHAScheduler(metric="m", mode="max", max_t=9, variant="stopping"),
    lambda: AdaptiveASHAScheduler(metric="m", mode="max", max_t=9, max_trials=12, divisor=3)],
    ids=["promotion", "stopping", "adaptive"])
def test_state_is_versioned_json_and_gives_identical_decisions(make):
    """serialise -> json -> load, halfway through a scripted stream: the loaded scheduler makes
    the same decisions as the original on the rest of it."""
    import json

    from sched_harness import FakeTrial
    rng = random.Random(0)
    stream = [(f"t{i}", t, rng.random() if i != 3 else float("nan"))
              for t in range(1, 10) for i in range(12)]
    a = make()
    trials = {f"t{i}": FakeTrial(f"t{i}") for i in range(12)}
    for trial in trials.values():
        a.on_trial_add(None, trial)
    half = len(stream) // 3
    live = set(trials)
    for tid, t, v in stream[:half]:
        if tid in live and a.on_trial_result(None, trials[tid], {"training_iteration": t,
                                                                  "m": v}) == "STOP":
            live.discard(tid)
    state = json.loads(json.dumps(a.get_state(), allow_nan=False))
    assert state["version"] == 2   # 2: the rung book (rungs.py)
    b = make()
    b.set_state(state)
    assert b.get_state() == state and b.debug_string() == a.debug_string()
    for tid, t, v in stream[half:]:
        if tid not in live:
            continue
        result = {"training_iteration": t, "m": v}
        da, db = a.on_trial_result(None, trials[tid], result), b.on_trial_result(None, trials[tid],
                                                                                result)
        assert da == db, (tid, t)
        if da == "STOP":
            live.discard(tid)
    assert a.debug_string() == b.debug_string()


def test_restored_scheduler_starts_pending_trials_in_join_order():
    """Ray's restore re-adds trials in no fixed order (its snapshot comes from a set); ASHA's
    decisions depend on arrival order, so the restored scheduler starts the pending trials in the
    order they first joined. Uninterrupted, one worker, in ORDER: 0.9, 0.7, 0.8 reach t=3 and
    0.9 reaches 9. Started in the order one restore by Ray re-added them (REDONE), 0.6 would be
    promoted (it is in the top 2 of 0.5, 0.2, 0.9, 0.6, 0.1, 0.3)."""
    order = [0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.4, 0.6]
    value = {f"t{i}": x for i, x in enumerate(order)}
    redone = [0.9, 0.2, 0.5, 0.6, 0.1, 0.3, 0.7, 0.4, 0.8]

    def work(driver, trial):
        """One worker trains the trial until the scheduler pauses or stops it."""
        while True:
            t = trial.last_result.get("training_iteration", 0) + 1
            trial.last_result = {"training_iteration": t}
            if driver.report(trial.trial_id, t, value[trial.trial_id]) != C:
                return

    first = Driver(ASHAScheduler(metric="m", mode="max", max_t=9))
    first.add(*value)
    for _ in range(3):     # 0.5 and 0.2 pause in rung 0; 0.9 is promoted and trains on
        work(first, first.choose())
        if first.trials["t2"].status == Trial.PAUSED:
            break
    state = first.scheduler.get_state()    # killed here: 0.9 waits in rung 1

    second = Driver(ASHAScheduler(metric="m", mode="max", max_t=9))
    second.scheduler.set_state(state)
    second.search_alg.finished = True
    for tid in (f"t{order.index(x)}" for x in redone):
        trial = second.trials[tid] = first.trials[tid]
        if trial.status != Trial.PAUSED:
            trial.status = Trial.PENDING
        second.scheduler.on_trial_add(second, trial)
    while (trial := second.choose()) is not None:
        work(second, trial)
    assert {value[tid]: trial.last_result.get("training_iteration")
            for tid, trial in second.trials.items()} == \
        {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}


class LocalCheckpoint:
    """What the scheduler reads of a Ray Checkpoint: its path and filesystem."""

    def __init__(self, path):
        from pyarrow.fs import LocalFileSystem
        self.path, self.filesystem = str(path), LocalFileSystem()


def test_promotion_of_a_trial_whose_checkpoint_is_gone_is_reported(tmp_path, caplog):
    """Rung 0 (n=6, top 2): c promoted itself on arrival, b waits in the top 2 and is promoted
    when a worker frees, unless its checkpoint was deleted: then it is stopped, with an error
    naming it and the path, and the worker starts a new trial (a is not in the top 2)."""
    d = Driver(ASHAScheduler(metric="m", mode="max", max_t=9))
    d.add(*"abcdefg")
    arrivals = [("a", 1), ("b", 2), ("c", 3), ("d", 0.5), ("e", 0.4), ("f", 0.3)]
    assert [d.report(t, 1, v) for t, v in arrivals] == [P, P, C, P, P, P]
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    for tid, path in [("a", kept), ("b", gone), ("d", kept), ("e", kept), ("f", kept)]:
        d.trials[tid].checkpoint = LocalCheckpoint(path)
    with caplog.at_level("ERROR"):
        picked = d.choose()
    assert picked is d.trials["g"]
    said = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(said) == 1 and "trial b" in said[0] and str(gone) in said[0] \
        and "is missing" in said[0] and "promotions go on without it" in said[0], said
    d.choose()   # the next decision stops it (it never runs again)
    assert ("b", None, "STOPPED_BY_SCHEDULER") in d.log
    # with its checkpoint there, b is the one promoted
    d2 = Driver(ASHAScheduler(metric="m", mode="max", max_t=9))
    d2.add(*"abcdefg")
    [d2.report(t, 1, v) for t, v in arrivals]
    d2.trials["b"].checkpoint = LocalCheckpoint(kept)
    assert d2.choose() is d2.trials["b"]

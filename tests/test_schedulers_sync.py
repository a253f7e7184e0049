"""Scripted curves through the synchronous schedulers: SHA and Hyperband."""
import pytest
from ray.tune.experiment import Trial

from sched_harness import Driver
from tune_ext.schedulers import (HyperbandScheduler, SuccessiveHalvingScheduler,
                                 hyperband_brackets)

C, P, S = "CONTINUE", "PAUSE", "STOP"


def resume_all(d):
    """Controller steps until the scheduler picks no paused trial; returns who resumed."""
    out = []
    while True:
        t = d.choose()
        if t is None or not d.resumed:
            if t is not None:
                t.status = Trial.PENDING   # a new trial it picked: leave it waiting
            return out
        out.append(t.trial_id)


def stopped(d):
    return sorted(t for t, _, what in d.log if what == "STOPPED_BY_SCHEDULER")


@pytest.mark.parametrize("mode, sign", [("max", 1), ("min", -1)])
def test_sha_scripted(mode, sign):
    d = Driver(SuccessiveHalvingScheduler(metric="m", mode=mode, max_t=9, reduction_factor=3))
    ids = "abcdefghi"
    d.add(*ids)
    values = dict(zip(ids, [5, 3, 7, 6, 1, 4, 8, 2, 0]))
    assert [d.report(t, 1, sign * values[t]) for t in ids] == [P] * 9
    assert d.choose() is None or d.log[-1][2] != "STOPPED_BY_SCHEDULER"   # searcher still open
    assert not stopped(d)
    d.search_alg.finished = True        # no more trials: rung 0 (9 arrived) completes
    assert sorted(resume_all(d)) == ["c", "d", "g"]     # top floor(9/3) = 3: 8, 7, 6
    assert stopped(d) == list("abefhi")
    assert d.report("g", 3, sign * 1) == P
    assert d.report("d", 2, sign * 9) == C              # between rungs
    assert d.report("d", 3, sign * 9) == P
    assert d.report("c", 4, sign * 2) == S              # last arrival completes the rung: 2nd of 3
    assert resume_all(d) == ["d"]
    assert "g" in stopped(d)
    assert d.report("d", 9, sign * 9) == S              # max_t
    assert "(done)" in d.scheduler.debug_string()


def test_hyperband_fills_paper_brackets_most_aggressive_first():
    d = Driver(HyperbandScheduler(metric="m", mode="max", max_t=9, reduction_factor=3))
    sizes = [b[0][0] for b in hyperband_brackets(9, 1, 3)]
    assert sizes == [9, 5, 3]
    ids = [f"t{i:02d}" for i in range(sum(sizes) + 2)]
    d.add(*ids)
    joined = d.scheduler.get_state()["book"]["trials"]   # the public saved state
    brackets = [joined[t]["bracket"] for t in ids]
    assert brackets == [0] * 9 + [1] * 5 + [2] * 3 + [3] * 2   # then a second band
    # bracket 0 (r = 1, 3, 9) is full: its 9th arrival completes rung 0 at once
    for i, t in enumerate(ids[:9]):
        assert d.report(t, 1, i) == (P if i < 8 else C)   # t08 is the best: continues
    assert sorted(resume_all(d)) == ["t06", "t07"]
    assert stopped(d) == ids[:6]
    # bracket 2 (r = 9 only): every trial runs to max_t
    assert d.report("t14", 5, 0) == C and d.report("t14", 9, 0) == S


def test_hyperband_fewer_trials_than_a_band_and_dead_trials():
    d = Driver(HyperbandScheduler(metric="m", mode="max", max_t=9, reduction_factor=3))
    d.add("a", "b", "c", "d", "e")                 # bracket 0 only gets 5 of its 9
    d.report("a", 1, 1), d.report("b", 1, 2), d.report("c", 1, 3)
    d.error("d")                                    # errors before its rung: rung completes without it
    d.trials["e"].status = Trial.PENDING
    d.scheduler.on_trial_remove(d, d.trials["e"])   # removed before it started
    d.trials["e"].status = Trial.TERMINATED
    assert resume_all(d) == [] and not stopped(d)   # searcher could still add trials
    d.search_alg.finished = True
    assert resume_all(d) == ["c"]                   # floor(3/3) = 1 of the 3 arrivals
    assert stopped(d) == ["a", "b"]


def test_requeued_trial_rejoins_its_rung():
    d = Driver(SuccessiveHalvingScheduler(metric="m", mode="max", max_t=9))
    d.add("a", "b", "c")
    d.search_alg.finished = True
    d.report("a", 1, 5), d.report("b", 1, 1)
    d.error("c", requeue=True)        # max_failures: c comes back and the rung waits for it
    assert d.choose().trial_id == "c"   # only c is pending
    assert d.report("c", 1, 9) == C     # completes the rung as its best
    assert stopped(d) == [] and d.choose() is None
    assert stopped(d) == ["a", "b"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction_factor must be >= 2"):
        HyperbandScheduler(metric="m", mode="max", max_t=9, reduction_factor=1)
    with pytest.raises(ValueError, match="max_t must be >= min_t"):
        SuccessiveHalvingScheduler(metric="m", mode="max", max_t=1, min_t=3)


def test_trial_completing_a_rung_is_not_resumed_again_later():
    # regression: the arrival that completes a rung continues at once; it must not also be
    # queued for resumption, or it would be resumed when it pauses at the next rung
    d = Driver(HyperbandScheduler(metric="m", mode="max", max_t=9, reduction_factor=3))
    ids = [f"t{i}" for i in range(9)]
    d.add(*ids)
    for i, t in enumerate(ids):
        d.report(t, 1, i)                   # t8, the best, arrives last and continues at once
    assert sorted(resume_all(d)) == ["t6", "t7"]
    assert d.report("t8", 3, 1) == P        # first at rung 1: waits
    assert resume_all(d) == []              # nobody may resume it before rung 1 completes


def test_restore_from_saved_state_catches_up_and_keeps_paused(tmp_path):
    from sched_harness import FakeTrial
    s = SuccessiveHalvingScheduler(metric="m", mode="max", max_t=9)
    d = Driver(s)
    d.add("a", "b", "c", "d")
    d.report("a", 1, 1), d.report("b", 1, 2)
    s.save(str(tmp_path / "state.pkl"))            # the experiment snapshot: a, b paused
    # restore into a fresh scheduler; Ray re-adds unfinished trials as PENDING with last results
    s2 = SuccessiveHalvingScheduler(metric="m", mode="max", max_t=9)
    s2.restore(str(tmp_path / "state.pkl"))
    d2 = Driver(s2)
    last = {"a": 1, "b": 2, "c": 3, "d": None}     # c arrived after the snapshot
    for tid in "abcd":
        t = d2.trials[tid] = FakeTrial(tid)
        t.last_result = {} if last[tid] is None else {"training_iteration": 1, "m": last[tid]}
        s2.on_trial_add(d2, t)
    assert [d2.trials[t].status for t in "abcd"] == ["PAUSED"] * 3 + ["PENDING"]
    assert "t=1: 3 arrived, 1 expected" in s2.debug_string()
    d2.search_alg.finished = True
    assert d2.choose().trial_id == "d"              # nothing resumes before d arrives
    assert d2.report("d", 1, 0) == S                # completes the rung as its worst
    assert resume_all(d2) == ["c"] and stopped(d2) == ["a", "b"]


def test_asha_restore_catches_up(tmp_path):
    from sched_harness import FakeTrial
    from tune_ext.schedulers import ASHAScheduler
    s = ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion")
    d = Driver(s)
    d.add("a", "b", "c")
    d.report("a", 1, 1)
    s.save(str(tmp_path / "state.pkl"))
    s2 = ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion")
    s2.restore(str(tmp_path / "state.pkl"))
    d2 = Driver(s2)
    for tid, v in [("a", 1), ("b", 5), ("c", None)]:
        t = d2.trials[tid] = FakeTrial(tid)
        t.last_result = {} if v is None else {"training_iteration": 1, "m": v}
        s2.on_trial_add(d2, t)
    assert [d2.trials[t].status for t in "abc"] == ["PAUSED", "PAUSED", "PENDING"]
    assert "t=1: 2 recorded, 2 waiting" in s2.debug_string()
    assert d2.report("c", 1, 0) == P               # 3 results: top 1 is b, waiting
    assert d2.choose().trial_id == "b"


def _restored(scheduler, d, statuses):
    """Ray's restore: a new driver re-adds each trial PENDING (TERMINATED kept) with its last
    result, into `scheduler` (restored from saved state or not)."""
    from sched_harness import FakeTrial
    d2 = Driver(scheduler)
    for tid, old in d.trials.items():
        t = d2.trials[tid] = FakeTrial(tid)
        t.last_result = dict(old.last_result)
        t.status = Trial.TERMINATED if statuses[tid] == Trial.TERMINATED else Trial.PENDING
        scheduler.on_trial_add(d2, t)
    d2.search_alg.finished = d.search_alg.finished
    return d2


class _Recording(Driver):
    def report(self, tid, t, value, **kw):
        self.trials[tid].last_result = {"training_iteration": t, "m": value}
        return super().report(tid, t, value, **kw)


@pytest.mark.parametrize("cls", [SuccessiveHalvingScheduler, HyperbandScheduler])
@pytest.mark.parametrize("saved", [True, False])
def test_restore_after_a_rung_closed_stops_the_losers_again(tmp_path, cls, saved):
    """Trials stopped while PAUSED are still unfinished in Ray's snapshot; the restored scheduler
    (from its saved state, or rebuilt from the last results when the state is missing) stops
    them before they run, keeps rung-1 arrivals paused and runs the rest: the same decisions as
    an uninterrupted run."""
    s = cls(metric="m", mode="max", max_t=9, reduction_factor=3)
    d = _Recording(s)
    ids = [f"t{i}" for i in range(9)]
    d.add(*ids)
    for i, t in enumerate(ids):
        d.report(t, 1, [5, 3, 7, 6, 1, 4, 8, 2, 0][i])
    d.search_alg.finished = True
    assert sorted(resume_all(d)) == ["t2", "t3", "t6"]
    losers = {"t0", "t1", "t4", "t5", "t7", "t8"}
    assert {t for t in ids if d.trials[t].status == Trial.TERMINATED} == losers
    assert d.report("t6", 3, 1) == P                  # t6 waits in rung 1; t2, t3 still heading
    s.save(str(tmp_path / "state.pkl"))
    # Ray's snapshot: the losers it stopped while PAUSED still read PAUSED; t8 was stopped on
    # its own result (TERMINATED)
    statuses = {t: Trial.PAUSED for t in ids}
    statuses["t8"] = Trial.TERMINATED
    s2 = cls(metric="m", mode="max", max_t=9, reduction_factor=3)
    if saved:
        s2.restore(str(tmp_path / "state.pkl"))
    d2 = _restored(s2, d, statuses)
    running = []
    while (t := d2.choose()) is not None:
        running.append(t.trial_id)
    assert sorted(running) == ["t2", "t3"]           # heading to rung 1: they train on
    assert set(stopped(d2)) == losers - {"t8"}      # the losers are stopped again
    assert d2.trials["t6"].status == Trial.PAUSED
    assert d2.report("t2", 3, 9) == P
    assert d2.report("t3", 3, 2) == S                 # completes rung 1 as its 2nd of 3
    assert resume_all(d2) == ["t2"] and "t6" in stopped(d2)
    assert d2.report("t2", 9, 9) == S
    assert "t=1: 9 arrived, 0 expected (done) | t=3: 3 arrived, 0 expected (done) | " \
           "t=9: 1 arrived, 0 expected (done)" in s2.debug_string()


def test_asha_restore_stops_again_trials_stopped_while_paused(tmp_path):
    from tune_ext.schedulers import ASHAScheduler
    s = ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion")
    d = _Recording(s)
    d.add("a", "b", "c")
    assert [d.report("a", 1, 1), d.report("b", 1, 2), d.report("c", 1, 3)] == [P, P, C]
    assert d.report("c", 3, 3) == P
    d.search_alg.finished = True
    assert d.choose() is None       # nothing runs, nothing can be promoted: all stopped, paused
    assert sorted(stopped(d)) == ["a", "b", "c"]
    s.save(str(tmp_path / "state.pkl"))
    s2 = ASHAScheduler(metric="m", mode="max", max_t=9, variant="promotion")
    s2.restore(str(tmp_path / "state.pkl"))
    d2 = _restored(s2, d, {t: Trial.PAUSED for t in "abc"})   # Ray's snapshot: still PAUSED
    assert [d2.trials[t].status for t in "abc"] == [Trial.PAUSED] * 3
    assert d2.choose() is None and sorted(stopped(d2)) == ["a", "b", "c"]
    assert s2.on_trial_result(d2, d2.trials["a"], {"training_iteration": 2, "m": 9}) == S


def test_asha_restore_without_saved_state_is_an_error():
    from tune_ext.schedulers import ASHAScheduler
    s = ASHAScheduler(metric="m", mode="max", max_t=9)
    d = _Recording(s)
    d.add("a")
    d.report("a", 1, 1)
    with pytest.raises(RuntimeError, match=r"ASHAScheduler: .*callback-states-\*\.pkl missing"):
        _restored(ASHAScheduler(metric="m", mode="max", max_t=9), d, {"a": Trial.PAUSED})


@pytest.mark.parametrize("cls", [SuccessiveHalvingScheduler, HyperbandScheduler])
def test_state_is_versioned_json_and_gives_identical_decisions(cls):
    """serialise -> json -> load: the same book (debug string, state) and the same decisions on
    the rest of a scripted stream, for the original scheduler and the loaded one alike."""
    import json
    s = cls(metric="m", mode="max", max_t=9, reduction_factor=3)
    d = _Recording(s)
    ids = [f"t{i}" for i in range(9)]
    d.add(*ids)
    for i, t in enumerate(ids):
        d.report(t, 1, [5, 3, 7, 6, 1, 4, 8, 2, float("nan")][i])   # NaN ranks last
    d.search_alg.finished = True
    resume_all(d)
    d.report("t6", 3, 1)
    state = json.loads(json.dumps(s.get_state(), allow_nan=False))
    assert state["version"] == 2   # 2: the rung book (rungs.py)
    s2 = cls(metric="m", mode="max", max_t=9, reduction_factor=3)
    s2.set_state(state)
    assert s2.get_state() == state and s2.debug_string() == s.debug_string()
    d2 = _restored(s2, d, {t: d.trials[t].status for t in ids})
    for drv in (d, d2):
        for t in ("t2", "t3"):
            drv.trials[t].status = Trial.RUNNING
        assert [drv.report("t2", 3, 9), drv.report("t3", 3, 2)] == [P, S]
        assert resume_all(drv) == ["t2"] and drv.report("t2", 9, 9) == S
    assert s2.debug_string() == s.debug_string()
    with pytest.raises(ValueError, match=r"for \(max_t, min_t, reduction_factor\) = \(9, 1, 3\)"):
        cls(metric="m", mode="max", max_t=27, reduction_factor=3).set_state(state)


def test_rung_whose_trials_all_errored_is_complete_in_the_report():
    """Rung 0 keeps 1 of 3; that trial fails for good on its way to rung 1, and Ray asks the
    scheduler nothing more (no trial is left to run): rungs 1 and 2 can get no result, and the
    report says they are done."""
    d = Driver(SuccessiveHalvingScheduler(metric="m", mode="max", max_t=9, reduction_factor=3))
    d.add("a", "b", "c")
    d.search_alg.finished = True
    assert d.choose() is d.trials["a"]
    assert [d.report(t, 1, v) for t, v in [("a", 1), ("b", 2), ("c", 3)]] == [P, P, C]
    assert d.choose() is None and stopped(d) == ["a", "b"]
    d.error("c")
    report = d.scheduler.debug_string()
    assert "t=3: 0 arrived, 0 expected (done) | t=9: 0 arrived, 0 expected (done)" in report, report

"""Kill a real driver with SIGKILL mid-run, restore the experiment, check the scheduler resumed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from e2e_helpers import damage_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# SHA over ORDER with r = 1, 3, 9 (Hyperband's first bracket alike): the outcome is independent
# of arrival order. ASHA "promotion" over the same rungs, one trial at a time in ORDER, ends the
# same: 0.9, 0.7, 0.8 promoted from rung 0, 0.9 from rung 1, the rest stopped when nothing is left.
EXPECTED_STEPS = {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}
FINAL_RUNGS = {  # each trial counted once per rung: no loss, no duplicates, no double promotion
    "sha": "t=1: 9 arrived, 0 expected (done) | t=3: 3 arrived, 0 expected (done) | "
           "t=9: 1 arrived, 0 expected (done)",
    "asha": "t=1: 9 recorded, 0 waiting | t=3: 3 recorded, 0 waiting | t=9: 1 recorded, 0 waiting"}
FINAL_RUNGS["hyperband"] = FINAL_RUNGS["sha"]
# docs/schedulers.md's MedianStoppingScheduler (rungs 3, 6, 9, no minimum), one trial at a time in
# ORDER: a trial goes on iff it ranks in the better half of its rung at arrival (worked by hand:
# at step 3, 0.2 is 2nd of 2, 0.6 is 4th of 8; at step 6, 0.6 is 4th of 5)
MEDIAN_STEPS = {0.5: 9, 0.2: 3, 0.9: 9, 0.1: 3, 0.7: 9, 0.3: 3, 0.8: 9, 0.4: 3, 0.6: 6}
FINAL_RUNGS["median"] = "t=3: 9 recorded, 0 waiting | t=6: 5 recorded, 0 waiting | " \
                        "t=9: 4 recorded, 0 waiting"


def driver(api, phase, storage, results, scheduler="sha", hold=("0.3", "1"), reuse=True):
    """Start restore_driver.py; on "start", trial x=hold[0] hangs before reporting step hold[1]."""
    log = open(results + f".{phase}.log", "w")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TUNE_EXT_TEST_HOLD_X", None)
    env.pop("TUNE_EXT_TEST_HOLD_STEP", None)
    env["TUNE_EXT_TEST_REUSE_ACTORS"] = "1" if reuse else "0"
    if phase == "start":
        env["TUNE_EXT_TEST_HOLD_X"], env["TUNE_EXT_TEST_HOLD_STEP"] = hold
    return subprocess.Popen([sys.executable, os.path.join(HERE, "restore_driver.py"), api, phase,
                             storage, results, scheduler], env=env, cwd=ROOT,
                            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def tail(path):
    with open(path) as f:
        return f.read()[-3000:]


def snapshot(storage):
    """[(x, status, last step or None)] of the newest experiment snapshot Ray has written to
    storage (with the scheduler's state beside it); [] while there is none or it is being
    written."""
    exp = os.path.join(storage, "killed")
    states = sorted(f for f in os.listdir(exp) if f.startswith("experiment_state-")) \
        if os.path.isdir(exp) else []
    if not states or not any(f.startswith("callback-states-") for f in os.listdir(exp)):
        return []
    try:
        with open(os.path.join(exp, states[-1])) as f:
            trials = json.load(f)["trial_data"]
    except (OSError, ValueError):   # being written
        return []
    out = []
    for state, meta in trials:
        state, meta = json.loads(state), json.loads(meta)
        out.append((state["config"]["x"], state["status"], meta.get("last_result", {}).get("step")))
    return out


def read(results):
    if not os.path.exists(results):
        return []
    with open(results) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def last_steps(records):
    """x -> the highest step it reported."""
    steps = {}
    for r in records:
        steps[r["x"]] = max(steps.get(r["x"], 0), r["step"])
    return steps


def rung0_waiting(snap):
    """Before rung 0 closes: 5 trials paused there (the 6th, 0.3, hangs before reporting)."""
    return sum(step is not None for _, _, step in snap) >= 5


def rung0_closed(snap):
    """After rung 0 closed: 0.6, the 9th arrival, was stopped on its result; the other losers
    were stopped while PAUSED, which Ray's snapshot does not record without actor reuse (they
    stay "PAUSED"). The winner 0.9 hangs before step 2, so the first run cannot finish."""
    return (0.6, "TERMINATED", 1) in snap and (0.9, "RUNNING", 1) in snap


def asha_rung1_empty(snap):
    """ASHA before rung 1 has a result: 0.5 and 0.2 wait in rung 0, 0.9 (the top 1 of 3) was
    promoted at once and hangs before step 2."""
    return (0.9, "RUNNING", 1) in snap and {(0.5, "PAUSED", 1), (0.2, "PAUSED", 1)} <= set(snap)


def asha_rung1_promoted(snap):
    """ASHA after rung 1 has results and decisions: 0.9, 0.7, 0.8 reached it (0.7 and 0.8 wait
    there), 0.9 was promoted from it and hangs before step 4; the others wait in rung 0 (0.4 and
    0.6 may not have started yet: Ray's actor scheduling orders the new and the promoted)."""
    return (0.9, "RUNNING", 3) in snap and (0.8, "PAUSED", 3) in snap \
        and (0.7, "PAUSED", 3) in snap


# (scheduler family, kill) -> (when to kill, (x, step) the first run hangs at, reuse_actors,
# the results at the kill: x -> last step, None for a trial that may or may not have started)
KILLS = {("sync", "before"): (rung0_waiting, ("0.3", "1"), True,
                              {0.5: 1, 0.2: 1, 0.9: 1, 0.1: 1, 0.7: 1}),
         ("sync", "after"): (rung0_closed, ("0.9", "2"), False, {x: 1 for x in EXPECTED_STEPS}),
         ("asha", "before"): (asha_rung1_empty, ("0.9", "2"), True, {0.5: 1, 0.2: 1, 0.9: 1}),
         ("asha", "after"): (asha_rung1_promoted, ("0.9", "4"), False,
                             {0.5: 1, 0.2: 1, 0.9: 3, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: None,
                              0.6: None})}


def as_expected_at_kill(steps, expected):
    return {x: s for x, s in steps.items() if expected.get(x, 0) is not None} == \
        {x: s for x, s in expected.items() if s is not None} and \
        all(steps.get(x, 1) == 1 for x, s in expected.items() if s is None)


def median_rung0_passed(snap):
    """The median rule after 0.7 passed rung 3 (3rd of 5 there, the better half) and hangs
    before step 4; 0.5 and 0.9 ran to max_t, 0.2 and 0.1 were stopped at rung 3."""
    return (0.7, "RUNNING", 3) in snap and (0.1, "TERMINATED", 3) in snap


KILLS[("median", "after")] = (median_rung0_passed, ("0.7", "4"), True,
                              {0.5: 9, 0.2: 3, 0.9: 9, 0.1: 3, 0.7: 3})


def family(scheduler):
    return scheduler if scheduler in ("asha", "median") else "sync"


def expected_steps(scheduler):
    return MEDIAN_STEPS if scheduler == "median" else EXPECTED_STEPS


def start_and_kill(api, storage, results, scheduler, kill):
    """Start a driver; SIGKILL its process group once Ray's experiment snapshot in storage shows
    the state KILLS[kill] waits for. Returns whether it reused actors."""
    ready, hold, reuse, _ = KILLS[family(scheduler), kill]
    first = driver(api, "start", storage, results, scheduler, hold, reuse)
    deadline = time.monotonic() + 240
    try:
        while not ready(snapshot(storage)):
            assert first.poll() is None, tail(results + ".start.log")
            assert time.monotonic() < deadline, "driver made no progress"
            time.sleep(0.05)   # polling the snapshot, not a timing assumption
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    return reuse


def resume(api, storage, results, scheduler, reuse):
    """Restore the experiment in a new driver; a hang is killed after 150 s (and fails)."""
    second = driver(api, "resume", storage, results, scheduler, reuse=reuse)
    try:
        second.wait(timeout=150)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    return second


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One killed experiment per (API, scheduler, kill), made once and copied by each test that
    restores it (the kill is the slow part)."""
    made = {}

    def get(api, scheduler, kill, into):
        key = (api, scheduler, kill)
        if key not in made:
            base = tmp_path_factory.mktemp(f"killed-{api}-{scheduler}-{kill}")
            start_and_kill(api, str(base / "storage"), str(base / "results.jsonl"), scheduler,
                           kill)
            made[key] = base
        shutil.copytree(made[key], into)
        return str(into / "storage"), str(into / "results.jsonl"), KILLS[family(scheduler), kill][2]
    return get


# The default run covers each claim (kills before and after a rung closed, both APIs, each
# scheduler family); --slow adds the repeats of a case on another scheduler or API.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("api, scheduler, kill", [
    ("run", "sha", "before"), ("run", "sha", "after"), ("tuner", "hyperband", "after"),
    ("run", "asha", "before"), ("tuner", "asha", "after"),
    *[pytest.param(*case, marks=SLOW) for case in [
        ("tuner", "sha", "before"), ("tuner", "sha", "after"), ("run", "hyperband", "after"),
        ("run", "hyperband", "before"), ("tuner", "hyperband", "before"),
        ("tuner", "asha", "before"), ("run", "asha", "after"),
        # docs/schedulers.md's example scheduler: restore and reconciliation from the base class
        ("run", "median", "after"), ("tuner", "median", "after")]]])
def test_kill_and_restore_keeps_rungs(tmp_path, killed, api, kill, scheduler):
    # The driver group was killed once Ray's experiment snapshot in storage (what a restore sees)
    # showed the state we want to restore from. "before": a fresh scheduler would restart the
    # paused trials as PENDING and they would run past their rung. "after" (SHA, Hyperband): the
    # 6 losers were stopped while PAUSED, which Ray's snapshot does not record; restored as
    # PENDING they would train on and pause again, and the experiment would hang. "after" (ASHA):
    # rungs 0 and 1 hold results, paused trials wait in both and one promotion is under way.
    storage, results, reuse = killed(api, scheduler, kill, tmp_path / "exp")
    before = read(results)
    assert as_expected_at_kill(last_steps(before), KILLS[family(scheduler), kill][3]), before
    if (family(scheduler), kill) == ("sync", "after"):
        # the case to reconcile: losers stopped by the scheduler, "PAUSED" in Ray's snapshot
        assert {x for x, status, _ in snapshot(storage) if status == "PAUSED"} & \
            {0.1, 0.2, 0.3, 0.4, 0.5}

    second = resume(api, storage, results, scheduler, reuse)
    assert second.returncode == 0, (tail(results + ".resume.log"), tail(results + ".start.trace"),
                                    tail(results + ".resume.trace"))
    after = read(results)[len(before):]
    steps = last_steps(before + after)
    # Paused trials stayed paused after the restore and stopped ones stayed stopped: the 6 losers
    # never ran past step 1, and only 0.9, 0.8, 0.7 (rung 0's top 3) and then 0.9 (rung 1's top
    # 1) went on, exactly as in an uninterrupted run.
    assert steps == expected_steps(scheduler), (before, after, tail(results + ".start.trace"),
                                                tail(results + ".resume.trace"))
    # no step trained twice: each trial resumed from where it was paused
    assert len(before + after) == len({(r["x"], r["step"]) for r in before + after}), after
    with open(results + ".final") as f:
        assert FINAL_RUNGS[scheduler] in f.read()


def damage(experiment, how):
    kind, pattern = how.split(":")
    (path,) = [os.path.join(experiment, f) for f in os.listdir(experiment)
               if f.startswith(pattern)]
    damage_file(path, kind)


@pytest.mark.parametrize("api, scheduler, how", [
    *[("run", "sha", how) for how in ["delete:callback-states-", "truncate:callback-states-",
                                      "delete:experiment_state-", "truncate:basic-variant-state-"]],
    ("tuner", "asha", "delete:callback-states-"),
    pytest.param("run", "sha", "truncate:experiment_state-", marks=SLOW),
    *[pytest.param("tuner", "sha", how, marks=SLOW)
      for how in ["delete:callback-states-", "truncate:callback-states-", "delete:experiment_state-",
                  "truncate:experiment_state-", "truncate:basic-variant-state-"]],
    pytest.param("run", "asha", "delete:callback-states-", marks=SLOW),
    pytest.param("run", "median", "delete:callback-states-", marks=SLOW),
    # with a searcher, Ray restores it before it fails on the scheduler's state, and its restart
    # used to end in Ray's bare `assert not self._experiment` (no file named)
    ("run", "sha+random", "truncate:callback-states-"),
    pytest.param("tuner", "sha+random", "truncate:callback-states-", marks=SLOW)])
def test_missing_or_broken_state_is_never_silent(tmp_path, killed, api, scheduler, how):
    """A deleted scheduler state is rebuilt from the trials' stored results (with a warning
    naming the file) and gives the uninterrupted run's decisions (SHA from the last results,
    ASHA from the result Ray keeps with each checkpoint); any other missing or unreadable state
    file is an error naming it, and nothing trains (Ray alone would start afresh and exit 0)."""
    storage, results, reuse = killed(api, scheduler, "after", tmp_path / "exp")
    damage(os.path.join(storage, "killed"), how)
    before = read(results)
    second = resume(api, storage, results, scheduler, reuse=reuse)
    with open(results + ".resume.log") as f:
        log = f.read()
    after = read(results)[len(before):]
    if how == "delete:callback-states-":
        assert second.returncode == 0, log[-3000:]
        warning = [line for line in log.splitlines() if "rebuilt the rungs" in line]
        assert len(warning) == 1 and "callback-states-*.pkl" in warning[0], log[-3000:]
        steps = last_steps(before + after)
        assert steps == expected_steps(scheduler), (before, after)
        with open(results + ".final") as f:
            assert FINAL_RUNGS[scheduler] in f.read()
    else:
        assert second.returncode != 0, log[-3000:]
        error = [line for line in log.splitlines() if line.startswith("RuntimeError:")]
        assert error and how.split(":")[1] in error[-1] and "LoggedSHA" in error[-1], log[-3000:]
        assert after == []


def trial_dir(experiment, x):
    """The directory of the trial with config x in storage (Ray names it after its config)."""
    (name,) = [n for n in os.listdir(experiment) if f"_x={x:.4f}_" in n]
    return os.path.join(experiment, name)


@pytest.mark.parametrize("api, scheduler, kind", [
    ("run", "sha", "delete"), ("run", "sha", "truncate"),
    pytest.param("tuner", "sha", "delete", marks=SLOW),
    pytest.param("tuner", "sha", "truncate", marks=SLOW)])
def test_promoted_trial_whose_checkpoint_is_damaged_is_reported(tmp_path, killed, api, scheduler,
                                                                 kind):
    """0.7 won rung 0 and waits to resume from its checkpoint when the driver is killed; that
    checkpoint is deleted or truncated before the restore. The scheduler names the trial and the
    checkpoint and goes on without it: rung 1 completes with 0.9 and 0.8 and keeps 0.9."""
    storage, results, reuse = killed(api, scheduler, "after", tmp_path / "exp")
    seven = trial_dir(os.path.join(storage, "killed"), 0.7)
    checkpoints = [os.path.join(seven, c) for c in os.listdir(seven) if c.startswith("checkpoint_")]
    assert checkpoints
    for checkpoint in checkpoints:
        if kind == "delete":
            shutil.rmtree(checkpoint)
        else:
            damage_file(os.path.join(checkpoint, "step.json"), "truncate")
    before = read(results)
    second = resume(api, storage, results, scheduler, reuse=reuse)
    with open(results + ".resume.log") as f:
        log = f.read()
    after = read(results)[len(before):]
    steps = last_steps(before + after)
    assert steps == {**{x: 1 for x in EXPECTED_STEPS}, 0.9: 9, 0.8: 3}, (before, after, log[-3000:])
    said = [line for line in log.splitlines() if "checkpoint" in line and seven in line
            and ("is missing" if kind == "delete" else "may be damaged") in line]
    assert len(said) == 1, log[-5000:]
    assert ("it is stopped" if kind == "delete" else "resume_errored=True") in said[0]
    # a deleted checkpoint is handled (the trial is stopped): the run ends normally; a damaged
    # one fails the trial, which tune.run reports with its usual error
    assert (second.returncode == 0) == (kind == "delete" or api == "tuner"), log[-3000:]
    if second.returncode == 0:   # the driver writes the scheduler's report after the run
        with open(results + ".final") as f:
            final = f.read()
        assert "t=3: 2 arrived, 0 expected (done)" in final and "t=9: 1 arrived" in final, final


def test_deleted_tuner_pkl_names_the_file_and_a_resume_that_works(tmp_path, killed):
    """Tuner.restore needs tuner.pkl before any scheduler is loaded: the restore helper's check
    names it and the remedy, and the remedy (tune.run(resume=True) with the original arguments)
    gives the uninterrupted run's decisions."""
    storage, results, reuse = killed("tuner", "hyperband", "after", tmp_path / "exp")
    os.remove(os.path.join(storage, "killed", "tuner.pkl"))
    before = read(results)
    second = resume("tuner", storage, results, "hyperband", reuse)
    with open(results + ".resume.log") as f:
        log = f.read()
    error = [line for line in log.splitlines() if line.startswith("FileNotFoundError:")]
    assert second.returncode != 0 and error, log[-3000:]
    assert "killed/tuner.pkl is missing" in error[-1] and "tune.run(trainable, resume=True" in \
        error[-1], error
    assert read(results) == before
    second = resume("run", storage, results, "hyperband", reuse)
    assert second.returncode == 0, tail(results + ".resume.log")
    assert last_steps(read(results)) == EXPECTED_STEPS
    with open(results + ".final") as f:
        assert FINAL_RUNGS["hyperband"] in f.read()

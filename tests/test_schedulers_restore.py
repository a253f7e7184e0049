"""Kill a real driver with SIGKILL mid-run, restore the experiment, check the scheduler resumed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Synchronous SHA over ORDER with r = 1, 3, 9: the outcome is independent of arrival order.
EXPECTED_STEPS = {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}


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


# kill -> (when to kill, (x, step) the first run hangs at, reuse_actors)
KILLS = {"before": (rung0_waiting, ("0.3", "1"), True),
         "after": (rung0_closed, ("0.9", "2"), False)}


def start_and_kill(api, storage, results, scheduler, kill):
    """Start a driver; SIGKILL its process group once Ray's experiment snapshot in storage shows
    the state KILLS[kill] waits for. Returns whether it reused actors."""
    ready, hold, reuse = KILLS[kill]
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


# The default run covers each claim (kills before and after a rung closed, both APIs, both
# synchronous schedulers); --slow adds the repeats of a case on another scheduler or API.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("api, scheduler, kill", [
    ("run", "sha", "before"), ("run", "sha", "after"), ("tuner", "hyperband", "after"),
    *[pytest.param(*case, marks=SLOW) for case in [
        ("tuner", "sha", "before"), ("tuner", "sha", "after"), ("run", "hyperband", "after"),
        ("run", "hyperband", "before"), ("tuner", "hyperband", "before")]]])
def test_kill_and_restore_keeps_rungs(tmp_path, api, kill, scheduler):
    storage, results = str(tmp_path / "storage"), str(tmp_path / "results.jsonl")
    # Kill the whole driver group once Ray's experiment snapshot in storage (what a restore sees)
    # shows the state we want to restore from. "before": a fresh scheduler would restart the 5
    # paused trials as PENDING and they would run past step 1. "after": the 6 losers were stopped
    # while PAUSED, which Ray's snapshot does not record; restored as PENDING they would train on
    # and pause again, and the experiment would hang.
    reuse = start_and_kill(api, storage, results, scheduler, kill)
    before = read(results)
    if kill == "before":
        assert sorted(r["x"] for r in before) == [0.1, 0.2, 0.5, 0.7, 0.9]
        assert {r["step"] for r in before} == {1}
    else:
        assert {r["x"] for r in before if r["step"] == 1} == set(EXPECTED_STEPS)
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
    assert steps == EXPECTED_STEPS, (before, after, tail(results + ".start.trace"),
                                      tail(results + ".resume.trace"))
    with open(results + ".final") as f:
        final = f.read()
    # each trial counted once per rung: no loss, no duplicates, no double promotion
    assert "t=1: 9 arrived, 0 expected (done) | t=3: 3 arrived, 0 expected (done) | " \
           "t=9: 1 arrived, 0 expected (done)" in final


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One killed SHA experiment per API, copied by each test before it damages a file."""
    made = {}

    def get(api):
        if api not in made:
            base = tmp_path_factory.mktemp(f"killed-{api}")
            start_and_kill(api, str(base / "storage"), str(base / "results.jsonl"), "sha", "after")
            made[api] = base
        return made[api]
    return get


def damage(experiment, how):
    kind, pattern = how.split(":")
    (path,) = [os.path.join(experiment, f) for f in os.listdir(experiment)
               if f.startswith(pattern)]
    if kind == "delete":
        os.remove(path)
    else:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 3])


@pytest.mark.parametrize("api, how", [
    *[("run", how) for how in ["delete:callback-states-", "truncate:callback-states-",
                               "delete:experiment_state-", "truncate:basic-variant-state-"]],
    pytest.param("run", "truncate:experiment_state-", marks=SLOW),
    *[pytest.param("tuner", how, marks=SLOW)
      for how in ["delete:callback-states-", "truncate:callback-states-",
                  "delete:experiment_state-", "truncate:experiment_state-",
                  "truncate:basic-variant-state-"]]])
def test_missing_or_broken_state_is_never_silent(tmp_path, killed, api, how):
    """A deleted scheduler state is rebuilt from the trials' last results (with a warning naming
    the file) and gives the uninterrupted run's decisions; any other missing or unreadable state
    file is an error naming it, and nothing trains (Ray alone would start afresh and exit 0)."""
    shutil.copytree(killed(api), tmp_path / "exp")
    storage, results = str(tmp_path / "exp" / "storage"), str(tmp_path / "exp" / "results.jsonl")
    damage(os.path.join(storage, "killed"), how)
    before = read(results)
    second = resume(api, storage, results, "sha", reuse=False)
    with open(results + ".resume.log") as f:
        log = f.read()
    after = read(results)[len(before):]
    if how == "delete:callback-states-":
        assert second.returncode == 0, log[-3000:]
        warning = [line for line in log.splitlines() if "rebuilt the rungs" in line]
        assert len(warning) == 1 and "callback-states-*.pkl" in warning[0], log[-3000:]
        steps = last_steps(before + after)
        assert steps == EXPECTED_STEPS, (before, after)
    else:
        assert second.returncode != 0, log[-3000:]
        error = [line for line in log.splitlines() if line.startswith("RuntimeError:")]
        assert error and how.split(":")[1] in error[-1] and "LoggedSHA" in error[-1], log[-3000:]
        assert after == []

"""Kill a real driver with SIGKILL mid-run, restore the experiment, check the scheduler resumed."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Synchronous SHA over ORDER with r = 1, 3, 9: the outcome is independent of arrival order.
EXPECTED_STEPS = {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}


def driver(api, phase, storage, results):
    log = open(results + f".{phase}.log", "w")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TUNE_EXT_TEST_HOLD_X", None)
    if phase == "start":
        env["TUNE_EXT_TEST_HOLD_X"] = "0.3"   # the 6th trial hangs before its first result
    return subprocess.Popen([sys.executable, os.path.join(HERE, "restore_driver.py"), api, phase,
                             storage, results], env=env, cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)


def tail(path):
    with open(path) as f:
        return f.read()[-3000:]


def snapshot_arrivals(storage):
    """Trials with a result in the newest experiment snapshot Ray has written to storage."""
    exp = os.path.join(storage, "killed")
    states = sorted(f for f in os.listdir(exp) if f.startswith("experiment_state-")) \
        if os.path.isdir(exp) else []
    if not states or not any(f.startswith("callback-states-") for f in os.listdir(exp)):
        return 0
    try:
        with open(os.path.join(exp, states[-1])) as f:
            trials = json.load(f)["trial_data"]
    except (OSError, ValueError):   # being written
        return 0
    return sum("step" in json.loads(meta).get("last_result", {}) for _, meta in trials)


def read(results):
    if not os.path.exists(results):
        return []
    with open(results) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


@pytest.mark.parametrize("api", ["run", "tuner"])
def test_kill_and_restore_keeps_rungs(tmp_path, api):
    storage, results = str(tmp_path / "storage"), str(tmp_path / "results.jsonl")
    first = driver(api, "start", storage, results)
    deadline = time.monotonic() + 240
    # The first 5 trials arrive at rung 0 and pause; the 6th (0.3) hangs before reporting.
    # Kill the whole driver group once Ray's experiment snapshot in storage (what a restore sees)
    # holds those 5 arrivals. A fresh scheduler would restart them as PENDING and they would
    # run past step 1.
    try:
        while snapshot_arrivals(storage) < 5:
            assert first.poll() is None, tail(results + ".start.log")
            assert time.monotonic() < deadline, "driver made no progress"
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = read(results)
    assert sorted(r["x"] for r in before) == [0.1, 0.2, 0.5, 0.7, 0.9]
    assert {r["step"] for r in before} == {1}

    second = driver(api, "resume", storage, results)
    try:
        second.wait(timeout=150)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert second.returncode == 0, (tail(results + ".resume.log"), tail(results + ".start.trace"),
                                    tail(results + ".resume.trace"))
    after = read(results)[len(before):]
    steps = {}
    for r in before + after:
        steps[r["x"]] = max(steps.get(r["x"], 0), r["step"])
    # Paused trials stayed paused after the restore: the 6 losers never ran past step 1, and
    # only 0.9, 0.8, 0.7 (rung 0's top 3) and then 0.9 (rung 1's top 1) went on.
    assert steps == EXPECTED_STEPS, (before, after, tail(results + ".start.trace"),
                                      tail(results + ".resume.trace"))
    with open(results + ".final") as f:
        final = f.read()
    # each trial counted once per rung: no loss, no duplicates, no double promotion
    assert "t=1: 9 arrived, 0 expected (done) | t=3: 3 arrived, 0 expected (done) | " \
           "t=9: 1 arrived, 0 expected (done)" in final

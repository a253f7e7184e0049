"""Kill a real experiment with SIGKILL, resume it, and check the searcher kept its model."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from e2e_helpers import damage_file
from tune_ext.searchers import BOHBSearch, CMAESSearch, RandomSearch, TPESearch

DRIVER = os.path.join(os.path.dirname(__file__), "searcher_restore_driver.py")
NUM_SAMPLES = 10


def state_file(exp_dir):
    files = glob.glob(os.path.join(exp_dir, "searcher-state-*.pkl"))
    return max(files) if files else None


def load(cls, path):
    s = cls()
    s.restore(path)
    return s


def driver(cls, api, storage, address, resume=False, checkpoint_s="0"):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "TUNE_GLOBAL_CHECKPOINT_S": checkpoint_s}
    args = [sys.executable, DRIVER, cls.__name__, api, str(storage), "exp", address]
    return subprocess.Popen(args + (["resume"] if resume else []), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # its own group: a local Ray dies with it


def run_until_observed(cls, api, storage, address, observations, checkpoint_s="0"):
    """Start the driver; SIGKILL it once its own checkpoint holds ``observations`` outcomes (read
    from its files, no sleeps). Returns the searcher state at the kill."""
    exp = storage / "exp"
    proc = driver(cls, api, storage, address, checkpoint_s=checkpoint_s)
    deadline = time.monotonic() + 240
    while True:
        path = state_file(exp)
        try:
            if path and load(cls, path).n_observations >= observations:
                break
        except (ValueError, FileNotFoundError):
            pass  # Ray's upload to the storage path was still copying it (or replacing it)
        assert proc.poll() is None, f"driver ended before the kill: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"the driver never checkpointed {observations} " \
                                            f"observations"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = storage / "at_kill.pkl"
    shutil.copy(state_file(exp), saved)
    return load(cls, str(saved))


@pytest.mark.parametrize("cls, api", [
    (TPESearch, "run"), (BOHBSearch, "tuner"),   # one per API and state layout; others --slow
    pytest.param(CMAESSearch, "tuner", marks=pytest.mark.slow),
    pytest.param(RandomSearch, "run", marks=pytest.mark.slow)])
def test_kill_and_restore_continues_the_model(ray_local, tmp_path, cls, api):
    address = ray_local.get_runtime_context().gcs_address
    exp = tmp_path / "exp"
    before = run_until_observed(cls, api, tmp_path, address, 3)
    assert 3 <= before.n_observations < NUM_SAMPLES

    resumed = driver(cls, api, tmp_path, address, resume=True)
    _, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err[-3000:]
    after = load(cls, state_file(exp))
    # every trial observed exactly once: none lost at the kill, none counted twice
    assert after.n_observations == NUM_SAMPLES and not after.pending_trials
    if cls in (TPESearch, CMAESSearch):
        old = [t.params for t in before.study.trials]
        new = [t.params for t in after.study.trials]
        assert new[:len(old)] == old and len(new) == NUM_SAMPLES  # one study, continued
        assert [t.number for t in after.study.trials] == list(range(NUM_SAMPLES))
    else:
        assert after.observations[:len(before.observations)] == before.observations
    if cls is RandomSearch:  # independent of results: the stream continues exactly
        params = [o["params"] for o in after.observations]
        before.suggest("probe")   # the next draw of the saved stream, in internal coordinates:
        assert before.get_state()["events"][-1][2] in params[before.n_observations:]


@pytest.fixture(scope="module")
def killed_tpe(tmp_path_factory):
    """One killed TPESearch experiment per API, copied by each test before it damages a file.
    Each driver runs its own local Ray, as a crashed script would: on a shared cluster Ray would
    read the state files back from the dead driver's staging folder, not from storage."""
    address, made = "local", {}

    def get(api):
        for attempt in range(3):
            if api in made:
                break
            # a snapshot every second, and a kill that caught none of it half-written
            base = tmp_path_factory.mktemp(f"killed-tpe-{api}")
            run_until_observed(TPESearch, api, base, address, 1, checkpoint_s="1")
            if intact(base / "exp"):
                made[api] = base
        return made[api]
    return get


def intact(exp):
    """Every saved file of the killed experiment reads back (the kill can land mid-upload)."""
    import json
    import pickle
    try:
        for name in os.listdir(exp):
            if name.startswith("experiment_state-"):
                with open(exp / name) as f:
                    json.load(f)
            elif name.startswith("search_gen_state-"):   # a pickle, despite its name
                with open(exp / name, "rb") as f:
                    pickle.load(f)
        load(TPESearch, state_file(exp))
    except (ValueError, OSError, TypeError, EOFError, pickle.UnpicklingError):
        return False
    return True


def trial_dirs(exp):
    return {p.name for p in exp.iterdir() if p.is_dir()}


# The fast subset covers each damage and each API once; the other two pairings are slow.
@pytest.mark.parametrize("api, how", [("run", "delete"), ("tuner", "truncate"),
                                      pytest.param("run", "truncate", marks=pytest.mark.slow),
                                      pytest.param("tuner", "delete", marks=pytest.mark.slow)])
def test_missing_or_broken_searcher_state_is_an_error_naming_the_file(tmp_path, killed_tpe, api,
                                                                       how):
    """Ray alone logs the failed restore and goes on: tune.run(resume=True) restarts the search
    from scratch (exit 0), Tuner.restore fails with "no search space". Ours: an error that names
    searcher-state-*.pkl, before any trial trains."""
    shutil.copytree(killed_tpe(api), tmp_path / "copy")
    exp = tmp_path / "copy" / "exp"
    damage_file(state_file(exp), how)
    trials = trial_dirs(exp)
    resumed = driver(TPESearch, api, tmp_path / "copy", "local", resume=True)
    try:
        _, err = resumed.communicate(timeout=400)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    assert resumed.returncode != 0, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("RuntimeError: TPESearch")]
    assert errors and "searcher-state-" in errors[-1], err[-3000:]
    assert ("is missing from" if how == "delete" else "cannot read") in errors[-1]
    assert "Error: TPESearch: no search space" not in err   # Ray's misleading error
    assert trial_dirs(exp) == trials          # nothing new trained

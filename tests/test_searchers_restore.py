"""Kill a real experiment with SIGKILL, resume it, and check the searcher kept its model."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

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


def driver(cls, api, storage, address, resume=False):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, DRIVER, cls.__name__, api, str(storage), "exp", address]
    return subprocess.Popen(args + (["resume"] if resume else []), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("cls, api", [
    (TPESearch, "run"), (BOHBSearch, "tuner"),   # one per API and state layout; others --slow
    pytest.param(CMAESSearch, "tuner", marks=pytest.mark.slow),
    pytest.param(RandomSearch, "run", marks=pytest.mark.slow)])
def test_kill_and_restore_continues_the_model(ray_local, tmp_path, cls, api):
    address = ray_local.get_runtime_context().gcs_address
    exp = tmp_path / "exp"
    proc = driver(cls, api, tmp_path, address)
    # wait until the driver's own checkpoint holds >= 3 observations (read its files, no sleeps)
    deadline = time.monotonic() + 240
    while True:
        path = state_file(exp)
        try:
            if path and load(cls, path).n_observations >= 3:
                break
        except (ValueError, FileNotFoundError):
            pass  # Ray's upload to the storage path was still copying it (or replacing it)
        assert proc.poll() is None, f"driver ended before the kill: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the driver never checkpointed 3 observations"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = tmp_path / "at_kill.pkl"
    shutil.copy(state_file(exp), saved)
    before = load(cls, str(saved))
    assert 3 <= before.n_observations < NUM_SAMPLES

    resumed = driver(cls, api, tmp_path, address, resume=True)
    _, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err[-3000:]
    after = load(cls, state_file(exp))
    # every trial observed exactly once: none lost at the kill, none counted twice
    assert after.n_observations == NUM_SAMPLES and not after._live
    if cls in (TPESearch, CMAESSearch):
        old = [t.params for t in before.study.trials]
        new = [t.params for t in after.study.trials]
        assert new[:len(old)] == old and len(new) == NUM_SAMPLES  # one study, continued
        assert [t.number for t in after.study.trials] == list(range(NUM_SAMPLES))
    else:
        assert after.observations[:len(before.observations)] == before.observations
    if cls is RandomSearch:  # independent of results: the stream continues exactly
        params = [o["params"] for o in after.observations]
        assert before._propose("probe", {}) in params[before.n_observations:]

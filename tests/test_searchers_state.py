"""A searcher's saved state: versioned plain data, replayed into a fresh model on restore.

The restored searcher must suggest exactly what the uninterrupted one suggests next (same seed,
same events, same model), in this process and in another one; a state of another version, of
another searcher, malformed, or for another space or other settings is a ValueError that says so.
"""
import json
import logging
import math
import os
import pickle
import subprocess
import sys

import pytest
from ray import tune

from tune_ext.searchers import BOHBSearch, CMAESSearch, RandomSearch, TPESearch

ALL = [TPESearch, CMAESSearch, BOHBSearch, RandomSearch]
SPACE = {"x": tune.uniform(-5.0, 10.0), "k": tune.randint(1, 5), "c": tune.choice(["a", "b"]),
         "q": tune.quniform(0.0, 1.0, 0.25), "nested": {"lr": tune.loguniform(1e-3, 1.0)},
         "const": 9}
HERE = os.path.dirname(os.path.abspath(__file__))


def loss(c, t=3):
    return (c["x"] - 2) ** 2 + 0.1 * c["k"] + (c["c"] == "b") + c["q"] + 1 / t


def history(s, n, start=0):
    """n trials, two in flight at a time, three results each: full runs, a scheduler's stop
    (pruned at step 1), an error and a NaN, so every outcome and budget is in the events."""
    out = []
    for i in range(start, start + n, 2):
        ids = [f"t{i}", f"t{i + 1}"]
        configs = [s.suggest(t) for t in ids]
        for j, (t, c) in enumerate(zip(ids, configs)):
            last = 1 if i % 6 == 2 else 3
            for step in range(1, last + 1):
                value = math.nan if (i % 10 == 4 and j) else loss(c, step)
                s.on_trial_result(t, {"loss": value, "training_iteration": step})
            if i % 10 == 8 and j:
                s.on_trial_complete(t, None, error=True)
            else:
                s.on_trial_complete(t, {"loss": loss(c, last), "training_iteration": last})
        out += configs
    return out


def next_suggestions(s, pending_config):
    """Finish the trial in flight at the save, then six more trials' configs."""
    s.on_trial_result("pending", {"loss": loss(pending_config, 1), "training_iteration": 1})
    s.on_trial_complete("pending", {"loss": loss(pending_config), "training_iteration": 3})
    return history(s, 6, start=100)


def saved_after(cls, n, **kwargs):
    s = cls(SPACE, metric="loss", mode="min", max_t=3, **kwargs)
    history(s, n)
    pending = s.suggest("pending")
    return s, pending, json.loads(json.dumps(s.get_state(), allow_nan=False))  # plain JSON


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("n", [4, 16])   # in the random start-up phase, and with a model
def test_restored_searcher_suggests_what_the_uninterrupted_one_does(cls, n):
    s, pending, state = saved_after(cls, n, seed=5)
    assert state["version"] == 1 and state["searcher"] == cls.__name__
    assert state["settings"]["seed"] == 5 and state["space"]["plain"]
    for fresh in (cls(), cls(SPACE, metric="loss", mode="min", seed=5)):
        fresh.set_state(state)
        assert fresh.n_observations == n and fresh.outcomes == s.outcomes
        assert fresh.pending_trials == ["pending"]
        assert fresh.get_state() == state
    assert next_suggestions(fresh, pending) == next_suggestions(s, pending)


@pytest.mark.parametrize("cls", ALL)
def test_unseeded_searcher_saves_the_seed_it_drew(cls):
    s, pending, state = saved_after(cls, 10)
    assert isinstance(state["settings"]["seed"], int)
    r = cls(SPACE)
    r.set_state(state)
    assert next_suggestions(r, pending) == next_suggestions(s, pending)


def test_restore_in_another_process_continues_exactly(tmp_path):
    """Another interpreter (another hash seed) reads the files and suggests the same next configs
    as this one's uninterrupted searchers."""
    expected = {}
    for cls in ALL:
        s, pending, _ = saved_after(cls, 16, seed=2)
        s.save(str(tmp_path / f"{cls.__name__}.pkl"))
        expected[cls.__name__] = next_suggestions(s, pending), pending
    script = (
        "import json, sys; sys.path.insert(0, %r)\n"
        "import test_searchers_state as t\n"
        "out = {}\n"
        "for cls in t.ALL:\n"
        "    r = cls()\n"
        "    r.restore(sys.argv[1] + '/' + cls.__name__ + '.pkl')\n"
        "    out[cls.__name__] = t.next_suggestions(r, json.loads(sys.argv[2])[cls.__name__])\n"
        "print(json.dumps(out))\n" % HERE)
    pendings = json.dumps({k: p for k, (_, p) in expected.items()})
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), pendings], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {k: v for k, (v, _) in expected.items()}


def test_a_replay_that_draws_differently_keeps_every_observation(caplog):
    """Another optuna could propose other values from the same seed: simulated by editing one
    saved suggestion. The restore then forces the saved suggestions, says so, and keeps every
    observation (the study's trials are the saved ones)."""
    s, pending, state = saved_after(TPESearch, 12, seed=1)
    event = next(e for e in state["events"] if e[0] == "suggest" and e[1] == "t3")
    event[2]["x"] = 1.25
    r = TPESearch()
    with caplog.at_level(logging.WARNING, logger="tune_ext.searchers._base"):
        r.set_state(state)
    assert "did not reproduce the suggestion for trial t3" in caplog.text
    saved_params = [e[2] for e in state["events"] if e[0] == "suggest"]
    assert [t.params for t in r.study.trials] == saved_params
    assert [t.state for t in r.study.trials[:-1]] == [t.state for t in s.study.trials[:-1]]
    assert r.get_state()["events"] == state["events"] and r.n_observations == 12
    assert len(next_suggestions(r, pending)) == 6


@pytest.mark.parametrize("cls", [TPESearch, BOHBSearch])
def test_state_of_another_version_searcher_or_shape_is_refused(cls):
    _, _, state = saved_after(cls, 4, seed=0)
    other = "RandomSearch"
    n = len(state["events"])
    cases = [({**state, "version": 2}, "has version 2, this tune-ext reads version 1"),
             ([1, 2], "is not a tune-ext searcher state"),
             ({**state, "searcher": other},
              f"is the state of a '{other}', not of a {cls.__name__}"),
             ({k: v for k, v in state.items() if k != "events"}, r"is malformed.*lacks \['events"),
             ({**state, "events": state["events"] + [["result", "t0", 1]]},
              f"is malformed.*event {n} is"),
             ({**state, "events": [["result", "nobody", 1, 0.5]]}, "is malformed: its events do "
                                                                   "not replay")]
    for bad, match in cases:
        with pytest.raises(ValueError, match=f"{cls.__name__}: the saved searcher state {match}"):
            cls().set_state(bad)


@pytest.mark.parametrize("cls", [TPESearch, RandomSearch])
def test_state_for_other_settings_or_space_is_refused(cls):
    _, _, state = saved_after(cls, 4, seed=0)
    with pytest.raises(ValueError, match="saved with mode='min', seed=0; this searcher has "
                                         "mode='max', seed=1; construct it with the experiment"):
        cls(seed=1, mode="max").set_state(state)
    with pytest.raises(ValueError, match=r"is for another search space \(params \['x', 'k'"):
        cls({"x": tune.uniform(0.0, 1.0)}).set_state(state)
    if cls is TPESearch:
        with pytest.raises(ValueError, match="saved with model arguments=.*'n_startup_trials': "
                                             "10.*this searcher has .*'n_startup_trials': 3"):
            cls(n_startup_trials=3).set_state(state)


def test_files_that_are_damaged_or_pickled_are_refused(tmp_path):
    s, _, _ = saved_after(BOHBSearch, 4, seed=0)
    path = tmp_path / "searcher-state-x.pkl"
    s.save(str(path))
    text = path.read_text()
    assert json.loads(text)["searcher"] == "BOHBSearch"   # the file is JSON text
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=f"BOHBSearch: cannot read the searcher state {path}"):
        BOHBSearch().restore(str(path))
    path.write_bytes(pickle.dumps({"_told": {}}))
    with pytest.raises(ValueError, match="written by an older tune-ext"):
        BOHBSearch().restore(str(path))
    path.write_text(json.dumps({**json.loads(text), "version": 7}))
    with pytest.raises(ValueError, match=f"BOHBSearch: the searcher state {path} has version 7"):
        BOHBSearch().restore(str(path))


def test_a_space_that_is_not_plain_data_needs_the_searchers_own_space():
    space = {"act": tune.choice([math.sqrt, math.exp]), "x": tune.uniform(0.0, 1.0)}
    s = RandomSearch(space, metric="loss", mode="min", seed=0)
    s.suggest("a")
    s.on_trial_complete("a", {"loss": 1.0, "training_iteration": 1})
    state = json.loads(json.dumps(s.get_state()))
    assert state["space"]["params"][0]["categories"] == ["<math.sqrt>", "<math.exp>"]
    with pytest.raises(ValueError, match="cannot rebuild the search space.*give the searcher the "
                                         "experiment's space"):
        RandomSearch().set_state(state)
    r = RandomSearch(space)
    r.set_state(state)
    assert r.suggest("b") == s.suggest("b")
    with pytest.raises(ValueError, match="another search space"):
        RandomSearch({"act": tune.choice([math.sqrt, math.log]),
                      "x": tune.uniform(0.0, 1.0)}).set_state(state)


@pytest.mark.parametrize("cls", ALL)
def test_points_to_evaluate_replay_and_the_rest_stay_queued(cls):
    """Fixed points are replayed as fixed (a partial one still draws the rest), and the points not
    yet suggested at the save are suggested next by the restored searcher too."""
    points = [{"x": 2.0, "k": 1, "c": "a", "q": 0.0, "nested": {"lr": 0.01}}, {"x": -1.0},
              {"x": 3.0}, {"k": 4}]
    s = cls(SPACE, metric="loss", mode="min", max_t=3, seed=4, points_to_evaluate=points)
    history(s, 2)
    pending = s.suggest("pending")   # the third point, in flight
    state = json.loads(json.dumps(s.get_state()))
    assert len(state["points"]) == 1 and pending["x"] == 3.0
    r = cls()
    r.set_state(state)
    ours, theirs = next_suggestions(r, pending), next_suggestions(s, pending)
    assert ours == theirs and ours[0]["k"] == 4

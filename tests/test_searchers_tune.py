"""Each searcher under a real ``tune.run``: plain runs, concurrency, seeds, schedulers, errors."""
import os
import sys
import time

import optuna
import pytest
import ray.cloudpickle
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from trainables import SupervisedTrainable
from tune_ext.searchers import BOHBSearch, CMAESSearch, RandomSearch, TPESearch

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests/

ALL = [TPESearch, CMAESSearch, BOHBSearch, RandomSearch]
SPACE = {"x": tune.uniform(-5.0, 5.0), "k": tune.randint(0, 3), "c": tune.choice(["a", "b"]),
         "nested": {"lr": tune.loguniform(1e-3, 1.0)}}


def objective(config):
    return (config["x"] - 2.0) ** 2 + config["k"] + (config["c"] == "b")


def quadratic(config):
    for t in range(1, config.get("steps", 3) + 1):
        if config["x"] > 8.0:
            raise RuntimeError("diverged")  # an errored trial, on purpose
        tune.report({"loss": objective(config) + 1.0 / t})


def barrier(config):
    """Reports only once ``n`` trials have started: proves they were suggested concurrently."""
    d = config["dir"]
    open(os.path.join(d, f"{config['x']!r}"), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(d)) < config["n"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(os.listdir(d))} of {config['n']} trials started")
        time.sleep(0.05)  # polling the files, not a timing assumption
    tune.report({"loss": objective(config)})


def run(searcher, trainable=quadratic, config=None, tmp_path=None, **kw):
    kw.setdefault("num_samples", 6)
    kw.setdefault("resources_per_trial", {"cpu": 1})
    return tune.run(trainable, config=config if config is not None else SPACE, search_alg=searcher,
                    metric="loss", mode="min", storage_path=str(tmp_path), verbose=0, **kw)


def plain(value):
    if isinstance(value, dict):
        return all(plain(v) for v in value.values())
    return type(value) in (int, float, str, bool, type(None))


@pytest.mark.parametrize("cls", ALL)
def test_searcher_under_tune_run(ray_local, tmp_path, cls):
    searcher = cls(seed=0)  # metric, mode and space all come from tune.run
    analysis = run(searcher, tmp_path=tmp_path, stop={"training_iteration": 3}, num_samples=4)
    assert [t.status for t in analysis.trials] == ["TERMINATED"] * 4
    assert searcher.n_observations == 4 and searcher.outcomes["complete"] == 4
    assert all(plain(t.config) for t in analysis.trials)
    assert len({t.config["x"] for t in analysis.trials}) == 4


@pytest.mark.parametrize("cls", [TPESearch, *[pytest.param(c, marks=pytest.mark.slow)
                                             for c in ALL[1:]]])
def test_four_concurrent_trials_get_four_configs(ray_local, tmp_path, cls):
    d = tmp_path / "started"
    d.mkdir()
    analysis = run(cls(seed=0), barrier, {**SPACE, "dir": str(d), "n": 4}, tmp_path,
                   num_samples=4, resources_per_trial={"cpu": 0.5})  # no max_concurrent_trials
    assert [t.status for t in analysis.trials] == ["TERMINATED"] * 4
    assert len({repr(sorted(t.config.items())) for t in analysis.trials}) == 4


@pytest.mark.parametrize("cls", [TPESearch, pytest.param(BOHBSearch, marks=pytest.mark.slow)])
def test_same_seed_same_configs_under_tune(ray_local, tmp_path, cls):
    def configs(sub):
        a = run(cls(seed=11), tmp_path=tmp_path / sub, max_concurrent_trials=1, num_samples=3)
        return [t.config for t in a.trials]

    first = configs("a")  # (other seeds differ: tests/test_searchers.py, driven directly)
    assert configs("b") == first and len({c["x"] for c in first}) == 3


def test_tpe_under_asha_tells_stopped_trials_pruned(ray_local, tmp_path):
    searcher = TPESearch(seed=0)
    asha = ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)
    analysis = run(searcher, config={**SPACE, "steps": 9}, tmp_path=tmp_path, scheduler=asha,
                   num_samples=8, stop={"training_iteration": 9})
    by_x = {t.params["x"]: t for t in searcher.study.trials}
    for trial in analysis.trials:
        ot = by_x[trial.config["x"]]
        last = trial.last_result
        full = last["training_iteration"] == 9
        assert ot.state == (optuna.trial.TrialState.COMPLETE if full
                            else optuna.trial.TrialState.PRUNED)
        assert ot.value == pytest.approx(last["loss"])
        assert max(ot.intermediate_values) == last["training_iteration"]
    assert 0 < searcher.outcomes["pruned"] < 8


@pytest.mark.parametrize("cls", [TPESearch])
def test_errored_trials_are_failures(ray_local, tmp_path, cls):
    space = {**SPACE, "x": tune.uniform(-5.0, 10.0)}
    searcher = cls(seed=0, points_to_evaluate=[{"x": 9.0}, {"x": 9.5}])
    analysis = run(searcher, config=space, tmp_path=tmp_path, raise_on_failed_trial=False)
    errored = [t for t in analysis.trials if t.status == "ERROR"]
    assert len(errored) >= 2  # the two forced points, maybe more if x > 8 was drawn
    assert searcher.outcomes["fail"] == len(errored) and searcher.n_observations == 6


def test_bohb_with_supervised_trainable(ray_local, tmp_path):
    searcher = BOHBSearch(metric="val_acc", mode="max", seed=0)
    space = {"dataset": "digits", "model": "mlp", "batch_size": 128, "epochs": 2, "seed": 0,
             "lr_0": tune.loguniform(1e-2, 0.5), "momentum": tune.uniform(0.0, 0.9)}
    analysis = tune.run(SupervisedTrainable, config=space, search_alg=searcher, num_samples=3,
                        stop={"training_iteration": 2}, storage_path=str(tmp_path), verbose=0,
                        resources_per_trial={"cpu": 1})
    assert [t.status for t in analysis.trials] == ["TERMINATED"] * 3
    assert searcher.outcomes == {"complete": 3, "pruned": 0, "fail": 0}
    # BOHB's losses are -val_acc at each epoch (budget) of each trial
    final = sorted(-t.last_result["val_acc"] for t in analysis.trials)
    assert sorted(loss for b, _, loss in searcher.observations if b == 2.0) == pytest.approx(final)
    assert max(-x for x in final) > 0.5


@pytest.mark.parametrize("scheduler", ["sha", pytest.param("hyperband", marks=pytest.mark.slow)])
def test_tpe_under_our_sync_schedulers_knows_max_t(ray_local, tmp_path, scheduler):
    """No max_t passed to the searcher: the scheduler hands it over, so only trials that reached
    max_t are COMPLETE (before, a trial stopped at rung 1 was COMPLETE while no trial had gone
    further)."""
    import e2e_helpers
    from tune_ext.schedulers import HyperbandScheduler, SuccessiveHalvingScheduler
    ray.cloudpickle.register_pickle_by_value(e2e_helpers)
    searcher = TPESearch(seed=0)
    sched = {"sha": SuccessiveHalvingScheduler, "hyperband": HyperbandScheduler}[scheduler](
        max_t=9, reduction_factor=3)
    analysis = tune.run(e2e_helpers.checkpointing_trainable,
                        config={"x": tune.uniform(0.0, 1.0), "steps": 9}, search_alg=searcher,
                        scheduler=sched, num_samples=9, metric="score", mode="max",
                        resources_per_trial={"cpu": 1}, storage_path=str(tmp_path), verbose=0)
    at_max_t = sum(t.last_result["step"] == 9 for t in analysis.trials)
    assert at_max_t >= 1
    assert searcher.outcomes == {"complete": at_max_t, "pruned": 9 - at_max_t, "fail": 0}

"""Searcher protocol, driven directly (suggest / on_trial_result / on_trial_complete), no Ray run."""
import math

import numpy as np
import optuna
import pytest
from ray import tune

from tune_ext.searchers import BOHBSearch, CMAESSearch, RandomSearch, TPESearch

ALL = [TPESearch, CMAESSearch, BOHBSearch, RandomSearch]
SPACE = {"x": tune.uniform(-5.0, 10.0), "y": tune.uniform(0.0, 15.0), "k": tune.randint(1, 5),
         "c": tune.choice(["a", "b"]), "q": tune.quniform(0.0, 1.0, 0.25),
         "nested": {"lr": tune.loguniform(1e-3, 1.0)}, "const": 9}


def loss(c):
    return (c["x"] - 2) ** 2 + (c["y"] - 3) ** 2 + 0.1 * c["k"] + (c["c"] == "b") + c["q"]


def drive(s, n, batch=1, start=0, f=loss):
    """n trials, ``batch`` suggested before any result; returns the configs in suggestion order."""
    out = []
    for i in range(start, start + n, batch):
        ids = [f"t{j}" for j in range(i, i + batch)]
        configs = [s.suggest(t) for t in ids]
        for t, c in zip(ids, configs):
            s.on_trial_result(t, {"loss": f(c), "training_iteration": 1})
            s.on_trial_complete(t, {"loss": f(c), "training_iteration": 1})
        out += configs
    return out


def assert_plain(value):
    if isinstance(value, dict):
        for v in value.values():
            assert_plain(v)
    else:
        assert type(value) in (int, float, str, bool, type(None), list), type(value)


@pytest.mark.parametrize("cls", ALL)
def test_pending_suggestions_are_distinct_and_plain(cls):
    s = cls(SPACE, metric="loss", mode="min", seed=0)
    drive(s, 20)  # past every model's startup phase
    configs = [s.suggest(f"p{i}") for i in range(4)]  # 4 pending at once, no results
    assert len({repr(sorted(c.items())) for c in configs}) == 4
    for c in configs:
        assert_plain(c)
        assert c["const"] == 9 and -5 <= c["x"] <= 10 and c["k"] in (1, 2, 3, 4)
        assert c["q"] in (0.0, 0.25, 0.5, 0.75, 1.0) and 1e-3 <= c["nested"]["lr"] <= 1.0


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_same_suggestions(cls):
    a = drive(cls(SPACE, metric="loss", mode="min", seed=7), 24, batch=3)
    b = drive(cls(SPACE, metric="loss", mode="min", seed=7), 24, batch=3)
    c = drive(cls(SPACE, metric="loss", mode="min", seed=8), 24, batch=3)
    assert a == b and a != c


@pytest.mark.parametrize("cls", ALL)
def test_points_to_evaluate_come_first(cls):
    points = [{"x": 2.0, "y": 3.0, "k": 1, "c": "a", "q": 0.0, "nested": {"lr": 0.01}},
              {"x": -1.0}]  # partial: the rest is the searcher's own proposal
    s = cls(SPACE, metric="loss", mode="min", seed=0, points_to_evaluate=points)
    first, second = s.suggest("a"), s.suggest("b")
    assert first == {**points[0], "const": 9}
    assert second["x"] == -1.0 and set(second) == set(first)


@pytest.mark.parametrize("cls", ALL)
def test_save_restore_continues_the_same_model(cls, tmp_path):
    s = cls(SPACE, metric="loss", mode="min", seed=3)
    drive(s, 15, batch=3)
    pending = s.suggest("pending")  # in flight when saved: must still be known after restore
    s.save(str(tmp_path / "s.pkl"))
    r = cls()  # a fresh, unconfigured instance, as Ray restores into
    r.restore(str(tmp_path / "s.pkl"))
    assert r.n_observations == s.n_observations == 15
    r.on_trial_complete("pending", {"loss": loss(pending), "training_iteration": 1})
    s.on_trial_complete("pending", {"loss": loss(pending), "training_iteration": 1})
    assert drive(r, 6, start=100) == drive(s, 6, start=100)  # RNG and model continue identically
    assert r.n_observations == 22


@pytest.mark.parametrize("cls", ALL)
def test_non_finite_results_are_failures_and_search_goes_on(cls):
    s = cls(SPACE, metric="loss", mode="min", seed=0)
    bad = iter([math.nan, math.inf, -math.inf] * 10)
    drive(s, 30, batch=2, f=lambda c: next(bad) if c["k"] == 1 else loss(c))
    assert s.outcomes["fail"] > 0 and s.outcomes["complete"] + s.outcomes["fail"] == 30
    assert_plain(s.suggest("next"))


@pytest.mark.parametrize("cls", ALL)
def test_bad_input_is_rejected(cls):
    with pytest.raises(ValueError, match="no tunable parameters"):
        cls({"a": 1}, metric="loss", mode="min")
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        cls(SPACE, metric="loss", mode="minimize")
    with pytest.raises(ValueError, match="metric and mode must be set"):
        cls(SPACE).suggest("t")
    with pytest.raises(ValueError, match="no search space"):
        cls(metric="loss", mode="min").suggest("t")
    with pytest.raises(ValueError, match="search space is empty|no tunable"):
        cls(metric="loss", mode="min").set_search_properties(None, None, {})
    s = cls(SPACE, metric="loss", mode="min")
    s.suggest("t")
    with pytest.raises(ValueError, match="metric 'loss' is missing"):
        s.on_trial_result("t", {"acc": 1.0, "training_iteration": 1})
    with pytest.raises(ValueError, match="points_to_evaluate sets 'z'"):
        cls(SPACE, metric="loss", mode="min", points_to_evaluate=[{"z": 1}])


@pytest.mark.parametrize("cls", ALL)
def test_set_search_properties_takes_rays_config_metric_mode_and_stop(cls):
    s = cls()
    assert s.set_search_properties("loss", "max", SPACE, stop={"training_iteration": 4})
    assert (s.metric, s.mode, s.get_state()["settings"]["max_t"]) == ("loss", "max", 4)
    assert set(s.suggest("t")) == {"x", "y", "k", "c", "q", "nested", "const"}
    # a searcher that has its own space declines a second one (Ray then reports the clash)
    assert not cls(SPACE).set_search_properties("loss", "min", {"x": tune.uniform(0, 1)})


def test_tpe_reports_intermediates_and_tells_pruned_with_last_value():
    s = TPESearch({"x": tune.uniform(0, 1)}, metric="acc", mode="max", seed=0, max_t=4)
    for t in ("full", "stopped", "broken"):
        s.suggest(t)
    for step in (1, 2, 3, 4):
        s.on_trial_result("full", {"acc": 0.1 * step, "training_iteration": step})
    s.on_trial_complete("full", {"acc": 0.5, "training_iteration": 4})
    s.on_trial_result("stopped", {"acc": 0.2, "training_iteration": 1})
    # the scheduler's STOP result never reaches on_trial_result, only on_trial_complete
    s.on_trial_complete("stopped", {"acc": 0.25, "training_iteration": 2})
    s.on_trial_result("broken", {"acc": 0.3, "training_iteration": 1})
    s.on_trial_complete("broken", None, error=True)
    full, stopped, broken = s.study.trials
    assert full.state == optuna.trial.TrialState.COMPLETE and full.value == 0.5
    assert full.intermediate_values == {1: 0.1, 2: 0.2, 3: pytest.approx(0.3), 4: 0.4}
    assert stopped.state == optuna.trial.TrialState.PRUNED and stopped.value == 0.25
    assert stopped.intermediate_values == {1: 0.2, 2: 0.25}
    assert broken.state == optuna.trial.TrialState.FAIL
    assert s.outcomes == {"complete": 1, "pruned": 1, "fail": 1}


def test_tpe_constant_liar_and_model_beat_random():
    """Seeded, so deterministic: after 40 trials TPE's proposals have half the loss."""
    space = {"x": tune.uniform(-5.0, 10.0), "y": tune.uniform(0.0, 15.0)}
    f = lambda c: (c["x"] - 2) ** 2 + (c["y"] - 3) ** 2  # noqa: E731

    def late_median(cls):
        s = cls(space, metric="loss", mode="min", seed=1)
        return np.median([f(c) for c in drive(s, 60, batch=4, f=f)[40:]])

    assert late_median(TPESearch) < 0.5 * late_median(RandomSearch)
    assert TPESearch(space).get_state()["model"]["constant_liar"] is True


def test_cmaes_models_numbers_and_samples_categories_independently():
    s = CMAESSearch(SPACE, metric="loss", mode="min", seed=0, popsize=6)
    drive(s, 30, batch=3)
    relative = [t for t in s.study.trials if any(k.startswith("cmawm:") for k in t.system_attrs)]
    assert len(relative) >= 20  # CMA-ES with margin (not the fallback) drew the numbers
    assert isinstance(s.study.sampler._independent_sampler, optuna.samplers.RandomSampler)
    cats = {t.params["c"] for t in s.study.trials}
    assert cats == {0, 1}  # categories still explored, by the independent sampler


def test_random_search_uses_rays_distributions():
    s = RandomSearch({"k": tune.randint(0, 3), "lr": tune.loguniform(1e-4, 1.0)},
                     metric="loss", mode="min", seed=0)
    configs = [s.suggest(str(i)) for i in range(3000)]
    counts = np.bincount([c["k"] for c in configs])
    assert len(counts) == 3 and counts.min() > 900  # 0, 1, 2 equally often; 3 never
    logs = np.log10([c["lr"] for c in configs])
    assert abs(np.mean(logs < -2) - 0.5) < 0.05  # log-uniform: half the mass below 1e-2


@pytest.mark.parametrize("make, match", [
    (lambda: TPESearch(n_startup_trial=3), "TPESearch: 'n_startup_trial'.*did you mean 'n_startup_trials'"),
    (lambda: CMAESSearch(foo=1), "CMAESSearch: 'foo' is not an argument"),
    (lambda: CMAESSearch(sigma=0.5), "did you mean 'sigma0'"),
    (lambda: CMAESSearch(sigma0="a"), "sigma0 must be a finite number > 0"),
    (lambda: CMAESSearch(independent_sampler=None), "'independent_sampler' is set by this class"),
])
def test_misspelled_or_invalid_arguments_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()
    # a sampler's own arguments still pass through
    TPESearch(n_ei_candidates=8)
    CMAESSearch(restart_strategy=None)

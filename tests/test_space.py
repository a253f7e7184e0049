"""Space conversion: every Ray domain type, Ray's bound semantics, and clear errors."""
import math

import numpy as np
import optuna
import pytest
from ray import tune

from tune_ext.searchers.space import SearchSpace, flatten, unflatten


def values_ray_draws(domain, n=4000, seed=0):
    """The set of values Ray's own sampler produces (the independent reference)."""
    rng = np.random.default_rng(seed)
    return set(domain.sample(size=n, random_state=rng))


def all_values(space, key):
    """Every value a searcher can return for ``key``: the decoded internal grid."""
    p = space.by_key[key]
    assert p.kind == "int"
    return {space.decode({**{q.key: q.low for q in space.params}, key: k})[key]
            for k in range(int(p.low), int(p.high) + 1)}


@pytest.mark.parametrize("domain, expected", [
    (tune.randint(1, 5), {1, 2, 3, 4}),                  # upper bound exclusive
    (tune.randint(-3, 0), {-3, -2, -1}),
    (tune.lograndint(1, 8), {1, 2, 3, 4, 5, 6, 7}),       # exclusive, log scale
    (tune.qrandint(0, 10, 5), {0, 5, 10}),                # q > 1: upper inclusive
    (tune.qrandint(1, 10, 3), {3, 6, 9}),                 # bounds snapped inwards to multiples
    (tune.qrandint(1, 4, 1), {1, 2, 3}),                  # q == 1 is randint: exclusive
    (tune.qlograndint(2, 16, 2), {2, 4, 6, 8, 10, 12, 14, 16}),
])
def test_integer_domains_have_rays_exact_value_set(domain, expected):
    space = SearchSpace.from_config({"a": domain, "other": tune.uniform(0, 1)})
    assert all_values(space, "a") == expected
    assert values_ray_draws(domain) == expected  # the reference agrees with the table above
    vals = [space.decode(space.sample(np.random.default_rng(i)))["a"] for i in range(300)]
    assert set(vals) == expected and all(type(v) is int for v in vals)


@pytest.mark.parametrize("domain, q", [
    (tune.quniform(0.0, 1.0, 0.25), 0.25),
    (tune.quniform(0.2, 1.0, 0.2), 0.2),
    (tune.qloguniform(0.01, 1.0, 0.01), 0.01),
])
def test_quantised_floats_are_the_grid_ray_samples(domain, q):
    space = SearchSpace.from_config({"a": domain})
    ours = all_values(space, "a")
    ray = values_ray_draws(domain, n=20000)
    assert all(type(v) is float for v in ours)
    assert {round(v / q) for v in ray} <= {round(v / q) for v in ours}
    assert min(ours) == pytest.approx(min(ray)) and max(ours) == pytest.approx(max(ray))
    assert all(math.isclose(round(v / q) * q, v) for v in ours)


def test_optuna_distributions():
    space = SearchSpace.from_config({
        "u": tune.uniform(-1, 2), "lu": tune.loguniform(1e-4, 1e-1), "ri": tune.randint(1, 5),
        "lri": tune.lograndint(1, 100), "qu": tune.quniform(0, 1, 0.1), "c": tune.choice("xyz"),
        "const": 7})
    d = space.to_optuna()
    assert d["u"] == optuna.distributions.FloatDistribution(-1, 2)
    assert d["lu"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["ri"] == optuna.distributions.IntDistribution(1, 4)
    assert d["lri"] == optuna.distributions.IntDistribution(1, 99, log=True)
    assert d["qu"] == optuna.distributions.IntDistribution(0, 10)
    assert d["c"] == optuna.distributions.CategoricalDistribution([0, 1, 2])
    assert "const" not in d and space.constants == {"const": 7}


def test_configspace_1x():
    import ConfigSpace as CS

    space = SearchSpace.from_config({"u": tune.uniform(-1, 2), "lu": tune.loguniform(1e-4, 1e-1),
                                     "ri": tune.randint(1, 5), "c": tune.choice([None, [1], "s"])})
    cs = space.to_configspace(seed=0)
    assert isinstance(cs["u"], CS.UniformFloatHyperparameter) and (cs["u"].lower, cs["u"].upper) == (-1, 2)
    assert cs["lu"].log and (cs["ri"].lower, cs["ri"].upper) == (1, 4)
    assert list(cs["c"].choices) == [0, 1, 2]
    for conf in cs.sample_configuration(50):
        cfg = space.decode(dict(conf))
        assert 1 <= cfg["ri"] <= 4 and cfg["c"] in (None, [1], "s")


def test_nested_dicts_flatten_with_rays_keys_and_constants_survive():
    config = {"opt": {"lr": tune.loguniform(1e-3, 1.0), "sched": {"gamma": tune.uniform(0, 1)}},
              "model": {"width": 64}, "seed": 3, "tags": ["a", "b"]}
    space = SearchSpace.from_config(config)
    assert [p.key for p in space.params] == ["opt/lr", "opt/sched/gamma"]
    out = space.decode({"opt/lr": 0.1, "opt/sched/gamma": 0.5})
    assert out == {"opt": {"lr": 0.1, "sched": {"gamma": 0.5}}, "model": {"width": 64}, "seed": 3,
                   "tags": ["a", "b"]}
    assert unflatten(flatten(out)) == out
    # points_to_evaluate may be nested or flat, partial, and are validated against Ray's values
    assert space.encode({"opt": {"lr": 0.01}}) == {"opt/lr": 0.01}
    assert space.encode({"opt/sched/gamma": 1.0}) == {"opt/sched/gamma": 1.0}


@pytest.mark.parametrize("config, match", [
    ({"a": tune.grid_search([1, 2])}, "a: tune.grid_search"),
    ({"n": {"b": tune.sample_from(lambda c: 1)}}, "n/b: tune.sample_from"),
    ({"r": tune.randn(0, 1)}, "r: tune.randn.*unbounded"),
    ({"r": tune.qrandn(0, 1, 0.1)}, "r: tune.randn"),
    ({}, "no tunable parameters"),
    ({"only": 3, "constants": {"x": 1}}, "no tunable parameters"),
    ({"a": tune.qrandint(1, 2, 5)}, "a: .*no values"),
    ({"a": tune.randint(3, 4)}, "a: .*single value"),
    ({"l": [tune.uniform(0, 1)]}, "l: Ray Tune domains inside lists"),
    ({"a/b": tune.uniform(0, 1)}, "without '/'"),
])
def test_unsupported_domains_raise_naming_the_key(config, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace.from_config(config)


@pytest.mark.parametrize("point, match", [
    ({"ri": 5}, "ri: 5 is outside"),                       # randint(1, 5): 5 is never drawn
    ({"ri": 2.5}, "ri: expected an integer"),
    ({"qu": 0.15}, "qu: 0.15 is not a multiple of q=0.1"),
    ({"c": "w"}, "c: 'w' is not one of the choices"),
    ({"c": True}, "not one of the choices"),               # True is not the category 1
    ({"nope": 1}, "'nope', which is not in the search space"),
])
def test_points_outside_rays_values_are_rejected(point, match):
    space = SearchSpace.from_config({"ri": tune.randint(1, 5), "qu": tune.quniform(0, 1, 0.1),
                                     "c": tune.choice(["x", 1])})
    with pytest.raises(ValueError, match=match):
        space.encode(point)


def test_numpy_scalars_become_python_values():
    space = SearchSpace.from_config({"c": tune.choice([np.int64(3), np.float32(0.5)]),
                                     "x": tune.uniform(0, 1)})
    out = space.decode({"c": np.int64(0), "x": np.float64(0.3)})
    assert type(out["c"]) is int and type(out["x"]) is float

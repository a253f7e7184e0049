"""Ray Tune search spaces -> optuna distributions and ConfigSpace, with Ray's exact value sets.

A Ray ``config`` is flattened into ``"a/b"`` keys (Ray's own convention for nested dicts), split into
searched parameters and constants, and each searched parameter is given one *internal* coordinate
that optuna, ConfigSpace/hpbandster and our random sampler all share:

============================  ==========================================  =======================
Ray domain                    values Ray can draw                         internal coordinate
============================  ==========================================  =======================
``uniform(a, b)``             floats in [a, b]                            float [a, b]
``loguniform(a, b)``          floats in [a, b], log scale                 float [a, b], log
``quniform(a, b, q)``         multiples k*q in [a, b] (both ends)         int k, value k*q
``qloguniform(a, b, q)``      multiples k*q in [a, b], log scale          int k (log), value k*q
``randint(a, b)``             a, ..., b-1 (upper bound *exclusive*)       int [a, b-1]
``lograndint(a, b)``          a, ..., b-1, log scale                      int [a, b-1], log
``qrandint(a, b, q)``, q > 1  multiples k*q in [a, b] (both ends)         int k, value k*q
``qrandint(a, b, 1)``         a, ..., b-1 (same as ``randint``)           int [a, b-1]
``qlograndint(a, b, q)``      multiples k*q in [a, b], log scale          int k (log), value k*q
``choice(cats)``              the categories                              categorical index
============================  ==========================================  =======================

Quantised parameters are searched over the grid index k because optuna cannot combine ``log`` with
``step`` and ConfigSpace 1.x dropped ``q``; the model therefore sees exactly the grid Ray samples.
``grid_search``, ``sample_from`` and ``randn``/``qrandn`` (unbounded) cannot be modelled and raise a
``ValueError`` naming the key. Values handed back are plain Python ``int``/``float``/categories.

Example::

    from ray import tune
    from tune_ext.searchers.space import SearchSpace

    space = SearchSpace.from_config({"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 4),
                                     "opt": {"momentum": tune.quniform(0.0, 0.9, 0.1)}, "seed": 0})
    space.to_optuna()["layers"]          # IntDistribution(low=1, high=3, ...): Ray's 4 is exclusive
    space.decode({"lr": 0.01, "layers": 2, "opt/momentum": 3})
    # -> {"lr": 0.01, "layers": 2, "opt": {"momentum": 0.30000000000000004}, "seed": 0}
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.tune.search.sample import Categorical, Domain, Float, Function, Integer, Normal, Quantized

from tune_ext.searchers.state import is_plain, signature

DELIMITER = "/"


@dataclass(frozen=True)
class Param:
    """One searched parameter: its internal coordinate and how it maps back to Ray's value."""

    key: str
    kind: str  # "float", "int" or "categorical": the internal coordinate
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    q: float | int | None = None  # value = k * q for quantised parameters
    value_type: type = float  # Ray's cast of the value: float or int
    categories: tuple = ()

    # -- conversions ---------------------------------------------------------------------------
    def to_optuna(self):
        import optuna

        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(range(len(self.categories))))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def to_configspace(self):
        import ConfigSpace as CS

        if self.kind == "categorical":
            return CS.CategoricalHyperparameter(self.key, list(range(len(self.categories))))
        if self.kind == "int":
            return CS.UniformIntegerHyperparameter(self.key, int(self.low), int(self.high), log=self.log)
        return CS.UniformFloatHyperparameter(self.key, self.low, self.high, log=self.log)

    def decode(self, internal: Any) -> Any:
        """Internal coordinate -> the plain Python value Ray would have sampled."""
        if self.kind == "categorical":
            return plain(copy.deepcopy(self.categories[int(internal)]))
        if self.q is not None:
            return self.value_type(int(round(float(internal))) * self.q)
        if self.kind == "int":
            return int(round(float(internal)))
        return min(max(float(internal), self.low), self.high)

    def encode(self, value: Any) -> Any:
        """A user's value (e.g. from ``points_to_evaluate``) -> internal coordinate; ValueError if
        Ray could never have sampled it."""
        if self.kind == "categorical":
            for i, c in enumerate(self.categories):
                if _same(c, value):
                    return i
            raise ValueError(f"{self.key}: {value!r} is not one of the choices {list(self.categories)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{self.key}: expected a number, got {value!r}")
        v = float(value)
        if self.q is not None:
            k = round(v / self.q)
            if not math.isclose(k * self.q, v, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"{self.key}: {value!r} is not a multiple of q={self.q}")
            v = float(k)
        if self.kind == "int" and v != int(v):
            raise ValueError(f"{self.key}: expected an integer, got {value!r}")
        if not self.low <= v <= self.high:
            raise ValueError(f"{self.key}: {value!r} is outside the values Ray samples, "
                             f"{self.describe()}")
        return int(v) if self.kind == "int" else v

    def sample(self, rng: np.random.Generator) -> Any:
        """An internal coordinate drawn with exactly Ray's sampling distribution."""
        if self.kind == "categorical":
            return int(rng.integers(len(self.categories)))
        if self.kind == "float":
            if self.log:
                return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
            return float(rng.uniform(self.low, self.high))
        lo, hi = int(self.low), int(self.high)
        if self.q is not None and self.value_type is float:
            # Ray draws a float between the grid's ends and rounds it to the grid.
            a, b = lo * self.q, hi * self.q
            v = math.exp(rng.uniform(math.log(a), math.log(b))) if self.log else rng.uniform(a, b)
            return int(min(max(round(v / self.q), lo), hi))
        if self.log:  # Ray: floor(exp(U(log lo, log(hi + 1))))
            return int(min(math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))), hi))
        return int(rng.integers(lo, hi + 1))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"choice of {len(self.categories)}"
        scale = " (log)" if self.log else ""
        if self.q is not None:
            return f"multiples of {self.q} in [{self.low * self.q}, {self.high * self.q}]{scale}"
        return f"[{self.low}, {self.high}]{scale}"


class SearchSpace:
    """A flattened Ray Tune config: searched ``params`` (in key order) and ``constants``."""

    def __init__(self, params: list[Param], constants: dict[str, Any]):
        if not params:
            raise ValueError("the search space has no tunable parameters: give at least one Ray "
                             "Tune domain such as tune.uniform(0, 1)")
        self.params = params
        self.constants = constants
        self.by_key = {p.key: p for p in params}

    @classmethod
    def from_config(cls, config: dict) -> "SearchSpace":
        if not isinstance(config, dict):
            raise ValueError(f"space must be a dict of Ray Tune domains, got {type(config).__name__}")
        params, constants = [], {}
        for key, value in flatten(config).items():
            if isinstance(value, Domain):
                params.append(convert_domain(key, value))
            else:
                _reject_hidden_domains(key, value)
                constants[key] = value
        return cls(params, constants)

    def to_optuna(self) -> dict:
        return {p.key: p.to_optuna() for p in self.params}

    def to_configspace(self, seed: int | None = None):
        import ConfigSpace as CS

        cs = CS.ConfigurationSpace(seed=seed)
        cs.add([p.to_configspace() for p in self.params])
        return cs

    def decode(self, internal: dict) -> dict:
        """Internal coordinates of every param -> the nested config Ray runs (constants included)."""
        flat = dict(self.constants)
        for p in self.params:
            flat[p.key] = p.decode(internal[p.key])
        return unflatten(flat)

    def encode(self, point: dict) -> dict:
        """A (possibly partial, possibly nested) config -> internal coordinates of the keys it sets."""
        if not isinstance(point, dict):
            raise ValueError(f"points_to_evaluate entries must be dicts, got {point!r}")
        out = {}
        for key, value in flatten(point, flat_keys=True).items():
            if key in self.by_key:
                out[key] = self.by_key[key].encode(value)
            elif key not in self.constants:
                raise ValueError(f"points_to_evaluate sets {key!r}, which is not in the search "
                                 f"space (searched keys: {list(self.by_key)})")
        return out

    def sample(self, rng: np.random.Generator) -> dict:
        return {p.key: p.sample(rng) for p in self.params}

    # -- plain data (a searcher's saved state) -------------------------------------------------
    def to_data(self) -> dict:
        """The space as JSON-able data: every param's coordinate and values, and the constants;
        a category or constant that is not plain data is described by its type and name (and
        ``plain`` says whether ``from_data`` can rebuild the space)."""
        values = [c for p in self.params for c in p.categories] + list(self.constants.values())
        return {"params": [{"key": p.key, "kind": p.kind, "low": p.low, "high": p.high,
                            "log": p.log, "q": p.q, "value_type": p.value_type.__name__,
                            "categories": [signature(c) for c in p.categories]}
                           for p in self.params],
                "constants": {k: signature(v) for k, v in self.constants.items()},
                "plain": all(is_plain(v) for v in values)}

    @classmethod
    def from_data(cls, data: dict) -> "SearchSpace":
        """The space ``to_data`` described; ValueError when a category or constant was not plain
        data (then only the original Ray domains can rebuild it)."""
        if not data["plain"]:
            raise ValueError("the search space has categories or constants that are not plain "
                             "data")
        types = {"int": int, "float": float}
        params = [Param(d["key"], d["kind"], d["low"], d["high"], bool(d["log"]), d["q"],
                        types[d["value_type"]], tuple(d["categories"])) for d in data["params"]]
        return cls(params, dict(data["constants"]))


def convert_domain(key: str, domain: Domain) -> Param:
    """One Ray domain -> its :class:`Param`; ValueError naming ``key`` for what cannot be modelled."""
    sampler = domain.get_sampler()
    if isinstance(domain, Function):
        raise ValueError(f"{key}: tune.sample_from cannot be converted to a model-based search "
                         "space; use a bounded domain such as tune.uniform")
    if isinstance(domain, Categorical):
        if not domain.categories:
            raise ValueError(f"{key}: tune.choice needs at least one category")
        for c in domain.categories:
            _reject_hidden_domains(key, c)
        return Param(key, "categorical", categories=tuple(plain(c) for c in domain.categories))
    q = None
    if isinstance(sampler, Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
        if not q > 0:
            raise ValueError(f"{key}: quantisation q must be > 0, got {q}")
    if isinstance(sampler, Normal):
        raise ValueError(f"{key}: tune.randn/qrandn is unbounded; model-based searchers need a "
                         "bounded domain such as tune.uniform(mean - 3*sd, mean + 3*sd)")
    log = type(sampler).__name__.endswith("LogUniform")
    lower, upper = domain.lower, domain.upper
    if not (np.isfinite(lower) and np.isfinite(upper)):
        raise ValueError(f"{key}: the domain needs finite bounds, got [{lower}, {upper}]")
    if isinstance(domain, Float):
        if q is None:
            if not lower < upper:
                raise ValueError(f"{key}: needs lower < upper, got [{lower}, {upper}]")
            return Param(key, "float", float(lower), float(upper), log, None, float)
        lo, hi = _grid(lower, q, math.ceil), _grid(upper, q, math.floor)
        return _check_int(Param(key, "int", lo, hi, log, plain(q), float))
    if isinstance(domain, Integer):
        if q is None or q == 1:  # Ray: the upper bound is exclusive unless q > 1
            return _check_int(Param(key, "int", int(lower), int(upper) - 1, log, None, int))
        lo, hi = _grid(lower, q, math.ceil), _grid(upper, q, math.floor)
        return _check_int(Param(key, "int", lo, hi, log, int(q), int))
    raise ValueError(f"{key}: unsupported Ray Tune domain {type(domain).__name__} with sampler "
                     f"{type(sampler).__name__}")


def _grid(bound: float, q: float, round_fn) -> int:
    """``bound``'s index on the grid of multiples of q, rounded inwards (as Ray's Quantized)."""
    scaled = bound / q
    nearest = round(scaled)
    return int(nearest if math.isclose(scaled, nearest) else round_fn(scaled))


def _check_int(p: Param) -> Param:
    if p.high < p.low:
        raise ValueError(f"{p.key}: the domain has no values to sample (bounds [{p.low}, "
                         f"{p.high + (1 if p.q is None else 0)}) with q={p.q})")
    if p.high == p.low:
        raise ValueError(f"{p.key}: the domain has a single value ({p.decode(p.low)!r}); "
                         "pass it as a constant instead")
    if p.log and p.low <= 0:
        raise ValueError(f"{p.key}: a log domain needs a positive lower bound")
    return p


def flatten(config: dict, prefix: str = "", flat_keys: bool = False) -> dict:
    """Nested dicts -> ``{"a/b": value}`` (Ray's ``flatten_dict`` convention); ``{"grid_search":
    ...}`` is rejected with the key named, and so are keys with "/" unless ``flat_keys``."""
    out = {}
    for k, v in config.items():
        if not isinstance(k, str) or (DELIMITER in k and not flat_keys):
            raise ValueError(f"config keys must be strings without {DELIMITER!r}, got {k!r}")
        key = prefix + k
        if isinstance(v, dict) and "grid_search" in v:
            raise ValueError(f"{key}: tune.grid_search cannot be combined with a searcher; "
                             "use tune.choice or points_to_evaluate")
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + DELIMITER, flat_keys))
        else:
            out[key] = v
    return out


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(DELIMITER)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _reject_hidden_domains(key: str, value: Any) -> None:
    if isinstance(value, Domain):
        raise ValueError(f"{key}: Ray Tune domains inside lists or choices cannot be searched")
    if isinstance(value, (list, tuple)):
        for v in value:
            _reject_hidden_domains(key, v)
    if isinstance(value, dict):
        if "grid_search" in value:
            raise ValueError(f"{key}: tune.grid_search cannot be combined with a searcher")
        for v in value.values():
            _reject_hidden_domains(key, v)


def _same(a: Any, b: Any) -> bool:
    """Category equality that keeps ``True`` and ``1`` apart."""
    try:
        return isinstance(a, bool) == isinstance(b, bool) and bool(a == b)
    except Exception:  # e.g. comparing arrays of different shapes
        return False


def plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python values, recursively through lists and dicts."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value

"""BOHBSearch: hpbandster's BOHB configuration generator fed with every budget Ray reports.

Falkner, Klein & Hutter, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale",
ICML 2018. The model is hpbandster's own (``hpbandster.optimizers.config_generators.bohb.BOHB``):
per budget, a good and a bad multivariate KDE over the ConfigSpace (top ``top_n_percent`` vs the
rest); a proposal maximises l(x)/g(x) over ``num_samples`` draws from the good KDE widened by
``bandwidth_factor``; a ``random_fraction`` of proposals is random; the model used is the one of the
*largest budget with at least* ``min_points_in_model`` observations (Algorithm 2 of the paper).

The budget of an observation is the result's ``time_attr`` value. Every result a trial reports is
fed in, so the searcher works under any scheduler: with our HyperbandScheduler it is BOHB exactly;
under ASHA/SHA or FIFO it models whatever budgets arrive (trials that were never stopped make the
largest budget; with a float ``time_attr`` no budget repeats, so it stays random search).

ConfigSpace 1.x compatibility is handled here, not by patching hpbandster: quantised parameters
are integer grid indices (ConfigSpace 1.x has no ``q``), categories are indices, and hpbandster's
use of the global ``numpy.random`` state is confined to the searcher's own seeded state.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from tune_ext.searchers._base import FAIL, SpaceSearcher
from tune_ext.validate import in_interval, int_at_least, positive


class _Job:
    """The two fields of an hpbandster ``Job`` that ``BOHB.new_result`` reads."""

    def __init__(self, config: dict, budget: float, loss: float | None):
        self.kwargs = {"config": config, "budget": budget}
        self.result = None if loss is None else {"loss": loss}
        self.exception = None
        self.id = None


class BOHBSearch(SpaceSearcher):
    """BOHB's model-based search (hpbandster's KDE) for Ray Tune, under any scheduler.

    ``model_based_picks`` counts proposals that came from a KDE.

    Falkner et al. 2018 (ICML).

    Args:
        space: the search space (Ray Tune domains); or leave None and give ``config=`` /
            ``param_space=`` to Ray Tune.
        metric, mode: what to optimise, "min" or "max"; or give them to ``tune.run`` /
            ``tune.TuneConfig``.
        points_to_evaluate: configurations to try first, as Ray's searchers take them.
        seed: the seed of every random draw (same seed, same suggestions).
        time_attr: the budget key of results (default ``"training_iteration"``).
        max_t: the budget of a full run: a trial ending earlier is told PRUNED (defaults to a
            tune-ext scheduler's ``max_t``, else ``stop[time_attr]``).
        min_points_in_model: observations at a budget before its KDE is used (None: dimensions + 1).
        top_n_percent: the share of observations in the "good" KDE (15).
        num_samples: candidates drawn from the good KDE per suggestion (64).
        random_fraction: the share of suggestions drawn at random (1/3).
        bandwidth_factor: widening of the sampling KDE (3).
        min_bandwidth: the smallest KDE bandwidth (1e-3).

    Example::

        from ray import tune
        from tune_ext.schedulers import HyperbandScheduler
        from tune_ext.searchers import BOHBSearch

        def f(config):
            for t in range(1, 10):
                tune.report({"loss": (config["x"] - 2) ** 2 + 1 / t})

        tune.run(f, config={"x": tune.uniform(-5, 5)}, num_samples=10, metric="loss",
                 mode="min", search_alg=BOHBSearch(seed=0), scheduler=HyperbandScheduler(max_t=9))
    """

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, seed=None,
                 time_attr="training_iteration", max_t=None, min_points_in_model=None,
                 top_n_percent=15, num_samples=64, random_fraction=1 / 3, bandwidth_factor=3,
                 min_bandwidth=1e-3):
        int_at_least("min_points_in_model", min_points_in_model, 1, allow_none=True)
        in_interval("top_n_percent", top_n_percent, 0, 100, low_closed=False, high_closed=False)
        int_at_least("num_samples", num_samples, 1)
        in_interval("random_fraction", random_fraction, 0, 1)
        positive("bandwidth_factor", bandwidth_factor)
        positive("min_bandwidth", min_bandwidth)
        self._bohb_kwargs = dict(min_points_in_model=min_points_in_model,
                                 top_n_percent=top_n_percent, num_samples=num_samples,
                                 random_fraction=random_fraction,
                                 bandwidth_factor=bandwidth_factor, min_bandwidth=min_bandwidth)
        super().__init__(space, metric, mode, points_to_evaluate, seed, time_attr, max_t)
        self.paused_trials: set[str] = set()

    # Ray's HyperBandForBOHB calls these two on its searcher (TuneBOHB's protocol, which uses
    # them for its own concurrency cap). BOHBSearch has no cap: a pause changes no suggestion;
    # the set is only what the scheduler has paused, for inspection.
    def on_pause(self, trial_id: str) -> None:
        self.paused_trials.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.paused_trials.discard(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.paused_trials.discard(trial_id)
        super().on_trial_complete(trial_id, result, error)

    def _model_settings(self) -> dict:
        return self._bohb_kwargs

    def _setup(self) -> None:
        from hpbandster.optimizers.config_generators.bohb import BOHB

        rng = np.random.RandomState(self._seed)
        self._np_state = rng.get_state()  # hpbandster draws from the global numpy RNG
        with self._own_rng():
            cs = self._space.to_configspace(seed=int(np.random.randint(2**31 - 1)))
            self._cg = BOHB(cs, **self._bohb_kwargs)
        self.observations: list[tuple[float, dict, float]] = []  # (budget, params, loss)
        self.model_based_picks = 0

    def _propose(self, trial_id: str, fixed: dict) -> dict:
        if len(fixed) == len(self._space.params):
            return dict(fixed)
        with self._own_rng():
            budget = self._cg.largest_budget_with_model()
            config, info = self._cg.get_config(budget)
        self.model_based_picks += bool(info.get("model_based_pick"))
        return {p.key: config[p.key] for p in self._space.params}

    def _observe(self, trial_id, entry, step, value) -> None:
        fed = entry.setdefault("fed", [])
        if step in fed:
            return
        fed.append(step)
        loss = self._sign * value if math.isfinite(value) else None  # None: hpbandster's "failed"
        self.observations.append((step, entry["params"], math.inf if loss is None else loss))
        with self._own_rng():
            self._cg.new_result(_Job(entry["params"], step, loss))

    def _record(self, trial_id, entry, state, step, value) -> None:
        if step is None:
            return  # errored before its first result: no budget to attach it to
        if state == FAIL:
            value = math.nan
        self._observe(trial_id, entry, step, value)

    @property
    def model_budgets(self) -> list[float]:
        """Budgets that have a KDE model, ascending (the largest one is used)."""
        self._check_ready()
        return sorted(self._cg.kde_models)

    @contextlib.contextmanager
    def _own_rng(self):
        outer = np.random.get_state()
        np.random.set_state(self._np_state)
        try:
            with warnings.catch_warnings():
                # ConfigSpace 1.x deprecation notices for hpbandster's 0.4-era calls, and
                # statsmodels/KDE divide-by-zero on degenerate data (handled by hpbandster)
                warnings.simplefilter("ignore")
                with np.errstate(divide="ignore", invalid="ignore"):
                    yield
        finally:
            self._np_state = np.random.get_state()
            np.random.set_state(outer)

"""TPESearch and CMAESSearch: optuna's samplers behind Ray Tune's Searcher protocol.

TPE: Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011, with optuna's
multivariate TPE (Falkner et al. 2018's product kernel) and the *constant liar* for pending trials,
so concurrent suggestions differ without a ConcurrencyLimiter.
CMA-ES: Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772; integer and quantised
parameters use CMA-ES with margin (Hamano et al., GECCO 2022).

Every Ray result is reported to the optuna trial as an intermediate value at step ``time_attr``;
a trial that ends before ``max_t`` (a scheduler stopped it) is told ``PRUNED``, so optuna ranks it by
its last value and the step it reached; an errored trial or a NaN/inf metric is told ``FAIL``.
"""
from __future__ import annotations

import inspect
import math
import warnings

import optuna

from tune_ext.searchers._base import COMPLETE, FAIL, PRUNED, SpaceSearcher
from tune_ext.validate import did_you_mean, int_at_least, positive

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _OptunaSearch(SpaceSearcher):
    """Runs one in-memory optuna study with ``ask``/``tell``; subclasses choose the sampler."""

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    @staticmethod
    def _check_sampler_kwargs(owner: str, sampler, extra: dict, ours, fixed=("seed",)) -> None:
        """Refuse, at construction, keyword arguments that ``sampler`` would reject at first suggest.

        ours: this class's own parameter names (suggested too); fixed: sampler arguments that
        this class sets itself and a user must not pass.
        """
        accepted = set(inspect.signature(sampler.__init__).parameters) - {"self"}
        for key in extra:
            if key in fixed or key not in accepted:
                hint = did_you_mean(key, sorted((accepted | set(ours)) - set(fixed)))
                why = "is set by this class" if key in fixed else "is not an argument"
                raise ValueError(f"{owner}: {key!r} {why}{hint} (other keyword arguments go to "
                                 f"optuna.samplers.{sampler.__name__})")

    def _setup(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self._make_sampler()
        self._distributions = self._space.to_optuna()
        self._study = optuna.create_study(
            sampler=sampler, pruner=optuna.pruners.NopPruner(),
            direction="minimize" if self._mode == "min" else "maximize")
        self._trials: dict[str, optuna.Trial] = {}

    def _propose(self, trial_id: str, fixed: dict) -> dict:
        if fixed:
            self._study.enqueue_trial(fixed)  # taken by the very next ask (FIFO)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self._study.ask(fixed_distributions=self._distributions)
        self._trials[trial_id] = trial
        return dict(trial.params)

    def _observe(self, trial_id, entry, step, value) -> None:
        if not math.isfinite(value):
            return  # never hand NaN/inf to the model; the outcome is decided at completion
        # optuna steps are ints: a float time_attr (e.g. time_total_s) falls back to the result count
        reported = entry.setdefault("reported", [])
        step = int(step) if float(step).is_integer() else len(reported)
        if step not in reported:
            reported.append(step)
            self._trials[trial_id].report(value, step)

    def _record(self, trial_id, entry, state, step, value) -> None:
        if state != FAIL:
            self._observe(trial_id, entry, step, value)  # the last result skips on_trial_result
        trial = self._trials.pop(trial_id)
        if state == COMPLETE:
            self._study.tell(trial, value)
            return
        self._study.tell(trial, state=optuna.trial.TrialState.PRUNED if state == PRUNED
                         else optuna.trial.TrialState.FAIL)

    @property
    def study(self) -> optuna.Study:
        """The optuna study (read it, don't tell it): params are internal coordinates."""
        self._check_ready()
        return self._study


class TPESearch(_OptunaSearch):
    """Tree-structured Parzen Estimator search (optuna's ``TPESampler``).

    Bergstra et al. 2011; Falkner et al. 2018 (multivariate KDE).

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
        n_startup_trials: random trials before the model (10).
        multivariate: one joint KDE over all parameters (True).
        constant_liar: pending trials count as bad, so concurrent suggestions spread out (True).
        **tpe_kwargs: any other ``optuna.samplers.TPESampler`` argument (a misspelled one is
            refused with the closest valid name).

    Example::

        from ray import tune
        from tune_ext.searchers import TPESearch

        def f(config):
            tune.report({"loss": (config["x"] - 2) ** 2 + config["k"]})

        tune.run(f, config={"x": tune.uniform(-5, 5), "k": tune.randint(0, 3)},
                 search_alg=TPESearch(metric="loss", mode="min", seed=0), num_samples=10)
    """

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, seed=None,
                 time_attr="training_iteration", max_t=None, n_startup_trials=10,
                 multivariate=True, constant_liar=True, **tpe_kwargs):
        int_at_least("n_startup_trials", n_startup_trials, 0)
        self._check_sampler_kwargs("TPESearch", optuna.samplers.TPESampler, tpe_kwargs,
                                   inspect.signature(TPESearch.__init__).parameters)
        self._tpe_kwargs = dict(n_startup_trials=n_startup_trials, multivariate=bool(multivariate),
                                constant_liar=bool(constant_liar), **tpe_kwargs)
        super().__init__(space, metric, mode, points_to_evaluate, seed, time_attr, max_t)

    def _make_sampler(self):
        return optuna.samplers.TPESampler(seed=self._seed, **self._tpe_kwargs)

    def _model_settings(self) -> dict:
        return self._tpe_kwargs


class CMAESSearch(_OptunaSearch):
    """CMA-ES search (optuna's ``CmaEsSampler``, with margin for integer/quantised parameters).

    Categorical parameters (and a space with a single numeric parameter, which CMA-ES cannot
    model) are sampled *independently* by optuna's ``RandomSampler`` with the same seed: this is the
    documented fallback of optuna's CmaEsSampler, enabled here without its warning.

    Hansen 2016 (arXiv:1604.00772); Hamano et al. 2022 (CMA-ES with margin).

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
        n_startup_trials: random trials before the model (1).
        sigma0: the initial step size (None: optuna's default, a sixth of the range); a number.
        popsize: the population size (None: CMA-ES's default).
        consider_pruned_trials: let pruned trials into a generation (False: full runs only).
        with_margin: CMA-ES with margin for integer and quantised parameters (True).
        **cma_kwargs: any other ``optuna.samplers.CmaEsSampler`` argument (a misspelled one
            is refused with the closest valid name).

    Example::

        from ray import tune
        from tune_ext.searchers import CMAESSearch

        def f(config):
            tune.report({"loss": (config["x"] - 2) ** 2 + (config["y"] + 1) ** 2})

        tune.run(f, config={"x": tune.uniform(-5, 5), "y": tune.randint(-4, 4)},
                 search_alg=CMAESSearch(metric="loss", mode="min", seed=0), num_samples=10)
    """

    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, seed=None,
                 time_attr="training_iteration", max_t=None, n_startup_trials=1, sigma0=None,
                 popsize=None, consider_pruned_trials=False, with_margin=True, **cma_kwargs):
        int_at_least("n_startup_trials", n_startup_trials, 0)
        int_at_least("popsize", popsize, 2, allow_none=True)
        if sigma0 is not None:
            positive("sigma0", sigma0)
        self._check_sampler_kwargs("CMAESSearch", optuna.samplers.CmaEsSampler, cma_kwargs,
                                   inspect.signature(CMAESSearch.__init__).parameters,
                                   fixed=("seed", "independent_sampler", "warn_independent_sampling"))
        self._cma_kwargs = dict(n_startup_trials=n_startup_trials, sigma0=sigma0, popsize=popsize,
                                consider_pruned_trials=bool(consider_pruned_trials),
                                with_margin=bool(with_margin), **cma_kwargs)
        super().__init__(space, metric, mode, points_to_evaluate, seed, time_attr, max_t)

    def _make_sampler(self):
        return optuna.samplers.CmaEsSampler(
            seed=self._seed, independent_sampler=optuna.samplers.RandomSampler(seed=self._seed),
            warn_independent_sampling=False, **self._cma_kwargs)

    def _model_settings(self) -> dict:
        return self._cma_kwargs

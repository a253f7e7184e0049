"""The Ray Tune side shared by every searcher: space, metric/mode, trial bookkeeping, state.

Subclasses only say how to *propose* internal coordinates and how to *record* an outcome; this class
turns Ray's callbacks into those two calls:

- ``suggest`` never waits for results, so any number of trials can be pending at once;
- ``on_trial_result`` records intermediate values per ``time_attr`` (the budget);
- ``on_trial_complete`` classifies the trial: ``"fail"`` (errored, or a NaN/inf metric),
  ``"pruned"`` (ended before ``max_t``: stopped by a scheduler or a stop criterion) or
  ``"complete"``, and hands the last value over;
- ``save``/``restore`` pickle the whole state (model, RNGs, pending trials), so an experiment
  resumed with ``tune.run(resume=True)`` or ``Tuner.restore`` continues the same model.

``max_t`` (the budget a full run reaches) comes from the constructor, else from the experiment's
``stop={time_attr: N}``; when neither is known a trial counts as pruned if another trial has
already gone further in ``time_attr`` (documented heuristic, exact under synchronous schedules).
"""
from __future__ import annotations

import logging
import math
import pickle
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from tune_ext.searchers.space import SearchSpace, _plain

logger = logging.getLogger(__name__)

COMPLETE, PRUNED, FAIL = "complete", "pruned", "fail"


class SpaceSearcher(Searcher):
    """Base class of TPESearch, CMAESSearch, BOHBSearch and RandomSearch (see module docstring)."""

    def __init__(self, space: dict | None = None, metric: str | None = None,
                 mode: str | None = None, points_to_evaluate: list[dict] | None = None,
                 seed: int | None = None, time_attr: str = "training_iteration",
                 max_t: float | None = None):
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"metric must be a string (one objective), got {metric!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a result key, got {time_attr!r}")
        if max_t is not None and not (isinstance(max_t, (int, float)) and max_t > 0):
            raise ValueError(f"max_t must be a positive number or None, got {max_t!r}")
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise ValueError("points_to_evaluate must be a list of config dicts, got "
                             f"{type(points_to_evaluate).__name__}")
        super().__init__(metric=metric, mode=mode)
        self._seed = None if seed is None else int(seed)
        self._time_attr = time_attr
        self._max_t = max_t
        self._raw_points = list(points_to_evaluate or [])
        self._points: list[dict] = []
        self._space: SearchSpace | None = None
        self._live: dict[str, dict] = {}  # trial_id -> {"params", "last": (step, value) | None}
        self._max_step_seen = -math.inf
        self._told = {COMPLETE: 0, PRUNED: 0, FAIL: 0}
        if space is not None:
            self._set_space(space)

    # -- Ray's protocol ------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if self._metric is None and metric:
            self._metric = metric
        if self._mode is None and mode:
            self._mode = mode
        stop = spec.get("stop")
        if self._max_t is None and isinstance(stop, dict) and isinstance(
                stop.get(self._time_attr), (int, float)):
            self._max_t = stop[self._time_attr]
        if self._space is not None:
            # Ray reports the clash of two spaces itself when we decline
            return not (config and _has_domains(config))
        self._set_space(config or {})  # ValueError for an empty space or grid_search
        return True

    def set_budget(self, time_attr: str, max_t: float) -> None:
        """The budget a full run reaches, from the scheduler (tune-ext's schedulers call this when
        they see their first trial): a trial ended before ``max_t`` is then PRUNED, not COMPLETE.
        A ``max_t`` given to the searcher (or a ``stop`` on ``time_attr``) wins."""
        if self._max_t is None and time_attr == self._time_attr:
            self._max_t = max_t

    def suggest(self, trial_id: str) -> dict | None:
        self._check_ready()
        fixed = self._points.pop(0) if self._points else {}
        internal = self._propose(trial_id, fixed)
        internal = {k: _plain(v) for k, v in {**internal, **fixed}.items()}
        self._live[trial_id] = {"params": internal, "last": None}
        return self._space.decode(internal)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        entry = self._live.get(trial_id)
        if entry is None:  # a result racing a completion, or a trial we never suggested
            logger.debug("%s: ignoring a result of unknown trial %s", type(self).__name__, trial_id)
            return
        step, value = self._step(result, entry), self._value(result)
        entry["last"] = (step, value)
        self._max_step_seen = max(self._max_step_seen, step)
        self._observe(trial_id, entry, step, value)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        entry = self._live.pop(trial_id, None)
        if entry is None:
            return
        if result is not None and not error:
            step, value = self._step(result, entry), self._value(result)
            entry["last"] = (step, value)
        elif entry["last"] is not None:
            step, value = entry["last"]
        else:
            step, value = None, None
        if error or value is None or not math.isfinite(value):
            state = FAIL
        elif result is None:
            state = PRUNED  # removed while paused/pending by the scheduler
        else:
            full = self._max_t if self._max_t is not None else self._max_step_seen
            state = PRUNED if step < full else COMPLETE
        if step is not None:
            self._max_step_seen = max(self._max_step_seen, step)
        self._told[state] += 1
        self._record(trial_id, entry, state, step, value)

    # -- state ---------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Ray's experiment restore: the newest ``searcher-state-*.pkl`` in ``checkpoint_dir``.
        When it is missing or unreadable Ray logs the error and carries on: ``tune.run(resume=
        True)`` would start the experiment afresh, ``Tuner.restore`` with no search space. The
        failure is kept and raised by the first ``suggest`` instead, naming the file."""
        try:
            super().restore_from_dir(checkpoint_dir)
        except ValueError as e:       # unreadable: restore() named the file
            self._unrestored = str(e)
            raise
        except Exception as e:        # Ray found no searcher-state-*.pkl
            self._unrestored = (f"{type(self).__name__}: this experiment's searcher state "
                                f"{self.CKPT_FILE_TMPL.format('*')} is missing from "
                                f"{checkpoint_dir} ({type(e).__name__}: {e}); put back the file "
                                f"and resume again, or start a new experiment under another name")
            raise

    def restore(self, checkpoint_path: str) -> None:
        try:
            with open(checkpoint_path, "rb") as f:
                state = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as e:
            raise ValueError(
                f"{type(self).__name__}: cannot read the searcher state {checkpoint_path} "
                f"({type(e).__name__}: {e}); put back an intact copy and resume again, or start "
                f"a new experiment under another name") from e
        if not isinstance(state, dict) or "_told" not in state:
            raise ValueError(f"{checkpoint_path} is not a {type(self).__name__} checkpoint")
        self.set_state(state)

    @property
    def n_observations(self) -> int:
        """Trials whose outcome was recorded (complete + pruned + failed)."""
        return sum(self._told.values())

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(self._told)

    # -- for subclasses ------------------------------------------------------------------------
    def _setup(self) -> None:
        """Build the model once the space, metric and mode are known."""

    def _propose(self, trial_id: str, fixed: dict) -> dict:
        raise NotImplementedError

    def _observe(self, trial_id: str, entry: dict, step: float, value: float) -> None:
        """An intermediate result (possibly non-finite)."""

    def _record(self, trial_id: str, entry: dict, state: str, step, value) -> None:
        raise NotImplementedError

    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "min" else -1.0

    # -- helpers -------------------------------------------------------------------------------
    def _set_space(self, config: dict) -> None:
        self._space = config if isinstance(config, SearchSpace) else SearchSpace.from_config(config)
        self._points = [self._space.encode(p) for p in self._raw_points]
        self._model_ready = False

    def _check_ready(self) -> None:
        name = type(self).__name__
        unrestored = getattr(self, "_unrestored", None)
        if unrestored:
            raise RuntimeError(
                f"{unrestored}. (Without it Ray would go on with a fresh search that discards "
                f"what was learnt, under tune.run(resume=True), or with no search space, under "
                f"Tuner.restore.)")
        if self._space is None:
            raise ValueError(f"{name}: no search space: pass `space=` or Ray Tune domains in the "
                             "config/param_space (after Tuner.restore this means Ray could not "
                             "read the experiment's saved state and started afresh: see 'Failed "
                             "to restore the run state' above for the file)")
        if not self._metric or not self._mode:
            raise ValueError(f"{name}: metric and mode must be set (got metric={self._metric!r}, "
                             f"mode={self._mode!r}), in the constructor or in tune.run/TuneConfig")
        if not self._model_ready:
            self._setup()
            self._model_ready = True

    def _value(self, result: dict) -> float:
        if self._metric not in result:
            raise ValueError(f"{type(self).__name__}: metric {self._metric!r} is missing from the "
                             f"result (keys: {sorted(k for k in result if '/' not in k)[:20]})")
        value = result[self._metric]
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {self._metric!r} must be a number, got {value!r}") from None

    def _step(self, result: dict, entry: dict) -> float:
        step = result.get(self._time_attr)
        if step is None:
            raise ValueError(f"{type(self).__name__}: time_attr {self._time_attr!r} is missing "
                             "from the result")
        return float(step)


def _has_domains(config: Any) -> bool:
    from ray.tune.search.sample import Domain

    if isinstance(config, Domain):
        return True
    if isinstance(config, dict):
        return any(_has_domains(v) for v in config.values())
    if isinstance(config, (list, tuple)):
        return any(_has_domains(v) for v in config)
    return False


__all__ = ["SpaceSearcher", "COMPLETE", "PRUNED", "FAIL"]

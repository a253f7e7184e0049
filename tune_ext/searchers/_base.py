"""The Ray Tune side shared by every searcher: space, metric/mode, trial bookkeeping, state.

Subclasses only say how to *propose* internal coordinates and how to *record* an outcome; this class
turns Ray's callbacks into those two calls:

- ``suggest`` never waits for results, so any number of trials can be pending at once;
- ``on_trial_result`` records intermediate values per ``time_attr`` (the budget);
- ``on_trial_complete`` classifies the trial: ``"fail"`` (errored, or a NaN/inf metric),
  ``"pruned"`` (ended before ``max_t``: stopped by a scheduler or a stop criterion) or
  ``"complete"``, and hands the last value over;
- ``save``/``restore`` write and read versioned plain data (``tune_ext.searchers.state``): the
  settings, the space's description and every event (suggestion, result, outcome); a restore
  replays the events through a fresh model with the same seed, so an experiment resumed with
  ``tune.run(resume=True)`` or ``Tuner.restore`` continues the same model and random streams.

``max_t`` (the budget a full run reaches) comes from the constructor, else from the experiment's
``stop={time_attr: N}``; when neither is known a trial counts as pruned if another trial has
already gone further in ``time_attr`` (documented heuristic, exact under synchronous schedules).
"""
from __future__ import annotations

import json
import logging
import math
import secrets
from typing import Any

from ray.tune.search import Searcher

from tune_ext.searchers import state as saved
from tune_ext.searchers.space import SearchSpace, plain
from tune_ext.searchers.state import COMPLETE, FAIL, PRUNED
from tune_ext.validate import int_at_least, min_or_max, positive

logger = logging.getLogger(__name__)


class SpaceSearcher(Searcher):
    """Base class of TPESearch, CMAESSearch, BOHBSearch and RandomSearch (see module docstring)."""

    def __init__(self, space: dict | None = None, metric: str | None = None,
                 mode: str | None = None, points_to_evaluate: list[dict] | None = None,
                 seed: int | None = None, time_attr: str = "training_iteration",
                 max_t: float | None = None):
        if mode is not None:
            min_or_max("mode", mode)
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"metric must be a string (one objective), got {metric!r}")
        int_at_least("seed", seed, 0, allow_none=True)
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a result key, got {time_attr!r}")
        if max_t is not None:
            positive("max_t", max_t)
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
        self._events: list[list] = []  # what was proposed and told, in order: the saved state
        if space is not None:
            self._set_space(space)

    # -- Ray's protocol ------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if mode is not None:
            min_or_max("mode", mode)
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
        return self._space.decode(self._suggest(trial_id, fixed))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        entry = self._live.get(trial_id)
        if entry is None:  # a result racing a completion, or a trial we never suggested
            logger.debug("%s: ignoring a result of unknown trial %s", type(self).__name__, trial_id)
            return
        self._result(trial_id, self._step(result, entry), self._value(result))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        entry = self._live.get(trial_id)
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
        self._complete(trial_id, state, step, value)

    # -- the three events: Ray's calls and a restore's replay both go through these ------------
    def _suggest(self, trial_id: str, fixed: dict, forced: dict | None = None) -> dict:
        """Propose internal coordinates for ``trial_id`` and record the suggestion (``forced``:
        a replay that must take the saved coordinates)."""
        internal = self._propose(trial_id, fixed if forced is None else forced)
        internal = {k: plain(v) for k, v in {**internal, **fixed, **(forced or {})}.items()}
        self._live[trial_id] = {"params": internal, "last": None}
        self._events.append(["suggest", trial_id, internal, sorted(fixed)])
        return internal

    def _result(self, trial_id: str, step: float, value: float) -> None:
        entry = self._live[trial_id]
        entry["last"] = (step, value)
        self._max_step_seen = max(self._max_step_seen, step)
        self._events.append(["result", trial_id, step, saved.encode_value(value)])
        self._observe(trial_id, entry, step, value)

    def _complete(self, trial_id: str, state: str, step, value) -> None:
        entry = self._live.pop(trial_id)
        if step is not None:
            self._max_step_seen = max(self._max_step_seen, step)
        self._told[state] += 1
        self._events.append(["complete", trial_id, state, step, saved.encode_value(value)])
        self._record(trial_id, entry, state, step, value)

    # -- state ---------------------------------------------------------------------------------
    def _model_settings(self) -> dict:
        """The constructor arguments that shape the model (subclasses return theirs)."""
        return {}

    def get_state(self) -> dict:
        """The searcher as JSON-able plain data with a version: settings, the space's
        description, the points still to evaluate and every event so far (no model, no pickle)."""
        return {"version": saved.STATE_VERSION, "searcher": type(self).__name__,
                "settings": self._settings(), "model": saved.signature(self._model_settings()),
                "space": None if self._space is None else self._space.to_data(),
                "points": [dict(p) for p in self._points],
                "events": [list(e) for e in self._events]}

    def set_state(self, state: dict, where: str = "the saved searcher state") -> None:
        """Continue the searcher ``get_state`` saved: take its settings where this one has none,
        rebuild the model from the seed and replay the events. ValueError naming ``where`` for
        another version, another searcher, a malformed state, or settings or a space that differ
        from this searcher's."""
        name = type(self).__name__
        state = saved.check(state, name, where)
        theirs, mine = state["settings"], self._settings()
        clash = {k: (theirs[k], v) for k, v in mine.items()
                 if v is not None and theirs[k] is not None and theirs[k] != v}
        if state["model"] != saved.signature(self._model_settings()):
            clash["model arguments"] = (state["model"], saved.signature(self._model_settings()))
        if clash:
            raise ValueError(
                f"{name}: {where} was saved with "
                + ", ".join(f"{k}={a!r}" for k, (a, _) in clash.items()) + "; this searcher has "
                + ", ".join(f"{k}={b!r}" for k, (_, b) in clash.items())
                + "; construct it with the experiment's arguments")
        self._restore_space(state["space"], name, where)
        for key in ("metric", "mode", "seed", "max_t"):
            if mine[key] is None:
                setattr(self, f"_{key}", theirs[key])
        try:
            self._replay(state, exact=True)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"{name}: {where} is malformed: its events do not replay "
                             f"({type(e).__name__}: {e}); put back an intact copy or start a "
                             f"new experiment under another name") from None

    def _settings(self) -> dict:
        return {"metric": self._metric, "mode": self._mode, "seed": self._seed,
                "time_attr": self._time_attr, "max_t": self._max_t}

    def _restore_space(self, data: dict | None, name: str, where: str) -> None:
        if data is None:
            return  # saved before it had a space: nothing to check
        if self._space is not None:
            if self._space.to_data()["params"] != data["params"]:
                raise ValueError(f"{name}: {where} is for another search space (params "
                                 f"{[p['key'] for p in data['params']]}); give the searcher the "
                                 f"experiment's space")
            return
        try:
            self._set_space(SearchSpace.from_data(data))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{name}: {where} cannot rebuild the search space ({e}); give the "
                             f"searcher the experiment's space (space= or Ray's config) before "
                             f"restoring") from None

    def _replay(self, state: dict, exact: bool) -> None:
        """A fresh model, then every saved event through it. ``exact``: each suggestion is
        proposed again and must equal the saved one. If one differs (another optuna, hpbandster
        or numpy draws differently) the replay starts over with the saved suggestions forced: the
        model then holds every observation, but its random streams are not the saved run's."""
        self._live, self._max_step_seen, self._events = {}, -math.inf, []
        self._told = {COMPLETE: 0, PRUNED: 0, FAIL: 0}
        self._points = [dict(p) for p in state["points"]]
        self._model_ready = False
        if not state["events"]:
            return
        self._check_ready()
        for event in state["events"]:
            kind, trial_id = event[0], event[1]
            if kind == "suggest":
                params = event[2]
                got = self._suggest(trial_id, {k: params[k] for k in event[3]},
                                    None if exact else params)
                if got != params:
                    logger.warning(
                        "%s: replaying the saved state did not reproduce the suggestion for trial "
                        "%s (saved %s, now %s): another version of the model's library? The "
                        "restored model holds every saved observation, but its next suggestions "
                        "are not the ones the saved run would have made", type(self).__name__,
                        trial_id, params, got)
                    return self._replay(state, exact=False)
            elif kind == "result":
                self._result(trial_id, float(event[2]), saved.decode_value(event[3]))
            else:
                step = None if event[3] is None else float(event[3])
                self._complete(trial_id, event[2], step, saved.decode_value(event[4]))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            f.write(saved.dumps(self.get_state()))

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
        name = type(self).__name__
        try:
            with open(checkpoint_path, "rb") as f:
                raw = f.read()
            if raw[:1] == b"\x80":  # a pickle: the format before versioned plain data
                raise ValueError(f"{name}: the searcher state {checkpoint_path} was written by an "
                                 f"older tune-ext (a pickle, before state version "
                                 f"{saved.STATE_VERSION}); resume with the tune-ext that wrote "
                                 f"it, or start a new experiment under another name")
            state = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{name}: cannot read the searcher state {checkpoint_path} "
                f"({type(e).__name__}: {e}); put back an intact copy and resume again, or start "
                f"a new experiment under another name") from e
        self.set_state(state, where=f"the searcher state {checkpoint_path}")

    @property
    def n_observations(self) -> int:
        """Trials whose outcome was recorded (complete + pruned + failed)."""
        return sum(self._told.values())

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(self._told)

    @property
    def pending_trials(self) -> list[str]:
        """Trials suggested and not yet complete, in the order they were suggested."""
        return list(self._live)

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
            if self._seed is None:  # a concrete seed, saved, so a restore can replay the model
                self._seed = secrets.randbelow(2**31)
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

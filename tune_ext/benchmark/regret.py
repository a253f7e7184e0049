"""Regret over wall-clock time: the incumbent of a run and its test score, as points in memory.

Protocol (the design's benchmark protocol): the incumbent is, at each moment, the result with the
best *validation* score so far; regret(t) = reference - test score of the incumbent at t (mode
"max"; test - reference in mode "min"). Selecting by validation means regret may rise when a
better-validating configuration tests worse: that is the honest number, so it is reported as is
(the incumbent's validation score itself never worsens). Before the first usable result there is
no incumbent and no regret: a run that never gets one has "no result", never a number.

Time is the run's clock, which starts when its first trial is up (``RegretCallback``); the
``BudgetStopper`` ends the run on that clock.
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ray.tune import Callback, Stopper

from tune_ext.validate import min_or_max


class IncumbentTracker:
    """Keeps the best-validating result so far; ``update`` says whether the incumbent changed."""

    def __init__(self, reference: float, metric: str = "val_acc", mode: str = "max",
                 test_metric: str = "test_acc"):
        min_or_max("mode", mode)
        self.reference, self.metric, self.mode, self.test_metric = reference, metric, mode, test_metric
        self.val_score: Optional[float] = None
        self.test_score: Optional[float] = None

    @property
    def regret(self) -> Optional[float]:
        """How far the incumbent's test score is from the reference; None before any incumbent."""
        if self.test_score is None:
            return None
        gap = self.reference - self.test_score
        return gap if self.mode == "max" else -gap

    def update(self, result: dict) -> bool:
        val, test = result.get(self.metric), result.get(self.test_metric)
        try:
            val, test = float(val), float(test)
        except (TypeError, ValueError):
            return False  # incomplete result
        if not (math.isfinite(val) and math.isfinite(test)):
            return False  # a diverged result never becomes the incumbent
        better = (self.val_score is None or
                  (val > self.val_score if self.mode == "max" else val < self.val_score))
        if better:
            self.val_score, self.test_score = val, test
        return better


class RegretCallback(Callback):
    """Ray Tune callback recording one run's regret curve: a point at each incumbent change and
    one at the end, in seconds on the run's clock (``points``), plus the run's counts.

    The clock starts when the run's first trial is up: its worker process started, its imports
    done (torch, ray.tune, the trainable's module) and its trainable constructed. Ray starts a
    fresh worker process for each trial actor (a worker warmed up by a task was not given to an
    actor, checked with Ray 2.60), so this start-up cannot happen before ``tune.run``; it is left
    out of the budget the same way for every method, and measured (``startup_s``). Later trials'
    start-ups count.

    Args:
        tracker: the run's incumbent.
        budget_s: the run's seconds; results that arrive later (a step that was under way when
            the budget ran out) are counted in ``n_late`` but never change the incumbent, so no
            method gains from steps that overrun the budget; the end point is at the budget.
    """

    def __init__(self, tracker: IncumbentTracker, budget_s: float = math.inf):
        self.tracker = tracker
        self.budget_s = budget_s
        self.points: list[dict] = []
        self.n_results = 0
        self.n_late = 0
        self.trials: set = set()
        self.first_result_s: Optional[float] = None
        self.startup_s: Optional[float] = None
        self.devices: set = set()
        self.start_wall: Optional[float] = None
        self._created = time.monotonic()
        self._start: Optional[float] = None
        self._closed = False

    def setup(self, **info):
        self._created = time.monotonic()

    @property
    def started(self) -> bool:
        """Whether the run's clock runs (its first trial is up)."""
        return self._start is not None

    def waited(self) -> float:
        """Seconds since ``tune.run`` set the run up."""
        return time.monotonic() - self._created

    def elapsed(self) -> float:
        """Seconds on the run's clock (0 before it starts)."""
        return time.monotonic() - self._start if self.started else 0.0

    def on_trial_start(self, iteration, trials, trial, **info):
        self._start_clock()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._start_clock()   # a result means its trial is up, whatever Ray called first
        self.n_results += 1
        self.trials.add(trial.trial_id)
        if result.get("device"):   # the built-in trainables say where they trained
            self.devices.add(result["device"])
        if self.elapsed() > self.budget_s:
            self.n_late += 1
            return
        if self.first_result_s is None:
            self.first_result_s = round(self.elapsed(), 3)
        if self.tracker.update(result):
            self._record(trial.trial_id, result.get("training_iteration"))

    def on_experiment_end(self, trials, **info):
        self.close()

    def close(self):
        """Adds the curve's end point (the regret standing when the run ended), if any."""
        if not self._closed and self.tracker.regret is not None:
            self._record("", None)
        self._closed = True

    def _start_clock(self):
        if not self.started:
            self._start, self.start_wall = time.monotonic(), time.time()
            self.startup_s = round(self._start - self._created, 3)

    def _record(self, trial_id: str, iteration):
        tr = self.tracker
        self.points.append({"time_s": round(min(self.elapsed(), self.budget_s), 3), "regret": tr.regret,
                            "val_score": tr.val_score, "test_score": tr.test_score,
                            "trial_id": trial_id, "iteration": iteration})


class BudgetStopper(Stopper):
    """Ends a run (every trial) when its clock (a ``RegretCallback``'s) reaches the budget, after
    ``max_results`` results, or when no trial is up ``start_limit_s`` after the run began.

    Args:
        clock: the run's ``RegretCallback``.
        seconds: the budget on the clock.
        max_results: see ``Budget.max_results`` (None: no limit).
        start_limit_s: how long the first trial may take to come up (a trial that can never be
            placed would otherwise hold the run for ever).
    """

    def __init__(self, clock: RegretCallback, seconds: float, max_results: Optional[int] = None,
                 start_limit_s: float = 600.0):
        self.clock, self.seconds = clock, seconds
        self.max_results, self.start_limit_s = max_results, start_limit_s

    def __call__(self, trial_id, result) -> bool:
        return False   # trials end with the run, or by their scheduler

    def stop_all(self) -> bool:
        if not self.clock.started:
            return self.clock.waited() > self.start_limit_s
        return self.clock.elapsed() >= self.seconds or (
            self.max_results is not None and self.clock.n_results >= self.max_results)

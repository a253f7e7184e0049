"""Regret over wall-clock time: the incumbent of a run and its test score, as points in memory.

Protocol (the design's benchmark protocol): the incumbent is, at each moment, the result with the
best *validation* score so far; regret(t) = reference - test score of the incumbent at t (mode
"max"; test - reference in mode "min"). Selecting by validation means regret may rise when a
better-validating configuration tests worse: that is the honest number, so it is reported as is
(the incumbent's validation score itself never worsens). Before the first usable result there is
no incumbent and no regret: a run that never gets one has "no result", never a number.
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ray.tune import Callback

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
    one at the end, in seconds since the run started (``points``), plus the run's counts.

    budget_s: results that arrive after this many seconds (a step that was under way when Ray
        Tune's time budget ran out) are counted in ``n_late`` but never change the incumbent, so
        no method gains from steps that overrun the budget; the end point is at the budget.
    """

    def __init__(self, tracker: IncumbentTracker, budget_s: float = math.inf):
        self.tracker = tracker
        self.budget_s = budget_s
        self.points: list[dict] = []
        self.n_results = 0
        self.n_late = 0
        self.trials: set = set()
        self.first_result_s: Optional[float] = None
        self._start: Optional[float] = None
        self.start_wall: Optional[float] = None

    def setup(self, **info):
        self._start, self.start_wall = time.monotonic(), time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.n_results += 1
        self.trials.add(trial.trial_id)
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
        """Adds the curve's end point (the regret standing when the budget ran out), if any."""
        if self._start is not None:
            if self.tracker.regret is not None:
                self._record("", None)
            self._start = None

    def _record(self, trial_id: str, iteration):
        tr = self.tracker
        self.points.append({"time_s": round(min(self.elapsed(), self.budget_s), 3), "regret": tr.regret,
                            "val_score": tr.val_score, "test_score": tr.test_score,
                            "trial_id": trial_id, "iteration": iteration})

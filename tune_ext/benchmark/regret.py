"""Regret over wall-clock time: the incumbent and its test accuracy, to TensorBoard and CSV.

Protocol (../shared/DESIGN.md): the incumbent is, at each moment, the result with the best
*validation* score so far; regret(t) = reference - test accuracy of the incumbent at t. Selecting by
validation means regret may rise when a better-validating configuration tests worse: that is the
honest number, so it is reported as is (the incumbent's validation score itself never worsens).
"""
from __future__ import annotations

import csv
import math
import os
import time

from ray.tune import Callback

CSV_FIELDS = ("method", "seed", "time_s", "regret", "val_score", "test_acc", "trial_id", "iteration")


class IncumbentTracker:
    """Keeps the best-validating result so far; ``update`` says whether the incumbent changed."""

    def __init__(self, reference: float, metric: str = "val_acc", mode: str = "max",
                 test_metric: str = "test_acc"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.reference, self.metric, self.mode, self.test_metric = reference, metric, mode, test_metric
        self.val_score: float | None = None
        self.test_acc: float | None = None

    @property
    def regret(self) -> float:
        """Reference minus the incumbent's test accuracy; the whole reference before any result."""
        return self.reference - (self.test_acc if self.test_acc is not None else 0.0)

    def update(self, result: dict) -> bool:
        val, test = result.get(self.metric), result.get(self.test_metric)
        if val is None or test is None or not (math.isfinite(val) and math.isfinite(test)):
            return False  # a diverged or incomplete result never becomes the incumbent
        better = (self.val_score is None or
                  (val > self.val_score if self.mode == "max" else val < self.val_score))
        if better:
            self.val_score, self.test_acc = float(val), float(test)
        return better


class RegretCallback(Callback):
    """Ray Tune callback writing ``regret/<method>`` against wall-clock seconds since the start.

    TensorBoard gets one scalar per incumbent change (step = whole seconds since the method
    started, walltime exact) and one at the end; the CSV gets the exact times.
    """

    def __init__(self, method: str, seed: int, reference: float, writer, csv_path: str,
                 metric: str = "val_acc", mode: str = "max"):
        self.method, self.seed, self.writer, self.csv_path = method, seed, writer, csv_path
        self.tracker = IncumbentTracker(reference, metric, mode)
        self.start = None
        self.n_results = 0
        self.trials = set()

    def setup(self, **info):
        self.start = time.monotonic()
        self._wall0 = time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.n_results += 1
        self.trials.add(trial.trial_id)
        if self.tracker.update(result):
            self._record(self.elapsed(), trial.trial_id, result.get("training_iteration"))

    def on_experiment_end(self, trials, **info):
        self.close()

    def close(self):
        """Writes the curve's end point (the regret standing when the budget ran out)."""
        if self.start is not None:
            self._record(self.elapsed(), "", None)
            self.writer.flush()
            self.start = None

    def _record(self, t: float, trial_id: str, iteration):
        t = round(t, 3)  # the CSV's resolution, so its times and TensorBoard's steps agree
        tr = self.tracker
        self.writer.add_scalar(f"regret/{self.method}", tr.regret, global_step=int(t),
                               walltime=self._wall0 + t)
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(CSV_FIELDS)
            w.writerow([self.method, self.seed, f"{t:.3f}", f"{tr.regret:.6f}",
                        "" if tr.val_score is None else f"{tr.val_score:.6f}",
                        "" if tr.test_acc is None else f"{tr.test_acc:.6f}", trial_id,
                        "" if iteration is None else iteration])

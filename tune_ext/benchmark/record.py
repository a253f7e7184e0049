"""One (method, seed) run as the run loop saw it: the record every writer and the summary read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RunRecord:
    """One (method, seed) run: its regret curve and its counts.

    Args:
        method, seed: which run.
        node: the IP address of the node whose driver ran it.
        start, end: wall-clock times (``time.time()``) of the run's start (its clock: when its
            first trial was up) and its end.
        points: the regret curve, ``RegretCallback.points`` (one dict per incumbent change, plus
            the end point): ``time_s`` since ``start``, ``regret``, ``val_score``, ``test_score``,
            ``trial_id``, ``iteration``.
        trials, errored: trials started, and those that ended in an error.
        first_error: the error file of the first errored trial.
        error: the run's own failure (the ``tune.run`` call raised), as one line.
        results, late_results: results received, and those after the budget (never counted).
        first_result_s: seconds from ``start`` to the first result within the budget.
        startup_s: seconds from the run's set-up to its first trial being up (worker process
            started, imports done, trainable constructed), outside the budget; None: no trial
            came up.
        devices: where the trials said they trained ("cpu", "cuda"; empty if they do not say).
    """

    method: str
    seed: int
    node: str
    start: float
    end: float
    points: list = field(default_factory=list)
    trials: int = 0
    errored: int = 0
    first_error: Optional[str] = None
    error: Optional[str] = None
    results: int = 0
    late_results: int = 0
    first_result_s: Optional[float] = None
    startup_s: Optional[float] = None
    devices: tuple = ()

    def curve(self) -> list[tuple[float, float]]:
        """The regret curve as ``[(time_s, regret), ...]`` (empty: no result)."""
        return [(p["time_s"], p["regret"]) for p in self.points]

    def no_result_reason(self, metric: str, test_metric: str) -> Optional[str]:
        """Why the run has no regret curve, or None if it has one.

        Args:
            metric, test_metric: the task's validation and test metric (named in the reason).
        """
        if self.points:
            return None
        if self.error:
            return f"the run failed: {self.error}"
        if self.errored:
            return f"{self.errored} of {self.trials} trials errored, none reported a usable " \
                   f"result (first error: {self.first_error})"
        if self.results:
            return f"{self.results} results, none with a finite {metric!r} and {test_metric!r}"
        if self.startup_s is None:
            return f"no trial came up ({self.trials} trials created, none started)"
        return f"no result within the budget ({self.trials} trials started)"

"""What every tune-ext scheduler shares: metric/mode/time_attr handling and state save/restore."""
from __future__ import annotations

import math
import pickle
from typing import Optional

from ray.tune.schedulers import TrialScheduler

MODES = ("min", "max")


class MetricScheduler(TrialScheduler):
    """Base class: reads ``time_attr`` and ``metric`` from results and turns the metric into a
    score where higher is better and every non-finite value (NaN, +inf, -inf) ranks last."""

    # A rung decision must see every result one at a time: buffered results would let a trial
    # run past a rung (and record itself in the next one) before its PAUSE or STOP lands.
    _supports_buffered_results = False

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None):
        super().__init__()
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a non-empty string, got {time_attr!r}")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"metric must be a non-empty string or None, got {metric!r}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        # Ray's rule: refuse only a value given on both sides (constructor and tune.run)
        if (self._metric and metric) or (self._mode and mode):
            return False
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _require_metric(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError(
                f"{type(self).__name__} needs metric and mode (one of {MODES}): pass them to the "
                f"scheduler or to tune.run / tune.TuneConfig; got metric={self._metric!r}, "
                f"mode={self._mode!r}")

    def _read(self, result: dict) -> tuple[float, float]:
        """(time, score) of a result; ValueError naming a missing key."""
        try:
            t = result[self._time_attr]
        except KeyError:
            raise ValueError(f"result has no time_attr {self._time_attr!r} "
                             f"(reported keys: {sorted(result)})") from None
        try:
            value = float(result[self._metric])
        except KeyError:
            raise ValueError(f"result has no metric {self._metric!r} "
                             f"(reported keys: {sorted(result)})") from None
        if value - value != 0:  # NaN or +-inf: rank last in either mode
            return t, -math.inf
        return t, value if self._mode == "max" else -value

    def _has_keys(self, result: Optional[dict]) -> bool:
        return bool(result) and self._time_attr in result and self._metric in result

    # State that survives a driver restart: plain data, no Trial objects.
    def get_state(self) -> dict:
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        raise NotImplementedError

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

"""What every method gets in a benchmark: wall-clock seconds, concurrent trials, per-trial resources."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tune_ext.validate import is_finite_number as finite_number


@dataclass
class Budget:
    """What every method gets: seconds per (method, seed), concurrent trials, per-trial resources.

    Args:
        seconds: wall-clock seconds of each (method, seed) run; finite and > 0.
        concurrency: trials of one run at a time (>= 1).
        cpus_per_trial, gpus_per_trial: what each trial requests, gradient and black-box alike.
        max_results: for tests and smoke runs: a run also ends once its trials have reported
            this many results (>= 1), whichever of the two limits comes first. A count of
            results does not depend on the machine's speed, so every method gets some; the
            comparison itself is on wall-clock time (None, the default).
    """

    seconds: float
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_results: Optional[int] = None

    def __post_init__(self):
        if not finite_number(self.seconds) or self.seconds <= 0:
            raise ValueError(f"budget seconds must be a finite number > 0, got {self.seconds!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) \
                or self.concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
        if not finite_number(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise ValueError(f"cpus_per_trial must be > 0, got {self.cpus_per_trial!r}")
        if not finite_number(self.gpus_per_trial) or self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial!r}")
        if self.max_results is not None and (isinstance(self.max_results, bool) or
                                             not isinstance(self.max_results, int) or
                                             self.max_results < 1):
            raise ValueError(f"max_results must be an int >= 1 or None, got {self.max_results!r}")

    def resources(self) -> dict:
        """What one trial requests, as ``tune.run``'s ``resources_per_trial``."""
        res = {"cpu": self.cpus_per_trial}
        if self.gpus_per_trial:
            res["gpu"] = self.gpus_per_trial
        return res

    def per_run(self) -> dict:
        """Cluster resources one run's concurrent trials take."""
        return {"CPU": self.concurrency * self.cpus_per_trial,
                "GPU": self.concurrency * self.gpus_per_trial}

"""Adaptive ASHA: one aggressiveness knob instead of choosing brackets by hand."""
from __future__ import annotations

from typing import Optional

from tune_ext.schedulers.asha import ASHAScheduler
from tune_ext.schedulers.brackets import adaptive_brackets


class AdaptiveASHAScheduler(ASHAScheduler):
    """ASHA (Li et al. 2020, MLSys, Algorithm 2, promotion variant) over several brackets whose
    shape follows from ``max_t``, ``max_trials`` and ``aggressiveness``, in the manner of
    Determined AI's adaptive ASHA (an engineering extension, not in the paper).

    The rung count is min(``max_rungs``, log_divisor(max_t) + 1, log_divisor(max_trials) + 1);
    "aggressive" runs one bracket with that many rungs, "conservative" every bracket down to a
    single rung (plain training to ``max_t``), "standard" the upper half. Trials are split across
    brackets in proportion to divisor**(rungs - 1) / rungs (remainder to the most aggressive);
    each new trial goes to the bracket furthest below its share, so trials beyond ``max_trials``
    keep the same proportions. ``divisor`` plays the role of eta.

    Args:
        time_attr: the result key that measures training progress (``training_iteration``).
        metric, mode: what to rank by, "min" or "max"; or leave None and give them to
            ``tune.run`` / ``tune.TuneConfig``.
        max_t: the budget at which every trial stops (in ``time_attr`` units; default 100).
        max_trials: the number of trials the brackets' shares are planned for (more may run).
        aggressiveness: "standard", "aggressive" or "conservative" (see above).
        divisor: the reduction factor between rungs (default 4, as Determined's).
        max_rungs: at most this many rungs per bracket (default 5).

    Example::

        from ray import tune
        from tune_ext.schedulers import AdaptiveASHAScheduler

        def train(config):
            for t in range(1, 17):
                tune.report({"loss": config["x"] / t})   # add checkpoint=... to resume, see docs

        tune.run(train, config={"x": tune.uniform(0, 1)}, num_samples=16, metric="loss",
                 mode="min", scheduler=AdaptiveASHAScheduler(max_t=16, max_trials=16))
    """

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t=100, max_trials: int = 100,
                 aggressiveness: str = "standard", divisor=4, max_rungs: int = 5):
        plan = [(n, res) for n, res in
                adaptive_brackets(max_t, max_trials, aggressiveness, divisor, max_rungs) if n > 0]
        super().__init__(time_attr, metric, mode, max_t=max_t, reduction_factor=divisor,
                         variant="promotion")
        self._quota = [n for n, _ in plan]
        self._open_brackets([res for _, res in plan])
        self._counts = [0] * len(plan)

    def _bracket_for_new_trial(self) -> int:
        # the bracket furthest below its share; ties to the most aggressive (lowest index)
        b = min(range(len(self._quota)), key=lambda i: (self._counts[i] / self._quota[i], i))
        self._counts[b] += 1
        return b

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "dealt": list(self._counts)}

    def _set_extra_state(self, state: dict) -> None:
        super()._set_extra_state(state)
        self._counts = [int(c) for c in state["dealt"]]

"""Hyperband with the paper's bracket sizes, each bracket run as synchronous successive halving."""
from __future__ import annotations

from typing import Optional

from tune_ext.schedulers.brackets import hyperband_brackets
from tune_ext.schedulers.sha import SuccessiveHalvingScheduler


class HyperbandScheduler(SuccessiveHalvingScheduler):
    """Hyperband: Li et al. 2018, "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
    Optimization" (JMLR 18), Algorithm 1.

    The outer loop of Algorithm 1: brackets s = s_max .. 0 from ``hyperband_brackets`` (exact
    n_i and r_i, most aggressive first), each run as successive halving (``sha.py``). New trials
    fill the first bracket that still has room; when every bracket of a band is full, a new band
    starts. With fewer trials than a band, the last bracket closes when the searcher is finished
    and halves the trials it got (floor(n / eta), at least one, continue per rung).

    Args:
        time_attr: the result key that measures training progress (``training_iteration``).
        metric, mode: what to rank by, "min" or "max"; or leave None and give them to
            ``tune.run`` / ``tune.TuneConfig``.
        max_t: the budget at which every trial stops (in ``time_attr`` units; default 100).
        min_t: the most aggressive bracket's first budget (default 1); Ray's name ``grace_period`` is accepted.
        reduction_factor: eta: the top 1/eta of a rung continue (default 3, the papers').

    Example::

        from ray import tune
        from tune_ext.schedulers import HyperbandScheduler

        def train(config):
            for t in range(1, 10):
                tune.report({"acc": config["x"] * (1 - 0.5 ** t)})  # add checkpoint=... to resume

        tune.run(train, config={"x": tune.uniform(0, 1)}, num_samples=9, metric="acc",
                 mode="max", scheduler=HyperbandScheduler(max_t=9))
    """

    def _new_band(self) -> list[tuple[list[float], Optional[int]]]:
        """One bracket per s = s_max .. 0: milestones r_i, room for n_0 trials."""
        return [([r for _, r in rungs], rungs[0][0])
                for rungs in hyperband_brackets(self._max_t, self._min_t, self._eta)]

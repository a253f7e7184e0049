"""Scheduler state that survives an experiment restore, saved as Ray Tune callback state."""
from __future__ import annotations

from typing import Optional

from ray.tune import Callback


class SchedulerStateCallback(Callback):
    """Saves a tune-ext scheduler's rungs, promotions and bracket assignments with every
    experiment checkpoint and puts them back on restore.

    Ray Tune does not checkpoint schedulers (ray issue 30838), but it does checkpoint callback
    state (``callback-states-*.pkl`` next to ``experiment_state-*.json``, written in the same
    ``save_to_dir``) and restores it *before* re-adding the trials. So the scheduler's state is
    exactly as old as the trial table it goes with; on restore the scheduler recognises its
    trials by id, keeps paused trials paused and never records a rung twice.

    Example::

        sched = ASHAScheduler(max_t=27)
        tune.run(train, scheduler=sched, callbacks=[SchedulerStateCallback(sched)], ...)
        # after a crash: the same call with resume=True, or tune.Tuner.restore(path, train)
    """

    def __init__(self, scheduler):
        if not hasattr(scheduler, "get_state") or not hasattr(scheduler, "set_state"):
            raise ValueError(f"scheduler must be a tune-ext scheduler with get_state/set_state, "
                             f"got {type(scheduler).__name__}")
        self.scheduler = scheduler

    def get_state(self) -> Optional[dict]:
        return {"scheduler": self.scheduler.get_state()}

    def set_state(self, state: dict):
        self.scheduler.set_state(state["scheduler"])

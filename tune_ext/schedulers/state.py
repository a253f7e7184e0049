"""Scheduler state that survives an experiment restore, saved as Ray Tune callback state."""
from __future__ import annotations

import logging
import traceback
from typing import Optional

from ray.tune import Callback

# Ray's TuneController logs this (with the exception) when it cannot read an experiment's saved
# state, then starts the experiment afresh and exits 0: we turn that into an error.
RAY_RESTORE_FAILED = "Failed to restore the run state."
STATE_FILE_OF = {"callback.py": "callback-states-*.pkl (the scheduler state)",
                 "search_generator.py": "search_gen_state-*.json (the search state)",
                 "basic_variant.py": "basic-variant-state-*.json (the search state)",
                 "searcher.py": "searcher-state-*.pkl (the searcher state)",
                 "tune_controller.py": "experiment_state-*.json (the trial table)"}


class _RestoreFailures(logging.Handler):
    """Remembers Ray's last failed restore until a SchedulerStateCallback reports it."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.failure: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != RAY_RESTORE_FAILED or not record.exc_info:
            return
        exc = record.exc_info[1]
        frames = traceback.extract_tb(record.exc_info[2])
        where = next((STATE_FILE_OF[f.filename.rsplit("/", 1)[-1]] for f in reversed(frames)
                      if f.filename.rsplit("/", 1)[-1] in STATE_FILE_OF), "its saved state")
        self.failure = f"{where} is missing or unreadable ({type(exc).__name__}: {exc})"


logger = logging.getLogger(__name__)
RESTORE_FAILURES = _RestoreFailures()
logging.getLogger("ray.tune.execution.tune_controller").addHandler(RESTORE_FAILURES)


class SchedulerStateCallback(Callback):
    """Saves a tune-ext scheduler's rungs, promotions and bracket assignments with every
    experiment checkpoint and puts them back on restore.

    Ray Tune does not checkpoint schedulers (ray issue 30838), but it does checkpoint callback
    state (``callback-states-*.pkl`` next to ``experiment_state-*.json``, written in the same
    ``save_to_dir``) and restores it *before* re-adding the trials. So the scheduler's state is
    exactly as old as the trial table it goes with; on restore the scheduler reconciles it with
    the trials Ray hands back (stopped trials are stopped again, paused ones stay paused, a rung is
    never recorded twice). If Ray cannot read a saved file and would start afresh, ``setup``
    raises a RuntimeError naming it; a missing callback-states file makes the scheduler rebuild
    its rung book from the trials' stored results, with a warning (SHA/Hyperband from the last
    results; ASHA from the result Ray keeps with each checkpoint, an error naming the file when
    those miss an iteration).

    Example::

        import json, os, tempfile
        from ray import tune
        from tune_ext.schedulers import ASHAScheduler, SchedulerStateCallback

        def train(config):   # checkpoints, so a paused or restored trial resumes where it was
            start, ckpt = 0, tune.get_checkpoint()
            if ckpt:
                with ckpt.as_directory() as d:
                    start = json.load(open(os.path.join(d, "s.json")))["step"]
            for step in range(start + 1, 10):
                with tempfile.TemporaryDirectory() as d:
                    json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
                    tune.report({"loss": config["x"] / step},
                                checkpoint=tune.Checkpoint.from_directory(d))

        def experiment(resume=False):   # a new driver builds a new scheduler; the callback restores it
            sched = ASHAScheduler(max_t=9)
            return tune.run(train, config={"x": tune.uniform(0, 1)}, num_samples=9, metric="loss",
                            mode="min", scheduler=sched, callbacks=[SchedulerStateCallback(sched)],
                            storage_path=os.path.abspath("exp"), name="asha", resume=resume)

        experiment()
        experiment(resume=True)   # after a crash: the same call with resume=True
        # (an experiment started with tune.Tuner(...).fit(): tune.Tuner.restore(path, train).fit())
    """

    def __init__(self, scheduler):
        if not hasattr(scheduler, "get_state") or not hasattr(scheduler, "set_state"):
            raise ValueError(f"scheduler must be a tune-ext scheduler with get_state/set_state, "
                             f"got {type(scheduler).__name__}")
        self.scheduler = scheduler
        self._verified = False
        self._resumed = self._ran = False   # restored by this driver; a trial started since

    def setup(self, **info):
        failure, RESTORE_FAILURES.failure = RESTORE_FAILURES.failure, None
        if failure is not None:
            raise RuntimeError(
                f"{type(self.scheduler).__name__}: Ray could not restore this experiment and would "
                f"start it afresh, discarding the trials already trained: {failure}. Put that "
                f"file back (or repair it) in the experiment directory and resume again; a "
                f"callback-states-*.pkl that is deleted is fine (the scheduler then rebuilds its "
                f"rungs from the trials' results, with a warning). Or start a new experiment under "
                f"another name.")

    def on_step_begin(self, iteration: int, trials: list, **info):
        # once: no unfinished trial that ran before this driver may run unscheduled
        if not self._verified:
            self._verified = True
            self.scheduler.verify_restored(trials)

    def on_trial_start(self, iteration: int, trials: list, trial, **info):
        self._ran = True

    def on_experiment_end(self, trials: list, **info):
        # a resume of a finished experiment: one line, not silence (Ray only re-saves its state)
        if self._resumed and not self._ran:
            statuses = sorted({t.status for t in trials})
            logger.warning(f"{type(self.scheduler).__name__}: this experiment had already finished "
                           f"({len(trials)} trials: {', '.join(statuses)}); the resume ran "
                           f"nothing. Start a new experiment under another name to run it again.")

    def get_state(self) -> Optional[dict]:
        return {"scheduler": self.scheduler.get_state()}

    def set_state(self, state: dict):
        self.scheduler.set_state(state["scheduler"])
        self._resumed = True

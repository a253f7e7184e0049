"""Resuming an experiment that had already finished says so in one line (SchedulerStateCallback)."""
import logging

from ray import cloudpickle, tune

import e2e_helpers
from tune_ext.schedulers import SchedulerStateCallback, SuccessiveHalvingScheduler

cloudpickle.register_pickle_by_value(e2e_helpers)


def _run(tmp_path, resume):
    sched = SuccessiveHalvingScheduler(metric="score", mode="max", max_t=3, reduction_factor=3)
    return tune.run(e2e_helpers.checkpointing_trainable,
                    config={"x": tune.grid_search([0.1, 0.5, 0.9]), "steps": 3},
                    scheduler=sched, callbacks=[SchedulerStateCallback(sched)], verbose=0,
                    storage_path=str(tmp_path), name="done", resume=resume)


def test_resuming_a_finished_experiment_says_so_once(ray_local, tmp_path, caplog):
    first = _run(tmp_path, resume=False)
    assert sorted(t.last_result["step"] for t in first.trials) == [1, 1, 3]
    with caplog.at_level(logging.WARNING, logger="tune_ext.schedulers.state"):
        again = _run(tmp_path, resume=True)
    ours = [r.getMessage() for r in caplog.records if r.name == "tune_ext.schedulers.state"]
    assert ours == ["SuccessiveHalvingScheduler: this experiment had already finished (3 trials: "
                    "TERMINATED); the resume ran nothing. Start a new experiment under another "
                    "name to run it again."]
    assert sorted(t.last_result["step"] for t in again.trials) == [1, 1, 3]

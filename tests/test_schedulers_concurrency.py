"""Concurrency limits with real Ray: a pausing scheduler refuses a limit on live trials at the
start (Ray counts paused trials as live, so the run would stall with nothing running); the
never-pausing ASHA "stopping" variant runs under it."""
import pytest
from ray import cloudpickle, tune
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

import e2e_helpers
from e2e_helpers import checkpointing_trainable
from tune_ext.schedulers import (AdaptiveASHAScheduler, ASHAScheduler, HyperbandScheduler,
                                 SuccessiveHalvingScheduler)
from tune_ext.searchers import RandomSearch

cloudpickle.register_pickle_by_value(e2e_helpers)

PAUSING = [lambda: SuccessiveHalvingScheduler(max_t=9),
           lambda: HyperbandScheduler(max_t=9),
           lambda: ASHAScheduler(max_t=9, variant="promotion"),
           lambda: AdaptiveASHAScheduler(max_t=9, max_trials=6)]


def run(scheduler, tmp_path, **kw):
    return tune.run(checkpointing_trainable, config={"x": tune.uniform(0.0, 1.0), "steps": 9},
                    metric="score", mode="max", scheduler=scheduler, num_samples=6,
                    resources_per_trial={"cpu": 1}, storage_path=str(tmp_path), verbose=0, **kw)


@pytest.mark.parametrize("make", PAUSING, ids=["sha", "hyperband", "asha", "adaptive"])
def test_pausing_scheduler_refuses_max_concurrent_trials(ray_local, tmp_path, make):
    sched = make()
    with pytest.raises(Exception, match=rf"{type(sched).__name__} pauses trials.*limit 2.*"
                                        r"resources_per_trial"):
        run(sched, tmp_path, max_concurrent_trials=2)


def test_pausing_scheduler_refuses_a_concurrency_limiter(ray_local, tmp_path):
    with pytest.raises(Exception, match=r"SuccessiveHalvingScheduler pauses trials.*limit 2"):
        run(SuccessiveHalvingScheduler(max_t=9), tmp_path,
            search_alg=ConcurrencyLimiter(RandomSearch(seed=0), 2))


def test_stopping_asha_runs_under_max_concurrent_trials(ray_local, tmp_path):
    analysis = run(ASHAScheduler(max_t=9, variant="stopping"), tmp_path,
                   max_concurrent_trials=2, search_alg=BasicVariantGenerator(random_state=0))
    assert len(analysis.trials) == 6
    assert all(t.status == "TERMINATED" for t in analysis.trials)

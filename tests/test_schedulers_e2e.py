"""End to end with real Ray: every scheduler drives tune.run to completion."""
import pytest
from ray import cloudpickle, tune

import e2e_helpers
from e2e_helpers import Recorder, checkpointing_trainable
from tune_ext.schedulers import ASHAScheduler

# tests/ is not importable on Ray workers: ship the helpers by value
cloudpickle.register_pickle_by_value(e2e_helpers)

# One trial at a time (each takes both CPUs): the run is sequential, so the outcome is exact.
ORDER = [0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.4, 0.6]


def run(scheduler, xs=ORDER, steps=9, **kw):
    rec = Recorder()
    analysis = tune.run(checkpointing_trainable, config={"x": tune.grid_search(xs), "steps": steps},
                        metric="score", mode="max", scheduler=scheduler, callbacks=[rec],
                        resources_per_trial={"cpu": 2}, reuse_actors=True, verbose=0, **kw)
    return analysis, rec


def steps_per_trial(rec):
    steps = {}
    for x, it, step in rec.results:
        steps.setdefault(x, []).append(step)
    for seq in steps.values():   # paused trials resume from their checkpoint: no step repeats
        assert seq == list(range(1, len(seq) + 1))
    return {x: len(seq) for x, seq in steps.items()}


def test_asha_promotion_function_trainable(ray_local, tmp_path):
    # Algorithm 2 with one worker, worked by hand: 0.9 is promoted at once at t=1 (3 results,
    # best), 0.7 when the 6th result widens the top to 2, 0.8 at once as the 7th; at t=3 the
    # 3rd result (0.8) makes 0.9 the top 1 of rung 1, so 0.9 is promoted and 0.8 waits. The
    # rest never reach the top 1/3 and are stopped once nothing runs and the grid is exhausted.
    sched = ASHAScheduler(max_t=9, reduction_factor=3, variant="promotion")
    analysis, rec = run(sched, storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3,
                                    0.4: 1, 0.6: 1}
    assert "t=1: 9 recorded, 0 waiting | t=3: 3 recorded, 0 waiting | t=9: 1 recorded" \
        in sched.debug_string()


def test_asha_stopping_function_trainable(ray_local, tmp_path):
    # continue iff (results strictly better) * 3 < (results in the rung), worked by hand
    analysis, rec = run(ASHAScheduler(max_t=9, reduction_factor=3, variant="stopping"),
                        storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == {0.5: 9, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 9,
                                    0.4: 1, 0.6: 1}

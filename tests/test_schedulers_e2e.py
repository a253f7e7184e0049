"""End to end with real Ray: every scheduler drives tune.run to completion."""
import pytest
from ray import cloudpickle, tune

import e2e_helpers
from e2e_helpers import Recorder, checkpointing_trainable
from trainables import SupervisedTrainable
from tune_ext.schedulers import (AdaptiveASHAScheduler, ASHAScheduler, HyperbandScheduler,
                                 SuccessiveHalvingScheduler)

# tests/ is not importable on Ray workers: ship the helpers by value
cloudpickle.register_pickle_by_value(e2e_helpers)

# One trial at a time (each takes both CPUs): the run is sequential, so the outcome is exact.
ORDER = [0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.4, 0.6]
# Worked by hand (see the tests below); SHA's outcome does not depend on the arrival order.
EXPECT_ASHA_PROMOTION = {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}
EXPECT_SHA = {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3, 0.4: 1, 0.6: 1}


def run(scheduler, xs=ORDER, steps=9, extra=None, **kw):
    rec = Recorder()
    config = {"x": tune.grid_search(xs), "steps": steps, **(extra or {})}
    analysis = tune.run(checkpointing_trainable, config=config,
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
    assert steps_per_trial(rec) == EXPECT_ASHA_PROMOTION
    assert "t=1: 9 recorded, 0 waiting | t=3: 3 recorded, 0 waiting | t=9: 1 recorded" \
        in sched.debug_string()


def test_asha_stopping_function_trainable(ray_local, tmp_path):
    # continue iff (results strictly better) * 3 < (results in the rung), worked by hand
    analysis, rec = run(ASHAScheduler(max_t=9, reduction_factor=3, variant="stopping"),
                        storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == {0.5: 9, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 9,
                                    0.4: 1, 0.6: 1}


def test_sha_function_trainable(ray_local, tmp_path):
    # rung 0 completes once all 9 have arrived and the grid is exhausted: 0.9, 0.8, 0.7 continue;
    # rung 1 keeps 0.9
    sched = SuccessiveHalvingScheduler(max_t=9, reduction_factor=3)
    analysis, rec = run(sched, storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == EXPECT_SHA


def test_hyperband_function_trainable(ray_local, tmp_path):
    # 12 trials: bracket s=2 (9 trials, r = 1, 3, 9) as SHA above; bracket s=1 gets the last 3 of
    # its 5 (r = 3, 9) and closes when the grid is exhausted: floor(3/3) = 1 continues.
    sched = HyperbandScheduler(max_t=9, reduction_factor=3)
    analysis, rec = run(sched, xs=ORDER + [0.15, 0.95, 0.35], storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == {0.5: 1, 0.2: 1, 0.9: 9, 0.1: 1, 0.7: 3, 0.3: 1, 0.8: 3,
                                    0.4: 1, 0.6: 1, 0.15: 3, 0.95: 9, 0.35: 3}


SUPERVISED = {"dataset": "digits", "model": "mlp", "batch_size": 256, "epochs": 3, "seed": 0,
              "momentum": 0.9}


# each scheduler's decisions are checked on function trainables above; real training once by
# default, the other schedulers with --slow
SLOW = pytest.mark.slow


@pytest.mark.parametrize("make", [
    lambda: ASHAScheduler(max_t=3, variant="promotion"),
    pytest.param(lambda: ASHAScheduler(max_t=3, variant="stopping"), marks=SLOW),
    pytest.param(lambda: SuccessiveHalvingScheduler(max_t=3), marks=SLOW),
    pytest.param(lambda: HyperbandScheduler(max_t=3), marks=SLOW),
    pytest.param(lambda: AdaptiveASHAScheduler(max_t=3, max_trials=3, divisor=3), marks=SLOW),
], ids=["asha-promotion", "asha-stopping", "sha", "hyperband", "adaptive"])
def test_supervised_trainable(ray_local, tmp_path, make):
    """Real training: lr 1e-4 barely learns, 0.3 does; the scheduler must keep the good one."""
    sched = make()
    analysis = tune.run(SupervisedTrainable, metric="val_acc", mode="max", scheduler=sched,
                        config={**SUPERVISED, "lr_0": tune.grid_search([1e-4, 0.3, 1e-3])},
                        resources_per_trial={"cpu": 2}, verbose=0, storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    epochs = {t.config["lr_0"]: t.last_result["epoch"] for t in analysis.trials}
    assert epochs[0.3] == 3
    # every scheduler here halves (adaptive's plan for 3 trials is one bracket with rungs 1, 3)
    assert sum(epochs.values()) < 9


def test_failures_sha(ray_local, tmp_path):
    """0.9 fails once after its promotion and rejoins from its checkpoint (max_failures=1);
    0.7 fails for good after its promotion: rung 1 completes without it, keeping 1 of 2."""
    sched = SuccessiveHalvingScheduler(max_t=9, reduction_factor=3)
    analysis, rec = run(sched, extra={"fail_once_at": {0.9: 2}, "fail_always_at": {0.7: 2}},
                        max_failures=1, raise_on_failed_trial=False, storage_path=str(tmp_path))
    status = {t.config["x"]: t.status for t in analysis.trials}
    assert status.pop(0.7) == "ERROR" and set(status.values()) == {"TERMINATED"}
    assert steps_per_trial(rec) == {**EXPECT_SHA, 0.7: 1}
    assert "t=1: 9 arrived, 0 expected (done) | t=3: 2 arrived, 0 expected (done) | " \
           "t=9: 1 arrived" in sched.debug_string()


def test_failures_asha_promotion(ray_local, tmp_path):
    """0.9 fails once right after being promoted; it rejoins without being recorded twice and
    the run ends exactly as the uninterrupted one."""
    sched = ASHAScheduler(max_t=9, reduction_factor=3, variant="promotion")
    analysis, rec = run(sched, extra={"fail_once_at": {0.9: 2}}, max_failures=1,
                        storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == EXPECT_ASHA_PROMOTION
    assert "t=1: 9 recorded, 0 waiting | t=3: 3 recorded, 0 waiting | t=9: 1 recorded" \
        in sched.debug_string()


def test_hyperband_more_trials_than_a_band(ray_local, tmp_path):
    # max_t=3, eta=3: a band is bracket s=1 (3 trials, r = 1, 3) and s=0 (2 trials, r = 3).
    # 7 trials: band 1 = [0.5, 0.2, 0.9] + [0.1, 0.7]; band 2's s=1 bracket gets [0.3, 0.8] and
    # closes when the grid is exhausted, keeping max(1, floor(2/3)) = 1.
    sched = HyperbandScheduler(max_t=3, reduction_factor=3)
    analysis, rec = run(sched, xs=[0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8], steps=3,
                        storage_path=str(tmp_path))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert steps_per_trial(rec) == {0.5: 1, 0.2: 1, 0.9: 3, 0.1: 3, 0.7: 3, 0.3: 1, 0.8: 3}
    assert "4 brackets in 2 bands" in sched.debug_string()   # band 2 opens both brackets
    assert "bracket 2 (2/3 trials)" in sched.debug_string()

"""Ray's scheduler argument names: the same scheduler where the meaning is the same, else a
TypeError that names the class the user called and says what to do."""
import random

import pytest

from sched_harness import Driver
from tune_ext.schedulers import ASHAScheduler, HyperbandScheduler, SuccessiveHalvingScheduler


def _decisions(scheduler, seed=0):
    """A scripted stream: 12 trials report in a shuffled order at every step up to max_t."""
    rng = random.Random(seed)
    d = Driver(scheduler)
    ids = [f"t{i:02d}" for i in range(12)]
    d.add(*ids)
    d.search_alg.finished = True
    values = {t: rng.random() for t in ids}
    for step in range(1, 10):
        order = ids[:]
        rng.shuffle(order)
        for t in order:
            if d.trials[t].status in ("RUNNING", "PENDING"):
                d.report(t, step, values[t] * step)
        while d.choose() is not None:
            pass
    return d.log


@pytest.mark.parametrize("cls, extra", [(ASHAScheduler, {"variant": "stopping"}),
                                        (ASHAScheduler, {"variant": "promotion"}),
                                        (SuccessiveHalvingScheduler, {}), (HyperbandScheduler, {})])
def test_grace_period_is_min_t(cls, extra):
    ours = cls(metric="m", mode="max", max_t=9, min_t=3, **extra)
    rays = cls(metric="m", mode="max", max_t=9, grace_period=3, **extra)
    log = _decisions(ours)
    assert log == _decisions(rays) and len(log) > 12
    assert log != _decisions(cls(metric="m", mode="max", max_t=9, min_t=1, **extra))  # it matters


@pytest.mark.parametrize("make, message", [
    (lambda: HyperbandScheduler(max_t=9, stop_last_trials=False),
     "HyperbandScheduler() got an unexpected keyword argument 'stop_last_trials': trials always "
     "stop at max_t"),
    (lambda: ASHAScheduler(max_t=9, stop_last_trials=True), "ASHAScheduler() got an unexpected"),
    (lambda: SuccessiveHalvingScheduler(max_t=9, reduction_facto=3), "did you mean 'reduction_factor'"),
    (lambda: HyperbandScheduler(max_t=9, grace=1), "HyperbandScheduler() got an unexpected keyword "
                                                  "argument 'grace': did you mean 'grace_period'"),
    (lambda: ASHAScheduler(max_t=9, min_t=1, grace_period=1), "both min_t and grace_period"),
])
def test_other_arguments_name_the_class_called(make, message):
    with pytest.raises(TypeError) as exc:
        make()
    assert message in str(exc.value)

"""A scheduler written on the declared base class (docs/schedulers.md, "Write your own
scheduler"): the page's own block, run here without Ray (sched_harness), and the base's contract."""
import re
from pathlib import Path

import pytest

from sched_harness import Driver
from tune_ext.schedulers import MetricScheduler

PAGE = Path(__file__).resolve().parents[1] / "docs" / "schedulers.md"
XS = [0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.4, 0.6]


def docs_class(name):
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    (block,) = [b for b in blocks if f"class {name}(" in b]
    namespace = {"__name__": "docs_example"}
    exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace[name]


def median_by_hand(xs, milestones, min_samples, max_t):
    """Last step of each trial, one trial at a time (score x / step, lower is better): at each
    milestone it goes on iff fewer than min_samples results are there yet, or fewer than half of
    them (itself included) are better."""
    rungs = {m: [] for m in milestones}
    last = {}
    for x in xs:
        for m in milestones:
            loss = x / m
            better = sum(other < loss for other in rungs[m])
            rungs[m].append(loss)
            last[x] = m
            n = len(rungs[m])
            if not (m < max_t and (n < min_samples or 2 * better < n)):
                break
    return last


def run_trials(driver, xs, steps=9):
    last = {}
    for x in xs:
        for step in range(1, steps + 1):
            last[x] = step
            if driver.report(str(x), step, x / step, metric="loss") == "STOP":
                break
    return last


@pytest.mark.parametrize("min_samples", [1, 3])
def test_docs_median_scheduler_decides_its_rule(min_samples):
    Median = docs_class("MedianStoppingScheduler")
    d = Driver(Median(metric="loss", mode="min", max_t=9, interval=3, min_samples=min_samples))
    d.add(*map(str, XS))
    assert run_trials(d, XS) == median_by_hand(XS, [3, 6, 9], min_samples, 9)


def test_docs_median_scheduler_state_survives_a_new_driver():
    """Half the trials under one scheduler, the rest under a new one loaded from its state: the
    same decisions as one uninterrupted run."""
    Median = docs_class("MedianStoppingScheduler")
    make = lambda: Median(metric="loss", mode="min", max_t=9, interval=3, min_samples=1)  # noqa
    first = Driver(make())
    first.add(*map(str, XS))
    last = run_trials(first, XS[:5])
    second = Driver(make())
    second.scheduler.set_state(first.scheduler.get_state())
    second.add(*map(str, XS))   # Ray re-adds every trial on restore
    last.update(run_trials(second, XS[5:]))
    assert last == median_by_hand(XS, [3, 6, 9], 1, 9)
    with pytest.raises(ValueError, match=r"\(max_t, interval, min_samples\) = \(9, 3, 1\)"):
        Median(metric="loss", mode="min", max_t=9, interval=3, min_samples=2).set_state(
            first.scheduler.get_state())


def test_base_declares_the_hooks_a_scheduler_must_write():
    class Bare(MetricScheduler):
        pass

    s = Bare(metric="m", mode="max", max_t=9, reduction_factor=3)
    with pytest.raises(NotImplementedError, match="Bare must implement _bracket_for_new_trial"):
        Driver(s).add("a")
    for hook in ("_catch_up", "_replay"):
        with pytest.raises(NotImplementedError, match=f"Bare must implement {hook}"):
            getattr(s, hook)(None)
    with pytest.raises(NotImplementedError, match="Bare must implement on_trial_result"):
        s.on_trial_result(None, None, {})
    assert s.get_state()["geometry"] == [9, 3]

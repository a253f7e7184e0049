"""Subprocess driver for the kill-and-restore test.

    python tests/restore_driver.py {run|tuner} {start|resume} STORAGE RESULTS_JSONL
        [sha|hyperband|asha|median]

Runs SHA (or Hyperband, whose first bracket holds the same 9 trials and rungs, or ASHA "promotion"
with the same rungs, or docs/schedulers.md's MedianStoppingScheduler, run from the page's own
block, with rungs 3, 6, 9) over 9 configs, one trial at a time, appending every result to RESULTS_JSONL
(flushed, so the test can kill this process after N results). On "resume" it restores the experiment with
``tune.run(resume=True)`` or ``Tuner.restore`` and writes the scheduler's debug string to
RESULTS_JSONL + ".final".
"""
import json
import os
import re
import sys
import types

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Snapshot the experiment every second (0 makes Ray race its own syncer: partial uploads).
os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402
from ray import cloudpickle, tune  # noqa: E402

import e2e_helpers  # noqa: E402
from tune_ext.schedulers import (ASHAScheduler, HyperbandScheduler,  # noqa: E402
                                 SchedulerStateCallback, SuccessiveHalvingScheduler)

cloudpickle.register_pickle_by_value(e2e_helpers)
ORDER = [0.5, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.4, 0.6]
NAME = "killed"


class Writer(tune.Callback):
    def __init__(self, path):
        self.path = path

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # Tuner.restore unpickles this callback with the path of the run it was created in; the
        # tests restore copies of experiments, so the driver's own path wins.
        with open(os.environ.get("TUNE_EXT_TEST_RESULTS", self.path), "a") as f:
            f.write(json.dumps({"x": trial.config["x"], "step": result["step"]}) + "\n")
            f.flush()


class Logged:
    """Mixin: appends each hook call to RESULTS_JSONL.<phase>.trace (shown when the test fails)."""

    def _log(self, *what):
        trace = os.environ.get("TUNE_EXT_TEST_TRACE")   # a class attribute would be pickled
        if trace:
            with open(trace, "a") as f:
                f.write(" ".join(map(str, what)) + "\n")

    def on_trial_add(self, tc, trial):
        super().on_trial_add(tc, trial)
        self._log("add", trial.config["x"], trial.status, trial.last_result.get("step"))

    def on_trial_result(self, tc, trial, result):
        d = super().on_trial_result(tc, trial, result)
        self._log("result", trial.config["x"], result["step"], d)
        return d

    def on_trial_error(self, tc, trial):
        self._log("error", trial.config["x"])
        super().on_trial_error(tc, trial)

    def set_state(self, state):
        super().set_state(state)
        self._log("set_state", self.debug_string())


class LoggedSHA(Logged, SuccessiveHalvingScheduler):
    pass


class LoggedHyperband(Logged, HyperbandScheduler):
    pass


class LoggedASHA(Logged, ASHAScheduler):
    pass


def docs_example(cls_name, page=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "docs", "schedulers.md")):
    """The class a docs page defines, executed from the page's own Python block (as a module, so
    that Ray can pickle it by value)."""
    blocks = re.findall(r"^```python\n(.*?)^```", open(page).read(), flags=re.S | re.M)
    (block,) = [b for b in blocks if f"class {cls_name}(" in b]
    module = sys.modules["docs_example"] = types.ModuleType("docs_example")
    exec(compile(block, page, "exec"), module.__dict__)
    cloudpickle.register_pickle_by_value(module)
    return getattr(module, cls_name)


class LoggedMedian(Logged, docs_example("MedianStoppingScheduler")):
    pass


SCHEDULERS = {"sha": LoggedSHA, "hyperband": LoggedHyperband, "asha": LoggedASHA,
              "median": lambda **geometry: LoggedMedian(max_t=9, interval=3, min_samples=1)}


def main(api, phase, storage, results, scheduler="sha"):
    """``scheduler`` may end in "+random": the same 9 configs, in the same order, proposed by
    tune-ext's RandomSearch (points_to_evaluate) instead of a grid, so that Ray restores a
    searcher (SearchGenerator) too."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    os.environ["TUNE_EXT_TEST_TRACE"] = f"{results}.{phase}.trace"
    os.environ["TUNE_EXT_TEST_RESULTS"] = results
    scheduler, _, searcher = scheduler.partition("+")
    sched = SCHEDULERS[scheduler](max_t=9, reduction_factor=3)
    callbacks = [SchedulerStateCallback(sched), Writer(results)]
    trainable = tune.with_resources(e2e_helpers.checkpointing_trainable, {"cpu": 2})
    space, search = {"x": tune.grid_search(ORDER), "steps": 9}, {}
    if searcher == "random":
        from tune_ext.searchers import RandomSearch
        space = {"x": tune.uniform(0, 1)}
        search = {"search_alg": RandomSearch(points_to_evaluate=[{"x": x} for x in ORDER],
                                             seed=0), "num_samples": len(ORDER)}
    # Without actor reuse a trial stopped while PAUSED has no actor, and Ray's snapshot keeps
    # calling it PAUSED (the case a restore must reconcile); with reuse it depends on timing.
    reuse = os.environ.get("TUNE_EXT_TEST_REUSE_ACTORS", "1") == "1"
    if api == "run":
        tune.run(trainable, config=space, metric="score", mode="max", scheduler=sched,
                 callbacks=callbacks, storage_path=storage, name=NAME, verbose=0,
                 reuse_actors=reuse, resume=(phase == "resume"), **search)
    elif phase == "start":
        tune.Tuner(trainable, param_space=space,
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=sched,
                                               reuse_actors=reuse, **search),
                   run_config=tune.RunConfig(storage_path=storage, name=NAME,
                                             callbacks=callbacks, verbose=0)).fit()
    else:
        SchedulerStateCallback.check_tuner_restore(os.path.join(storage, NAME))
        tuner = tune.Tuner.restore(os.path.join(storage, NAME), trainable)
        sched = tuner._local_tuner._tune_config.scheduler
        tuner.fit()
    with open(results + ".final", "w") as f:
        f.write(sched.debug_string())


if __name__ == "__main__":
    main(*sys.argv[1:])

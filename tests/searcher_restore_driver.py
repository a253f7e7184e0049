"""Driver for tests/test_searchers_restore.py: runs one experiment until the test SIGKILLs it.

Usage: python searcher_restore_driver.py CLASS API STORAGE NAME RAY_ADDRESS [resume]
"""
import os
import sys

# save experiment + searcher state every step (unless the test asks for another period)
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

import tune_ext.searchers as searchers  # noqa: E402

NUM_SAMPLES = 10
SPACE = {"x": tune.uniform(-5.0, 5.0), "k": tune.randint(0, 3), "c": tune.choice(["a", "b"])}


def trainable(config):
    for t in range(1, 4):
        tune.report({"loss": (config["x"] - 2.0) ** 2 + config["k"] + (config["c"] == "b") + 1 / t})


def main(cls_name, api, storage, name, address, resume=""):
    ray.init(address=address, log_to_driver=False)
    searcher = getattr(searchers, cls_name)(seed=0)
    common = dict(metric="loss", mode="min", num_samples=NUM_SAMPLES)
    if api == "run":
        tune.run(trainable, config=SPACE, search_alg=searcher, storage_path=storage, name=name,
                 stop={"training_iteration": 3}, verbose=0, resume=bool(resume),
                 resources_per_trial={"cpu": 1}, **common)
    elif resume:
        tune.Tuner.restore(os.path.join(storage, name), trainable, resume_unfinished=True).fit()
    else:
        tune.Tuner(trainable, param_space=SPACE,
                   tune_config=tune.TuneConfig(search_alg=searcher, **common),
                   run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0,
                                             stop={"training_iteration": 3})).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])

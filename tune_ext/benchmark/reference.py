"""Reference accuracy of a task: a grid search around common SGD settings, computed once and stored.

As in the FDS paper's Appendix F, the grid covers the usual hand-tuned choices (a few learning
rates, constant or with a final decay, momentum 0 or 0.9, weight decay 0 or 5e-4); each setting
is trained with several seeds and the reference is the best mean test accuracy. Regret is measured
against this number, so it is only computed when a stored reference exists.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
import time

from tune_ext.benchmark.tasks import Task

REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "references")
GRID = {"lr": (0.01, 0.03, 0.1, 0.3), "decay": (False, True), "momentum": (0.0, 0.9),
        "weight_decay": (0.0, 5e-4)}


def reference_path(task_name: str) -> str:
    return os.path.join(REFERENCE_DIR, f"{task_name}.json")


def load_reference(task: Task) -> dict:
    """The stored reference of ``task``; a clear error with the command to make it if missing."""
    path = reference_path(task.name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"task {task.name!r} has no reference accuracy ({path} is missing), so regret cannot "
            f"be reported; compute it once with: python scripts/reference.py --task {task.name}")
    with open(path) as f:
        return json.load(f)


def grid_configs(task: Task):
    """Every grid setting as a SupervisedTrainable config (without the seed)."""
    for lr, decay, momentum, wd in itertools.product(*GRID.values()):
        lrs = [lr] * task.n_lr_windows
        if decay:
            lrs[-1] = lr / 10
        yield {**task.fixed_config(), **{f"lr_{i}": v for i, v in enumerate(lrs)},
               "momentum": momentum, "weight_decay": wd}


def compute_reference(task: Task, seeds=(0, 1, 2), data_root=None, log=print) -> dict:
    """Train every grid setting for ``task.epochs`` epochs with each seed; best mean test accuracy."""
    from trainables import SupervisedTrainable

    start, results = time.time(), []
    for config in grid_configs(task):
        accs = []
        for seed in seeds:
            trainable = SupervisedTrainable(config={**config, "seed": seed, "data_root": data_root})
            for _ in range(task.epochs):
                result = trainable.train()
            trainable.stop()
            accs.append(result["test_acc"])
        results.append({"config": {k: v for k, v in config.items() if k.startswith(("lr_", "mom", "weight"))},
                        "test_acc": accs, "mean_test_acc": statistics.fmean(accs)})
        log(f"{results[-1]['config']}  mean test acc {results[-1]['mean_test_acc']:.4f}")
    best = max(results, key=lambda r: r["mean_test_acc"])
    return {"task": task.name, "reference_test_acc": best["mean_test_acc"], "best": best,
            "seeds": list(seeds), "grid": {k: list(v) for k, v in GRID.items()},
            "results": results, "compute_s": round(time.time() - start, 1)}


def store_reference(reference: dict) -> str:
    os.makedirs(REFERENCE_DIR, exist_ok=True)
    path = reference_path(reference["task"])
    with open(path, "w") as f:
        json.dump(reference, f, indent=1)
    return path

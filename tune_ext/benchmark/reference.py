"""Reference score of a task: its reference grid trained with several seeds, computed once and stored.

For the built-in SGD tasks the grid is the FDS paper's Appendix F kind of hand tuning: a few
learning rates, constant or with a final decay, momentum 0 or 0.9, weight decay 0 or 5e-4. Every
setting is trained with each seed for the task's whole horizon (as Ray Tune trials, so any
trainable works), and the reference is the best mean final ``test_metric``. Regret is only
reported against a reference that exists: a given number or a stored file.

The task table (``tasks.py``) imports this module for the grid and the stored files; this module
reads only the ``Task`` it is given, never the table.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import tempfile
import time

PACKAGED_DIR = os.path.join(os.path.dirname(__file__), "references")
SGD_GRID = {"lr": (0.01, 0.03, 0.1, 0.3), "decay": (False, True), "momentum": (0.0, 0.9),
            "weight_decay": (0.0, 5e-4)}
FORMAT_VERSION = 2


def packaged_reference(task_name: str) -> str:
    """Where a built-in task's reference is stored (inside the package)."""
    return os.path.join(PACKAGED_DIR, f"{task_name}.json")


def sgd_grid(n_lr_windows: int) -> list[dict]:
    """The SGD grid as hyperparameter dicts: ``lr_0 .. lr_{k-1}``, ``momentum``, ``weight_decay``."""
    out = []
    for lr, decay, momentum, wd in itertools.product(*SGD_GRID.values()):
        lrs = [lr] * n_lr_windows
        if decay:
            lrs[-1] = lr / 10
        out.append({**{f"lr_{i}": v for i, v in enumerate(lrs)}, "momentum": momentum,
                    "weight_decay": wd})
    return out


def _command(task) -> str:
    """The command that computes ``task``'s stored reference (a built-in task's is in the package)."""
    if task.reference_path == packaged_reference(task.name):
        return f"tune-ext-reference --task {task.name}"
    return f"tune-ext-reference --task MODULE:ATTR --out {task.reference_path or 'PATH'} " \
           f"(MODULE:ATTR naming your Task)"


def load_reference(task) -> dict:
    """The stored reference of ``task``; an error naming the file and the command if it is missing."""
    path = task.reference_path
    if path is None:
        raise ValueError(f"task {task.name!r} has no reference: give Task(reference=<number>) or "
                         f"Task(reference_path=PATH) and compute it with: {_command(task)}")
    try:
        with open(path) as f:
            data = json.load(f)
        value = float(data["reference"])
    except FileNotFoundError:
        raise FileNotFoundError(
            f"task {task.name!r} has no reference score ({path} is missing), so regret cannot be "
            f"reported; compute it once with: {_command(task)}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the reference file {path} of task {task.name!r} is unreadable ({exc}); "
                         f"compute it again with: {_command(task)}") from None
    return data


def compute_reference(task, seeds=(0, 1), log=print, num_cpus=None) -> dict:
    """Trains every ``task.reference_grid`` config with each seed for ``task.max_t`` iterations.

    Runs on the Ray the caller started, else on a local one of ``num_cpus`` (default: all cores)
    that it shuts down again. Returns the reference dict (``store_reference`` writes it).
    """
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    if not task.reference_grid:
        raise ValueError(f"task {task.name!r} has no reference_grid to compute a reference from; "
                         f"give Task(reference=<number>) instead")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("compute_reference needs at least one seed")
    points = [{**config, "seed": s} for config in task.reference_grid for s in seeds]
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    start = time.time()
    storage = tempfile.mkdtemp(prefix="tune-ext-reference-")
    try:
        # the grid as points of a variant generator: one tune.run, any trainable
        # the searched keys as choices over the grid's values, so every point lies in the space
        space = {k: tune.choice(sorted({p[k] for p in points}, key=repr)) if k in points[0] else v
                 for k, v in {**task.space, "seed": None}.items()}
        analysis = tune.run(task.runnable(), config=space,
                            num_samples=len(points),
                            search_alg=BasicVariantGenerator(points_to_evaluate=points),
                            stop={"training_iteration": task.max_t}, metric=task.metric,
                            mode=task.mode, verbose=0, raise_on_failed_trial=False, reuse_actors=True,
                            storage_path=storage, name=f"reference-{task.name}")
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    scores: dict[int, list] = {}
    for trial in analysis.trials:
        result = trial.last_result or {}
        if trial.status != "TERMINATED" or task.test_metric not in result:
            raise RuntimeError(f"reference trial {trial.trial_id} of task {task.name!r} ended "
                               f"{trial.status} without {task.test_metric!r}: see {trial.local_path}")
        index = points.index(trial.config) // len(seeds)
        scores.setdefault(index, []).append(float(result[task.test_metric]))
    results = [{"config": _searched(task, task.reference_grid[i]), task.test_metric: scores[i],
                "mean": statistics.fmean(scores[i])} for i in sorted(scores)]
    pick = max if task.mode == "max" else min
    best = pick(results, key=lambda r: r["mean"])
    log(f"reference of {task.name}: {best['mean']:.4f} ({best['config']})")
    return {"version": FORMAT_VERSION, "task": task.name, "metric": task.test_metric,
            "mode": task.mode, "reference": best["mean"], "best": best, "seeds": seeds,
            "results": results, "compute_s": round(time.time() - start, 1)}


def _searched(task, config: dict) -> dict:
    """The searched keys of ``config`` (those the task's space samples), for the record."""
    from ray.tune.search.sample import Domain

    return {k: v for k, v in config.items() if isinstance(task.space.get(k), Domain)}


def store_reference(reference: dict, path: str) -> str:
    """Writes ``reference`` to ``path`` (folders created), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(reference, f, indent=1)
    os.replace(tmp, path)
    return path

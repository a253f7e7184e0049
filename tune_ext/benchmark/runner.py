"""Runs methods against each other on one Ray budget and writes curves, plots and summary.

Fairness: every (method, seed) run gets the same wall-clock budget, the same per-trial resources
and the same concurrency. Concurrency is set by resources, not by ``max_concurrent_trials``: a
trial PAUSEd by a scheduler frees its slot (Ray's concurrency limiter would keep counting it, and
a promotion scheduler could then wait forever for a trial that is never started).

Placement: each run is one ``tune.run``. When the cluster has room for several runs' trials at
once, the runs go side by side, each ``tune.run`` driven from its own Ray task (no CPU of its
own), so a cluster with room for all of them finishes in about one budget. Otherwise (one small
machine: the local Ray the harness starts has room for exactly one run) they go one after
another in the driver, every method of seed 0, then of seed 1, ... so that machine load drifts
evenly over methods.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from typing import Optional

from tune_ext.benchmark.methods import METHODS, Method, check_trial_config
from tune_ext.benchmark.regret import IncumbentTracker, RegretCallback
from tune_ext.benchmark.tasks import Task, finite_number


@dataclass
class Budget:
    """What every method gets: seconds per (method, seed), concurrent trials, per-trial resources.

    Args:
        seconds: wall-clock seconds of each (method, seed) run; finite and > 0.
        concurrency: trials of one run at a time (>= 1).
        cpus_per_trial, gpus_per_trial: what each trial requests, gradient and black-box alike.
    """

    seconds: float
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self):
        if not finite_number(self.seconds) or self.seconds <= 0:
            raise ValueError(f"budget seconds must be a finite number > 0, got {self.seconds!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) \
                or self.concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
        if not finite_number(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise ValueError(f"cpus_per_trial must be > 0, got {self.cpus_per_trial!r}")
        if not finite_number(self.gpus_per_trial) or self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial!r}")

    def resources(self) -> dict:
        res = {"cpu": self.cpus_per_trial}
        if self.gpus_per_trial:
            res["gpu"] = self.gpus_per_trial
        return res

    def per_run(self) -> dict:
        """Cluster resources one run's concurrent trials take."""
        return {"CPU": self.concurrency * self.cpus_per_trial,
                "GPU": self.concurrency * self.gpus_per_trial}


def check_output_dir(out_dir: str) -> None:
    """ValueError unless ``out_dir`` exists or can be made, and a file can be written in it."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"output folder {out_dir!r} cannot be written: {exc.strerror or exc}") from None


def local_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def start_ray(budget: Budget, address: Optional[str], verbose: bool) -> bool:
    """Uses the Ray this process already started, joins ``address``, or starts a local Ray sized to
    exactly one run's trials. Returns whether the caller owns it (and must shut it down)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    kwargs = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
              "configure_logging": True}
    if address:
        ray.init(address=address, **kwargs)
        return True
    kwargs["num_cpus"] = budget.concurrency * budget.cpus_per_trial
    if budget.gpus_per_trial:
        kwargs["num_gpus"] = local_gpu_count()
    # "local": always a fresh instance of our own, never a cluster that happens to be running
    ray.init(address="local", include_dashboard=False, **kwargs)
    return True


def check_cluster(budget: Budget, cluster: dict) -> None:
    """ValueError if one trial cannot fit on the cluster at all (it would stay PENDING for ever)."""
    for key, need in (("CPU", budget.cpus_per_trial), ("GPU", budget.gpus_per_trial)):
        if need and cluster.get(key, 0) < need:
            raise ValueError(f"each trial requests {need:g} {key}, but the Ray cluster has "
                             f"{cluster.get(key, 0):g}; ask for less (--{key.lower()}s-per-trial)")


def runs_at_once(budget: Budget, cluster: dict, n_runs: int, parallel: Optional[int] = None) -> int:
    """How many runs fit side by side: every run's concurrent trials at once, at most ``parallel``."""
    room = min(math.floor(cluster.get(k, 0) / need + 1e-9)
               for k, need in budget.per_run().items() if need)
    fit = max(1, min(room, n_runs))
    return fit if parallel is None else max(1, min(fit, parallel))


def method_kwargs(method: Method, task: Task, seed: int, compile_gradient: bool = False) -> dict:
    """``method``'s ``tune.run`` arguments for ``task`` and ``seed``.

    compile_gradient: gradient methods ``torch.compile`` their differentiated step (FDSTrainable's
    ``compile``); the compilation counts against the budget like everything else a trial does.
    """
    kwargs = method.build(task, seed)
    if compile_gradient and method.kind == "gradient":
        kwargs["config"] = {**kwargs["config"], "compile": True}
    return kwargs


def run_one(task: Task, method: Method, seed: int, budget: Budget, reference: float,
            storage: str, compile_gradient: bool = False, verbose: bool = False) -> dict:
    """One (method, seed) run: a ``tune.run`` on the budget. Returns its record (plain data)."""
    import ray
    from ray import tune

    # Ray generates at most this many PENDING trials ahead: searchers then suggest close to when
    # a slot frees, the same for every method (read when the run's controller starts)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(budget.concurrency)
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    callback = RegretCallback(IncumbentTracker(reference, task.metric, task.mode, task.test_metric),
                              budget_s=budget.seconds)
    record = {"method": method.name, "seed": seed, "node": ray.util.get_node_ip_address(),
              "start": time.time(), "error": None, "trials": 0, "errored": 0, "first_error": None}
    try:
        analysis = tune.run(**method_kwargs(method, task, seed, compile_gradient),
                            metric=task.metric, mode=task.mode,
                            resources_per_trial=budget.resources(), time_budget_s=budget.seconds,
                            callbacks=[callback], verbose=1 if verbose else 0, reuse_actors=True,
                            storage_path=storage, name=f"{method.name}-seed{seed}",
                            raise_on_failed_trial=False)
        errored = [t for t in analysis.trials if t.status == "ERROR"]
        record.update(trials=len(analysis.trials), errored=len(errored),
                      first_error=str(errored[0].error_file) if errored else None)
    except Exception as exc:  # recorded as this run's failure, shown, never a regret number
        record["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        callback.close()
    record.update(end=time.time(), points=callback.points, results=callback.n_results,
                  late_results=callback.n_late,
                  first_result_s=callback.first_result_s, start=callback.start_wall or record["start"])
    return record


def no_result_reason(record: dict, task: Task) -> Optional[str]:
    """Why a run has no regret curve, or None if it has one."""
    if record["points"]:
        return None
    if record["error"]:
        return f"the run failed: {record['error']}"
    if record["errored"]:
        return f"{record['errored']} of {record['trials']} trials errored, none reported a usable " \
               f"result (first error: {record['first_error']})"
    if record["results"]:
        return f"{record['results']} results, none with a finite {task.metric!r} and " \
               f"{task.test_metric!r}"
    return f"no result within the budget ({record['trials']} trials started)"


def run_benchmark(task: Task, methods: list[Method], seeds: list[int], budget: Budget, out_dir: str,
                  address: Optional[str] = None, verbose: bool = False, log=print,
                  compile_gradient: bool = False, parallel: Optional[int] = None) -> dict:
    """Runs every method for every seed; writes regret.csv, tensorboard/, regret.png, ranks.png
    and summary.json into ``out_dir`` and returns the summary.

    Args:
        task: what to tune (``get_task(name)`` or your own ``Task``).
        methods: ``get_methods([...])``.
        seeds: benchmark seeds (each method runs once per seed), at least one.
        budget: the same wall-clock budget, concurrency and per-trial resources for every run.
        out_dir: output folder (made if missing; must be writable).
        address: a Ray cluster to join; None uses the Ray this program already started (left
            running), else starts a local one sized to one run (shut down at the end).
        parallel: at most this many runs side by side (None: as many as the cluster has room
            for; 1: always one after another).
        compile_gradient: see ``method_kwargs``.
        log: where progress lines go.

    Everything that can be checked is checked before Ray starts: ``ValueError`` (or
    ``FileNotFoundError`` for a missing reference) and nothing run.
    """
    import ray

    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if not methods:
        raise ValueError("no methods given")
    if parallel is not None and parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}")
    for method in methods:
        method.check(task)
        check_trial_config(method, task)  # a config every trial would refuse: once, before Ray
    reference = task.reference_value()  # refuse before starting anything
    check_output_dir(out_dir)
    if ray.is_initialized():   # the caller's Ray: check it has room for one trial before anything
        check_cluster(budget, ray.cluster_resources())
    elif budget.gpus_per_trial and not address and not local_gpu_count():
        raise ValueError(f"each trial requests {budget.gpus_per_trial:g} GPU but this machine has "
                         f"no GPU visible to torch; drop --gpus-per-trial or join a cluster with GPUs")
    csv_path = os.path.join(out_dir, "regret.csv")
    for stale in ("regret.csv", "tensorboard", "ray"):  # a rerun into the same folder starts clean
        path = os.path.join(out_dir, stale)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    storage = os.path.abspath(os.path.join(out_dir, "ray"))
    owned = start_ray(budget, address, verbose)
    runs = [(m, s) for s in seeds for m in methods]
    records = []
    t0 = time.time()
    try:
        cluster = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        check_cluster(budget, cluster)
        k = runs_at_once(budget, cluster, len(runs), parallel)
        log(f"placement: {'one run at a time' if k == 1 else f'{k} runs side by side'} "
            f"(cluster {cluster}, one run takes {budget.per_run()})")
        args = dict(budget=budget, reference=reference, storage=storage,
                    compile_gradient=compile_gradient, verbose=verbose)

        def finished(record):
            records.append(record)
            _write_run(out_dir, csv_path, record)
            _log_run(log, task, record, len(records), len(runs))

        if k == 1:
            for method, seed in runs:
                finished(run_one(task, method, seed, **args))
        else:
            remote = ray.remote(num_cpus=0, max_retries=0)(run_one)
            pending, inflight = list(runs), {}
            while pending or inflight:
                while pending and len(inflight) < k:
                    method, seed = pending.pop(0)
                    inflight[remote.remote(task, method, seed, **args)] = (method, seed)
                done, _ = ray.wait(list(inflight), num_returns=1)
                inflight.pop(done[0])
                finished(ray.get(done[0]))
    finally:
        if owned:
            ray.shutdown()
    from tune_ext.benchmark.summary import run_curves, summarize_runs, write_outputs

    summary = summarize_runs(task, methods, seeds, budget, reference, records, cluster, k,
                             compile_gradient, wall_s=time.time() - t0)
    write_outputs(summary, run_curves(records), out_dir)
    return summary


def _write_run(out_dir: str, csv_path: str, record: dict) -> None:
    from tune_ext.benchmark.curves import append_csv, write_tensorboard

    if record["points"]:
        append_csv(csv_path, record["method"], record["seed"], record["points"])
        write_tensorboard(os.path.join(out_dir, "tensorboard"), record["method"], record["seed"],
                          record["points"], record["start"])


def _log_run(log, task: Task, record: dict, done: int, total: int) -> None:
    reason = no_result_reason(record, task)
    regret = "no result" if reason else f"regret {record['points'][-1]['regret']:.4f}"
    first = record["first_result_s"]
    log(f"[{done}/{total}] {record['method']:<14} seed {record['seed']}  {regret}  "
        f"trials {record['trials']:>4}  results {record['results']:>5}  errored {record['errored']}  "
        f"first result {'-' if first is None else f'{first:.1f}s'}  "
        f"({record['end'] - record['start']:.0f}s)")
    if reason:
        log("    " + reason)
    elif record["first_error"]:  # failures are shown, never hidden behind a regret number
        log(f"    first error: {record['first_error']}")


__all__ = ["Budget", "METHODS", "method_kwargs", "run_benchmark", "run_one"]

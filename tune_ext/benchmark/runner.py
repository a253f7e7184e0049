"""Runs methods against each other on one Ray budget and writes curves, plots and summary.

Fairness: every (method, seed) run gets the same wall-clock budget, the same per-trial resources
and the same concurrency. Concurrency is set by resources, not by ``max_concurrent_trials``: a
trial PAUSEd by a scheduler frees its slot (Ray's concurrency limiter would keep counting it, and
a promotion scheduler could then wait forever for a trial that is never started).

Order: where the cluster has room for several runs at once (``cluster.runs_at_once``), each
``tune.run`` is driven from its own Ray task (no CPU of its own), so a cluster with room for all
of them finishes in about one budget. Otherwise they go one after another in the driver, every
method of seed 0, then of seed 1, ... so that machine load drifts evenly over methods.
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

from tune_ext.benchmark.budget import Budget
from tune_ext.benchmark.cluster import check_local_gpus, placement_line, ray_for, runs_at_once
from tune_ext.benchmark.curves import write_run
from tune_ext.benchmark.methods import METHODS, Method, check_trial_config
from tune_ext.benchmark.record import RunRecord
from tune_ext.benchmark.regret import BudgetStopper, IncumbentTracker, RegretCallback
from tune_ext.benchmark.summary import run_curves, summarize_runs, write_outputs
from tune_ext.benchmark.tasks import Task

OUTPUTS = ("regret.csv", "tensorboard", "ray")   # what a run writes besides summary and plots
START_LIMIT_S = 120.0   # the longest a run waits for its first trial (at least its budget)


@dataclass
class RunOptions:
    """How a benchmark runs (where, how loudly), as opposed to what it measures (``Budget``).

    Args:
        address: a Ray cluster to join; None uses the Ray this program already started (left
            running), else starts a local one sized to one run (shut down at the end).
        parallel: at most this many runs side by side (None: as many as the cluster has room
            for; 1: always one after another).
        compile_gradient: gradient methods ``torch.compile`` their differentiated step
            (FDSTrainable's ``compile``); the compilation counts against the budget.
        verbose: show Ray's own console output.
        log: where progress lines go.
    """

    address: Optional[str] = None
    parallel: Optional[int] = None
    compile_gradient: bool = False
    verbose: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self):
        if self.parallel is not None and (isinstance(self.parallel, bool) or
                                          not isinstance(self.parallel, int) or self.parallel < 1):
            raise ValueError(f"parallel must be an int >= 1 or None, got {self.parallel!r}")


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


def method_kwargs(method: Method, task: Task, seed: int, compile_gradient: bool = False) -> dict:
    """``method``'s ``tune.run`` arguments for ``task`` and ``seed``.

    compile_gradient: see ``RunOptions``.
    """
    kwargs = method.build(task, seed)
    if compile_gradient and method.kind == "gradient":
        kwargs["config"] = {**kwargs["config"], "compile": True}
    return kwargs


def run_benchmark(task: Task, methods: list[Method], seeds: list[int], budget: Budget, out_dir: str,
                  options: Optional[RunOptions] = None) -> dict:
    """Runs every method for every seed; writes regret.csv, tensorboard/, regret.png, ranks.png
    and summary.json into ``out_dir`` and returns the summary.

    Args:
        task: what to tune (``get_task(name)`` or your own ``Task``).
        methods: ``get_methods([...])``.
        seeds: benchmark seeds (each method runs once per seed), at least one.
        budget: the same wall-clock budget, concurrency and per-trial resources for every run.
        out_dir: output folder (made if missing; must be writable).
        options: where and how it runs (``RunOptions``; default: a Ray of its own, quiet).

    Everything that can be checked is checked before Ray starts: ``ValueError`` (or
    ``FileNotFoundError`` for a missing reference) and nothing run.
    """
    options = options or RunOptions()
    reference = _check_inputs(task, methods, seeds, budget, out_dir, options)
    storage = _clear_outputs(out_dir)
    runs = [(m, s) for s in seeds for m in methods]
    records: list[RunRecord] = []
    t0 = time.time()
    with ray_for(budget, options.address, options.verbose) as cluster:
        at_once = runs_at_once(budget, cluster, len(runs), options.parallel)
        options.log(placement_line(budget, cluster, at_once))
        for record in _each_run(task, runs, budget, reference, storage, options, at_once):
            records.append(record)
            write_run(out_dir, record)
            _log_run(options.log, task, budget, records, len(runs))
    summary = summarize_runs(task, methods, seeds, budget, reference, records, cluster, at_once,
                             options.compile_gradient, wall_s=time.time() - t0)
    write_outputs(summary, run_curves(records), out_dir)
    return summary


def _check_inputs(task, methods, seeds, budget, out_dir, options) -> float:
    """Everything checkable before Ray starts; returns the task's reference."""
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if not methods:
        raise ValueError("no methods given")
    for method in methods:
        method.check(task)
        check_trial_config(method, task)  # a config every trial would refuse: once, before Ray
    reference = task.reference_value()  # refuse before starting anything
    check_output_dir(out_dir)
    check_local_gpus(budget, options.address)
    return reference


def _clear_outputs(out_dir: str) -> str:
    """Removes a previous run's outputs (a rerun into the same folder starts clean); returns the
    folder Ray Tune stores its experiments in."""
    for stale in OUTPUTS:
        path = os.path.join(out_dir, stale)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    return os.path.abspath(os.path.join(out_dir, "ray"))


def _each_run(task, runs, budget, reference, storage, options, at_once):
    """Yields each run's record as it finishes: in order in the driver, or ``at_once`` side by
    side, each driven from a Ray task."""
    import ray

    args = dict(budget=budget, reference=reference, storage=storage,
                compile_gradient=options.compile_gradient, verbose=options.verbose)
    if at_once == 1:
        for method, seed in runs:
            yield run_one(task, method, seed, **args)
        return
    remote = ray.remote(num_cpus=0, max_retries=0)(run_one)
    pending, inflight = list(runs), set()
    while pending or inflight:
        while pending and len(inflight) < at_once:
            method, seed = pending.pop(0)
            inflight.add(remote.remote(task, method, seed, **args))
        done, _ = ray.wait(list(inflight), num_returns=1)
        inflight.remove(done[0])
        yield ray.get(done[0])


def run_one(task: Task, method: Method, seed: int, budget: Budget, reference: float,
            storage: str, compile_gradient: bool = False, verbose: bool = False) -> RunRecord:
    """One (method, seed) run: a ``tune.run`` on the budget, its clock started when its first
    trial is up (``RegretCallback``). Returns its record."""
    import ray
    from ray import tune

    # Ray generates at most this many PENDING trials ahead: searchers then suggest close to when
    # a slot frees, the same for every method (read when the run's controller starts)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(budget.concurrency)
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    callback = RegretCallback(IncumbentTracker(reference, task.metric, task.mode, task.test_metric),
                              budget_s=budget.seconds)
    stopper = BudgetStopper(callback, budget.seconds, budget.max_results,
                            start_limit_s=max(START_LIMIT_S, budget.seconds))
    set_up = time.time()
    trials, errored, error = [], [], None
    try:
        analysis = tune.run(**method_kwargs(method, task, seed, compile_gradient),
                            metric=task.metric, mode=task.mode,
                            resources_per_trial=budget.resources(), stop=stopper,
                            callbacks=[callback], verbose=1 if verbose else 0, reuse_actors=True,
                            storage_path=storage, name=f"{method.name}-seed{seed}",
                            raise_on_failed_trial=False)
        trials = analysis.trials
        errored = [t for t in trials if t.status == "ERROR"]
    except Exception as exc:  # recorded as this run's failure, shown, never a regret number
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        callback.close()
    return RunRecord(method=method.name, seed=seed, node=ray.util.get_node_ip_address(),
                     start=callback.start_wall or set_up, end=time.time(), points=callback.points,
                     trials=len(trials), errored=len(errored),
                     first_error=str(errored[0].error_file) if errored else None, error=error,
                     results=callback.n_results, late_results=callback.n_late,
                     first_result_s=callback.first_result_s, startup_s=callback.startup_s,
                     devices=tuple(sorted(callback.devices)))


def _on_cpu_instead(budget: Budget, record: RunRecord) -> bool:
    """Whether trials that requested a GPU said they trained on the CPU (no CUDA where they ran)."""
    return bool(budget.gpus_per_trial) and "cpu" in record.devices


def _log_run(log, task: Task, budget: Budget, records: list[RunRecord], total: int) -> None:
    """The progress line of the run that finished last; the first run whose trials fell back to
    the CPU also gets one line saying so."""
    record = records[-1]
    reason = record.no_result_reason(task.metric, task.test_metric)
    regret = "no result" if reason else f"regret {record.points[-1]['regret']:.4f}"
    log(f"[{len(records)}/{total}] {record.method:<14} seed {record.seed}  {regret}  "
        f"trials {record.trials:>4}  results {record.results:>5}  errored {record.errored}  "
        f"first result {_seconds(record.first_result_s)}  "
        f"({record.end - record.start:.0f}s, start-up {_seconds(record.startup_s)} before)")
    if reason:
        log("    " + reason)
    elif record.first_error:  # failures are shown, never hidden behind a regret number
        log(f"    first error: {record.first_error}")
    if _on_cpu_instead(budget, record) and \
            not any(_on_cpu_instead(budget, r) for r in records[:-1]):
        log(f"GPU: trials requested {budget.gpus_per_trial:g} GPU and Ray assigned them GPU ids, "
            f"but CUDA is not available where they ran: they train on the CPU")


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}s"


__all__ = ["Budget", "METHODS", "RunOptions", "method_kwargs", "run_benchmark", "run_one"]

"""Runs methods against each other on one Ray budget and writes curves, plot and summary.

Fairness: every (method, seed) run gets the same wall-clock budget, the same per-trial resources
and the same concurrency. Concurrency is set by resources, not by ``max_concurrent_trials``: a
trial PAUSEd by a scheduler frees its slot (Ray's concurrency limiter would keep counting it, and
a promotion scheduler could then wait forever for a trial that is never started).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from tune_ext.benchmark.curves import load_curves, plot_curves, summarize
from tune_ext.benchmark.methods import Method
from tune_ext.benchmark.reference import load_reference
from tune_ext.benchmark.regret import RegretCallback
from tune_ext.benchmark.tasks import Task


@dataclass
class Budget:
    """What every method gets: seconds per (method, seed), concurrent trials, per-trial resources."""

    seconds: float
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self):
        if self.seconds <= 0:
            raise ValueError(f"budget seconds must be > 0, got {self.seconds}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError(f"cpus_per_trial must be > 0 and gpus_per_trial >= 0, got "
                             f"{self.cpus_per_trial}, {self.gpus_per_trial}")

    def resources(self) -> dict:
        res = {"cpu": self.cpus_per_trial}
        if self.gpus_per_trial:
            res["gpu"] = self.gpus_per_trial
        return res


def start_ray(budget: Budget, address: str | None, verbose: bool) -> None:
    """Connects to ``address`` or starts a local Ray sized to exactly ``concurrency`` trials."""
    import logging

    import ray

    # Ray generates at most this many PENDING trials ahead: searchers then suggest close to when
    # a slot frees, the same for every method
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(budget.concurrency))
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter is silent at verbose=0
    kwargs = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
              "configure_logging": True}
    if address:
        ray.init(address=address, **kwargs)
        return
    kwargs["num_cpus"] = budget.concurrency * budget.cpus_per_trial
    if budget.gpus_per_trial:
        import torch
        kwargs["num_gpus"] = torch.cuda.device_count()
    # "local": always a fresh instance of our own, never a cluster that happens to be running
    ray.init(address="local", include_dashboard=False, **kwargs)


def method_kwargs(method: Method, task: Task, seed: int, compile_gradient: bool = False) -> dict:
    """``method``'s ``tune.run`` arguments for ``task`` and ``seed``.

    compile_gradient: gradient methods ``torch.compile`` their differentiated step (FDSTrainable's
    ``compile``); the compilation counts against the budget like everything else a trial does.
    """
    kwargs = method.build(task, seed)
    if compile_gradient and method.kind == "gradient":
        kwargs["config"] = {**kwargs["config"], "compile": True}
    return kwargs


def run_benchmark(task: Task, methods: list[Method], seeds: list[int], budget: Budget, out_dir: str,
                  address: str | None = None, verbose: bool = False, log=print,
                  compile_gradient: bool = False) -> dict:
    """Runs every method for every seed, then writes regret.csv, regret.png and summary.json.

    compile_gradient: see ``method_kwargs``.
    """
    import ray
    from ray import tune
    from tensorboardX import SummaryWriter

    reference = load_reference(task)["reference_test_acc"]  # refuse before starting anything
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "regret.csv")
    if os.path.exists(csv_path):
        os.remove(csv_path)
    start_ray(budget, address, verbose)
    cluster = ray.cluster_resources()
    runs, done = [(s, m) for s in seeds for m in methods], 0
    try:
        for seed, method in runs:
            writer = SummaryWriter(os.path.join(out_dir, "tensorboard", f"{method.name}-seed{seed}"))
            callback = RegretCallback(method.name, seed, reference, writer, csv_path)
            t0 = time.monotonic()
            try:
                analysis = tune.run(**method_kwargs(method, task, seed, compile_gradient),
                         metric="val_acc", mode="max",
                         resources_per_trial=budget.resources(), time_budget_s=budget.seconds,
                         callbacks=[callback], verbose=1 if verbose else 0, reuse_actors=True,
                         storage_path=os.path.abspath(os.path.join(out_dir, "ray")),
                         name=f"{method.name}-seed{seed}", raise_on_failed_trial=False)
            finally:
                callback.close()
                writer.close()
            done += 1
            errored = [t for t in analysis.trials if t.status == "ERROR"]
            log(f"[{done}/{len(runs)}] {method.name:<14} seed {seed}  regret {callback.tracker.regret:.4f}  "
                f"trials {len(callback.trials):>4}  results {callback.n_results:>5}  "
                f"errored {len(errored)}  ({time.monotonic() - t0:.0f}s)")
            for trial in errored[:1]:  # failures are shown, never hidden behind a regret number
                log(f"    first error ({trial.trial_id}): {str(trial.error_file or '')}")
    finally:
        ray.shutdown()
    curves = load_curves(csv_path)
    summary = {"task": task.name, "reference_test_acc": reference, "target_regret": task.target_regret,
               "budget_s": budget.seconds, "concurrency": budget.concurrency,
               "resources_per_trial": budget.resources(), "compile_gradient": compile_gradient,
               "cluster_resources": {k: v for k, v in cluster.items() if k in ("CPU", "GPU")},
               "methods": summarize(curves, task.target_regret)}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot_curves(curves, os.path.join(out_dir, "regret.png"), reference, budget.seconds,
                task.target_regret, title=f"{task.name}: regret, median and IQR over {len(seeds)} seed(s)")
    return summary


def format_table(summary: dict) -> str:
    """Markdown table: time to target regret and final regret per method, medians over seeds."""
    rows = ["| method | time to regret <= %g (s) | final regret | seeds |" % summary["target_regret"],
            "| --- | --- | --- | --- |"]
    order = sorted(summary["methods"].items(),
                   key=lambda kv: (kv[1]["time_to_target_s"] is None, kv[1]["time_to_target_s"] or 0,
                                   kv[1]["final_regret"]))
    for name, m in order:
        ttt = "never" if m["time_to_target_s"] is None else f"{m['time_to_target_s']:.1f}"
        rows.append(f"| {name} | {ttt} | {m['final_regret']:.4f} | {len(m['seeds'])} |")
    return "\n".join(rows)

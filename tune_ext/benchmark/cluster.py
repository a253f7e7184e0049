"""The Ray a benchmark runs on: start or join it, check it can hold a trial, and place the runs.

Placement: each (method, seed) run is one ``tune.run``. When the cluster has room for several
runs' concurrent trials at once, the runs go side by side; otherwise (one small machine: the local
Ray the harness starts has room for exactly one run) one after another.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Optional

from tune_ext.benchmark.budget import Budget


def local_gpu_count() -> int:
    """GPUs torch sees on this machine."""
    import torch

    return torch.cuda.device_count()


def check_local_gpus(budget: Budget, address: Optional[str]) -> None:
    """ValueError if trials request GPUs and neither the Ray this process started nor a cluster
    to join (``address``) can have any: this machine has none visible to torch."""
    import ray

    if ray.is_initialized():   # the caller's Ray: check it has room for one trial before anything
        check_cluster(budget, ray.cluster_resources())
    elif budget.gpus_per_trial and not address and not local_gpu_count():
        raise ValueError(f"each trial requests {budget.gpus_per_trial:g} GPU but this machine has "
                         f"no GPU visible to torch; drop --gpus-per-trial or join a cluster with GPUs")


def start_ray(budget: Budget, address: Optional[str], verbose: bool) -> bool:
    """Uses the Ray this process already started, joins ``address``, or starts a local Ray sized to
    exactly one run's trials. Returns whether the caller owns it (and must shut it down)."""
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


@contextlib.contextmanager
def ray_for(budget: Budget, address: Optional[str], verbose: bool):
    """Ray for a benchmark (see ``start_ray``), checked to hold one trial; yields its CPU and GPU
    totals and shuts down a Ray it started."""
    import ray

    owned = start_ray(budget, address, verbose)
    try:
        cluster = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        check_cluster(budget, cluster)
        yield cluster
    finally:
        if owned:
            ray.shutdown()


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


def placement_line(budget: Budget, cluster: dict, at_once: int) -> str:
    """The console line saying how the runs are placed."""
    how = "one run at a time" if at_once == 1 else f"{at_once} runs side by side"
    return f"placement: {how} (cluster {cluster}, one run takes {budget.per_run()})"

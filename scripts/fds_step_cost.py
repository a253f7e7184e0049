"""What one FDS outer step costs on a task's model, against one plain training run of the same
length: eager and compiled, for both derivative paths (``derivative="jvp"``, forward over reverse,
and ``"hvp"``, reverse over reverse), with a cold and a warm compile cache: the numbers behind the
harness's choice of eager or ``--compile`` and of the default derivative path.

Each row group runs in a fresh process (``--row``), one torch thread, as a benchmark trial does:
the plain run is ``SupervisedTrainable`` for the task's epochs; an FDS outer step is one
``FDSTrainable.train()`` with ``inner_epochs`` = the task's epochs (an inner run carrying the
tangents of 3 learning-rate windows, momentum and weight decay in forward mode, whose two derivative
paths are compared here, then the hyperparameter update; ``bench_hypergrad.py --modes`` compares
the modes).
"first" includes everything a trial's first step pays (for compiled: the compilation); "next" is
the fastest of ``--repeats`` later steps in the same process. The two derivative paths run in the
*same* process, their steps interleaved (jvp, hvp, jvp, hvp, ...), so a loaded machine slows both
alike: their ratio is the number to read. In the compiled process the first path compiles with
an empty TorchInductor cache (as on a new node) and the second after it (warm imports, its own
graphs still cold); a second compiled process then starts from the cache the first one filled
(as every later trial process on the node does, ``trainables.data.use_compile_cache``).

    PYTHONPATH=. python scripts/fds_step_cost.py mnist1d [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PATHS = ("jvp", "hvp")


def _row(task_name: str, kind: str, repeats: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from trainables import FDSTrainable, SupervisedTrainable
    from tune_ext.benchmark.methods import gradient_config
    from tune_ext.benchmark.reference import load_reference
    from tune_ext.benchmark.tasks import get_task

    task = get_task(task_name)
    if kind == "plain":
        best = load_reference(task)["best"]["config"]
        config = {**task.search_space(), **best, "seed": 0}
        trainable, times = SupervisedTrainable(config=config), []
        for _ in range(1 + repeats):
            start = time.perf_counter()
            for _ in range(task.max_t):
                trainable.train()
            times.append(time.perf_counter() - start)
            trainable.reset_config(config)
        trainable.stop()
        return {"plain": {"first_s": times[0], "next_s": min(times[1:])}}
    calls = 1 if kind == "warm" else 1 + repeats
    trainables = {p: FDSTrainable(config={**gradient_config(task, "fds"), "inner_epochs": task.max_t,
                                          "outer_steps": 10, "seed": 0, "derivative": p,
                                          "hypergrad_mode": "forward",  # the paths compared
                                          "compile": kind != "eager"}) for p in PATHS}
    times = {p: [] for p in PATHS}
    for _ in range(calls):
        for p in PATHS:  # interleaved: the load of the moment falls on both paths
            start = time.perf_counter()
            trainables[p].train()
            times[p].append(time.perf_counter() - start)
    for t in trainables.values():
        t.stop()
    return {p: {"first_s": ts[0], "next_s": min(ts[1:]) if len(ts) > 1 else None}
            for p, ts in times.items()}


def measure(task_name: str, repeats: int = 3, log=print) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as cache:  # cold: empty on the first compiled process
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
        for kind in ("plain", "eager", "compiled", "warm"):
            out = subprocess.run([sys.executable, __file__, "--row", task_name, kind, str(repeats)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            rows[kind] = json.loads(out.strip().splitlines()[-1])
    plain = rows["plain"]["plain"]["next_s"]
    log(f"\nOne FDS outer step on {task_name} (inner run of the whole horizon) vs one plain "
        f"training run of the same length, 1 torch thread, torch {_torch_version()}\n")
    log("| what | first call (s) | next call (s) | next / plain run |")
    log("|---|---:|---:|---:|")
    names = {"eager": "eager", "compiled": "compiled, cold cache", "warm": "compiled, warm cache"}
    p = rows["plain"]["plain"]
    log(f"| plain SupervisedTrainable run | {p['first_s']:.1f} | {p['next_s']:.1f} | 1.0 |")
    for kind, name in names.items():
        for path in PATHS:
            r = rows[kind][path]
            nxt = "-" if r["next_s"] is None else f"{r['next_s']:.1f}"
            ratio = "-" if r["next_s"] is None else f"{r['next_s'] / plain:.1f}"
            log(f"| FDS outer step, {name}, {path} | {r['first_s']:.1f} | {nxt} | {ratio} |")
    for kind in ("eager", "compiled"):
        jvp, hvp = rows[kind]["jvp"]["next_s"], rows[kind]["hvp"]["next_s"]
        log(f"\n{kind}: jvp / hvp next-step time {jvp / hvp:.2f} (same process, interleaved; "
            f"> 1: hvp is faster)")
    eager, compiled = rows["eager"]["jvp"], rows["compiled"]["jvp"]
    # the harness's budget pays the first call: compiling pays once the saving covers it
    saving = eager["next_s"] - compiled["next_s"]
    for label, first in (("a cold", compiled["first_s"]), ("a warm", rows["warm"]["jvp"]["first_s"])):
        extra = first - eager["first_s"]
        pays_after = None if saving <= 0 else max(1.0, 1 + extra / saving)
        log(f"with {label} cache, compiled (jvp) is cheaper from outer step {pays_after:.1f} on "
            f"(per trial process)" if pays_after else f"with {label} cache, compiled is never cheaper")
    return rows


def _torch_version():
    import torch

    return torch.__version__


if __name__ == "__main__":
    if sys.argv[1:2] == ["--row"]:
        print(json.dumps(_row(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("task", nargs="?", default="mnist1d")
        parser.add_argument("--repeats", type=int, default=3, help="later steps timed per path")
        args = parser.parse_args()
        measure(args.task, args.repeats)

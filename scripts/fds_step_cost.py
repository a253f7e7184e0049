"""What one FDS outer step costs on a task's model, against one plain training run of the same
length, eager and compiled: the numbers behind the harness's choice of eager or ``--compile``.

Each row runs in a fresh process (``--row``), one torch thread, as a benchmark trial does: the
plain run is ``SupervisedTrainable`` for the task's epochs; the FDS outer step is one
``FDSTrainable.train()`` with ``inner_epochs`` = the task's epochs (an inner run carrying the
tangents of 3 learning-rate windows, momentum and weight decay, then the hyperparameter update).
"first" includes everything a trial's first step pays (for compiled: the compilation, with an
empty TorchInductor cache); "next" is a second step in the same process.

    PYTHONPATH=. python scripts/bench_hypergrad.py --fds-step mnist1d
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def _row(task_name: str, kind: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from trainables import FDSTrainable, SupervisedTrainable
    from tune_ext.benchmark.methods import gradient_config
    from tune_ext.benchmark.reference import load_reference
    from tune_ext.benchmark.tasks import get_task

    task = get_task(task_name)
    times = []
    if kind == "plain":
        best = load_reference(task)["best"]["config"]
        trainable = SupervisedTrainable(config={**task.search_space(), **best, "seed": 0})
        for _ in range(2):
            start = time.perf_counter()
            for _ in range(task.max_t):
                trainable.train()
            times.append(time.perf_counter() - start)
            trainable.reset_config({**task.search_space(), **best, "seed": 0})
    else:
        config = {**gradient_config(task, "fds"), "inner_epochs": task.max_t, "outer_steps": 2,
                  "seed": 0, "compile": kind == "compiled"}
        trainable = FDSTrainable(config=config)
        for _ in range(2):
            start = time.perf_counter()
            trainable.train()
            times.append(time.perf_counter() - start)
    trainable.stop()
    return {"kind": kind, "first_s": times[0], "next_s": times[1]}


def measure(task_name: str, log=print) -> list[dict]:
    rows = []
    for kind in ("plain", "eager", "compiled"):
        with tempfile.TemporaryDirectory() as cache:   # a cold inductor cache, as on a new node
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, __file__, "--row", task_name, kind], env=env,
                                 capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    plain = rows[0]["next_s"]
    log(f"\nOne FDS outer step on {task_name} (inner run of the whole horizon) vs one plain "
        f"training run of the same length, 1 torch thread, torch {_torch_version()}\n")
    log("| what | first call (s) | next call (s) | next / plain run |")
    log("|---|---:|---:|---:|")
    for r in rows:
        log(f"| {'plain SupervisedTrainable run' if r['kind'] == 'plain' else 'FDS outer step, ' + r['kind']} "
            f"| {r['first_s']:.1f} | {r['next_s']:.1f} | {r['next_s'] / plain:.1f} |")
    eager, compiled = rows[1], rows[2]
    # the harness's budget pays the first call: compiling pays once the saving covers it
    saving = eager["next_s"] - compiled["next_s"]
    extra = compiled["first_s"] - eager["first_s"]
    pays_after = None if saving <= 0 else max(1, 1 + extra / saving)
    log(f"\ncompiled is cheaper from outer step {pays_after:.1f} on (per trial process)"
        if pays_after else "\ncompiled is never cheaper here")
    return rows


def _torch_version():
    import torch

    return torch.__version__


if __name__ == "__main__":
    if sys.argv[1:2] == ["--row"]:
        print(json.dumps(_row(sys.argv[2], sys.argv[3])))
    else:
        measure(sys.argv[1] if len(sys.argv) > 1 else "mnist1d")

"""Hyper-step sizes for the online gradient methods (HD, OHO): a few, measured on a task.

Each run is one ``FDSTrainable`` (method "hd" or "oho") of the task's whole horizon from a fixed
start, its hyperparameters (lr, momentum, weight decay) learned online with plain SGD on the raw
hypergradient (``clip=None``, as Baydin et al. 2018 and Im, Savin & Cho 2021 do) and the same
hyper-step size for all three; step size 0 is the plain run at the start (the control). It prints
one line per (method, step size, start) with the final test accuracy per seed and the median, and
writes them as JSON. Baydin et al. use a hypergradient learning rate of 1e-3 for SGD-HD; OHO's
MNIST runs use a meta learning rate of 1e-5 (global) to 1e-6 (per layer).

    PYTHONPATH=. python scripts/online_step_sizes.py --out /tmp/online-steps.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

STARTS = {"mid": {"lr": 0.03, "momentum": 0.5, "weight_decay": 1e-4},
          "good": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}}
STEPS = {"hd": (0.0, 1e-5, 1e-4, 1e-3, 1e-2), "oho": (1e-6, 1e-5, 1e-4, 1e-3)}


def run(task, method, step, start, seed) -> dict:
    """One online run of the task's horizon; its final scores and hyperparameters."""
    from trainables import FDSTrainable
    from tune_ext.benchmark.methods import gradient_config

    config = {**gradient_config(task, method), "seed": seed, "clip": None,
              **{f"{h}_init": v for h, v in start.items()}, **{f"{h}_step": step for h in start}}
    if step == 0:  # a plain run at the start: nothing learned (an all-zero step is refused)
        config["lr_step"] = 1e-300
    t = FDSTrainable(config=config)
    try:
        for _ in range(task.max_t):
            result = t.train()
    finally:
        t.stop()
    return {k: result[k] for k in ("test_acc", "val_acc", "lr_0", "momentum_0", "weight_decay_0")}


def main(argv=None):
    from tune_ext.benchmark.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mnist1d")
    p.add_argument("--methods", default="hd,oho")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", default=None, help="comma-separated step sizes instead of STEPS")
    p.add_argument("--out", default=None, help="JSON file for the table")
    args = p.parse_args(argv)
    task, rows = get_task(args.task), []
    for method in args.methods.split(","):
        for name, start in STARTS.items():
            steps = [float(x) for x in args.steps.split(",")] if args.steps else STEPS[method]
            for step in steps:
                began = time.time()
                runs = [run(task, method, step, start, seed) for seed in range(args.seeds)]
                accs = [r["test_acc"] for r in runs]
                lrs = " ".join(f"{r['lr_0']:.3g}" for r in runs)
                rows.append({"method": method, "step": step, "start": name, "runs": runs,
                             "median_test_acc": statistics.median(accs)})
                print(f"{method:4} step {step:<7g} start {name:5} test_acc "
                      f"{' '.join(f'{a:.3f}' for a in accs)} median {statistics.median(accs):.3f} "
                      f"final lr {lrs} "
                      f"({time.time() - began:.0f} s)", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump({"task": task.name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

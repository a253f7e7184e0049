"""Hyper-step sizes for the online gradient methods (HD, OHO): a few, measured on a task.

Each run is one ``FDSTrainable`` (method "hd" or "oho") of the task's whole horizon from a fixed
start (``--starts``: two moderate ones, and two where a raw step of 1e-4 lost OHO in the default
run), its hyperparameters (lr, momentum, weight decay) learned online with plain SGD on the
hypergradient: raw by default (``clip=None``, as Baydin et al. 2018 and Im, Savin & Cho 2021
do) or clipped per kind (``--clip``), one hyper-step size for lr and momentum and, by default,
for weight decay too (``--weight-decay-steps`` tries others); step size 0 is the plain run at
the start (the control). It prints one line per (method, step sizes, start) with the final test
accuracy per seed and the median, and writes them as JSON. Baydin et al. use a hypergradient
learning rate of 1e-3 for SGD-HD; OHO's MNIST runs use a meta learning rate of 1e-5 (global) to
1e-6 (per layer). The harness's choice (``methods.ONLINE_STEPS``, ``ONLINE_CLIP``) and the tables
are in docs/gradient-hpo.md.

    PYTHONPATH=. python scripts/online_step_sizes.py --out /tmp/online-steps.json
    PYTHONPATH=. python scripts/online_step_sizes.py --methods oho --steps 1e-4 \
        --weight-decay-steps 1e-5 --clip 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

STARTS = {"mid": {"lr": 0.03, "momentum": 0.5, "weight_decay": 1e-4},
          "good": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
          # where OHO at 1e-4 for every kind ended at chance in the default run (docs/results.md)
          "large": {"lr": 0.47, "momentum": 0.77, "weight_decay": 2e-6},
          "steep": {"lr": 0.08, "momentum": 0.96, "weight_decay": 5e-4}}
STEPS = {"hd": (0.0, 1e-5, 1e-4, 1e-3, 1e-2), "oho": (1e-6, 1e-5, 1e-4, 1e-3)}


def run(task, method, step, start, seed, wd_step=None, clip=None) -> dict:
    """One online run of the task's horizon; its final scores and hyperparameters.

    wd_step: weight decay's hyper-step [``step``, as lr's and momentum's]; clip: the largest
    hypergradient norm per kind [None: the raw hypergradient]."""
    from trainables import FDSTrainable
    from tune_ext.benchmark.methods import gradient_config

    config = {**gradient_config(task, method), "seed": seed, "clip": clip,
              **{f"{h}_init": v for h, v in start.items()}, **{f"{h}_step": step for h in start}}
    if wd_step is not None:
        config["weight_decay_step"] = wd_step
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
    p.add_argument("--weight-decay-steps", default=None,
                   help="comma-separated weight-decay steps, each tried with every step size "
                        "(default: weight decay takes the same step as lr and momentum)")
    p.add_argument("--starts", default=",".join(STARTS), help=f"of {', '.join(STARTS)}")
    p.add_argument("--clip", type=float, default=None,
                   help="clip each kind's hypergradient to this norm [raw, as both papers]")
    p.add_argument("--out", default=None, help="JSON file for the table")
    args = p.parse_args(argv)
    unknown = [n for n in args.starts.split(",") if n not in STARTS]
    if unknown:
        p.error(f"unknown start(s) {', '.join(unknown)}; choose from {', '.join(STARTS)}")
    task, rows = get_task(args.task), []
    for method in args.methods.split(","):
        for name in args.starts.split(","):
            start = STARTS[name]
            steps = [float(x) for x in args.steps.split(",")] if args.steps else STEPS[method]
            wd_steps = ([float(x) for x in args.weight_decay_steps.split(",")]
                        if args.weight_decay_steps else [None])
            for step, wd_step in [(a, b) for a in steps for b in wd_steps]:
                began = time.time()
                runs = [run(task, method, step, start, seed, wd_step, args.clip)
                        for seed in range(args.seeds)]
                accs = [r["test_acc"] for r in runs]
                lrs = " ".join(f"{r['lr_0']:.3g}" for r in runs)
                wds = " ".join(f"{r['weight_decay_0']:.3g}" for r in runs)
                rows.append({"method": method, "step": step, "weight_decay_step": wd_step,
                             "clip": args.clip, "start": name, "runs": runs,
                             "median_test_acc": statistics.median(accs)})
                wd = "" if wd_step is None else f" wd step {wd_step:<7g}"
                print(f"{method:4} step {step:<7g}{wd} start {name:5} test_acc "
                      f"{' '.join(f'{a:.3f}' for a in accs)} median {statistics.median(accs):.3f} "
                      f"final lr {lrs} final wd {wds} "
                      f"({time.time() - began:.0f} s)", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump({"task": task.name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

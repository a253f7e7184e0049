"""Decision cost of ASHA (stopping): tune-ext's vs Ray's ASHAScheduler on the same replayed curves.

Both schedulers run in this process and see the same synthetic learning curves
(value(i, t) = q_i * (1 - 0.8**t) + a deterministic wobble), replayed in waves t = 1 .. max_t over
the trials each scheduler keeps alive. Only ``on_trial_result`` calls are timed, with lightweight
Trial stand-ins, so the numbers are the schedulers' decision cost, not Ray's controller.

    PYTHONPATH=. python scripts/bench_schedulers.py --ray 1000 10000 50000 \
        --ours 1000 10000 50000 1000000
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np
from ray.tune.schedulers import ASHAScheduler as RayASHA
from ray.tune.schedulers import TrialScheduler

from tune_ext.schedulers import ASHAScheduler

CHUNK = 20_000


class LightTrial:
    __slots__ = ("trial_id", "status")

    def __init__(self, trial_id: str):
        self.trial_id = trial_id
        self.status = "RUNNING"


def replay(scheduler, n: int, max_t: int, seed: int = 0) -> tuple[float, int, int]:
    """(seconds in on_trial_result, decisions, trials that reached max_t)."""
    quality = np.random.default_rng(seed).random(n)
    trials = [LightTrial(f"t{i}") for i in range(n)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    alive = np.arange(n)
    spent, decisions, finished = 0.0, 0, 0
    stop = TrialScheduler.STOP
    on_result = scheduler.on_trial_result
    for t in range(1, max_t + 1):
        keep = []
        for lo in range(0, len(alive), CHUNK):
            idx = alive[lo:lo + CHUNK]
            values = quality[idx] * (1 - 0.8 ** t) + 0.02 * np.sin(12.9898 * idx + 78.233 * t)
            batch = [(trials[i], {"training_iteration": t, "score": v})
                     for i, v in zip(idx.tolist(), values.tolist())]
            out = [None] * len(batch)
            start = time.perf_counter()
            for j, (trial, result) in enumerate(batch):
                out[j] = on_result(None, trial, result)
            spent += time.perf_counter() - start
            decisions += len(batch)
            keep.extend(i for i, d in zip(idx.tolist(), out) if d != stop)
            if t == max_t:
                finished += len(batch)
        alive = np.array(keep, dtype=np.int64)
        if not len(alive):
            break
    return spent, decisions, finished


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ray", type=int, nargs="*", default=[1000, 10000, 50000])
    ap.add_argument("--ours", type=int, nargs="*", default=[1000, 10000, 50000, 1000000])
    ap.add_argument("--max-t", type=int, default=27)
    ap.add_argument("--eta", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for n in sorted(set(args.ray) | set(args.ours)):
        row = {}
        if n in args.ours:
            gc.collect()
            ours = ASHAScheduler(metric="score", mode="max", max_t=args.max_t,
                                 reduction_factor=args.eta, variant="stopping")
            row["ours"] = replay(ours, n, args.max_t)
        if n in args.ray:
            gc.collect()
            ray = RayASHA(metric="score", mode="max", max_t=args.max_t, grace_period=1,
                          reduction_factor=args.eta)
            row["ray"] = replay(ray, n, args.max_t)
        rows[n] = row
        print_table(rows, args)


def print_table(rows, args) -> None:
    print(f"\nASHA (stopping), max_t={args.max_t}, eta={args.eta}: µs per decision "
          f"(on_trial_result), same replayed curves, one process")
    print(f"{'trials':>9} | {'decisions':>10} | {'ours µs':>8} | {'Ray µs':>8} | {'Ray/ours':>8} "
          f"| {'reach max_t ours/Ray':>20}")
    for n, row in rows.items():
        o, r = row.get("ours"), row.get("ray")
        us = lambda x: x[0] / x[1] * 1e6
        print(f"{n:>9} | {(o or r)[1]:>10} | {us(o) if o else float('nan'):>8.2f} | "
              f"{us(r) if r else float('nan'):>8.2f} | "
              f"{(us(r) / us(o)) if o and r else float('nan'):>8.1f} | "
              f"{(o[2] if o else '-')!s:>9}/{(r[2] if r else '-')!s:<10}", flush=True)


if __name__ == "__main__":
    main()

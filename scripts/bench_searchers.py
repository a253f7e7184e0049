"""Benchmark the searchers, driven directly (suggest / on_trial_complete; no Ray cluster).

1. Latency: ms per ``suggest`` once the searcher holds 100 and 1,000 observations (Hartmann-6
   space), ours against Ray's ``OptunaSearch`` and ``TuneBOHB`` in the same run.
2. Quality: best value after a fixed number of evaluations on Branin (2-d) and Hartmann-6,
   median over seeds, each searcher against random search; 4 suggestions are pending at a time.

Usage: PYTHONPATH=. python scripts/bench_searchers.py [--seeds 5] [--evals 60 100] [--quick]
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings

import numpy as np
from ray import tune

from tune_ext.searchers import BOHBSearch, CMAESSearch, RandomSearch, TPESearch

warnings.filterwarnings("ignore")
logging.getLogger("hpbandster").setLevel(logging.ERROR)
logging.getLogger("ray.tune").setLevel(logging.ERROR)

BRANIN_MIN = 0.397887
HARTMANN6_MIN = -3.32237


def branin(c):
    x, y = c["x1"], c["x2"]
    return ((y - 5.1 / (4 * math.pi ** 2) * x ** 2 + 5 / math.pi * x - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10)


_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c):
    x = np.array([c[f"x{i}"] for i in range(1, 7)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


PROBLEMS = {
    "branin": (branin, BRANIN_MIN,
               {"x1": tune.uniform(-5.0, 10.0), "x2": tune.uniform(0.0, 15.0)}),
    "hartmann6": (hartmann6, HARTMANN6_MIN, {f"x{i}": tune.uniform(0.0, 1.0) for i in range(1, 7)}),
}


def ray_optuna(space, seed, points=None):
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space, metric="loss", mode="min", seed=seed, points_to_evaluate=points)


def ray_bohb(space, seed, points=None):
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(space, metric="loss", mode="min", seed=seed, points_to_evaluate=points)


SEARCHERS = {
    "TPESearch": lambda space, seed, points=None: TPESearch(
        space, metric="loss", mode="min", seed=seed, points_to_evaluate=points),
    "CMAESSearch": lambda space, seed, points=None: CMAESSearch(
        space, metric="loss", mode="min", seed=seed, points_to_evaluate=points),
    "BOHBSearch": lambda space, seed, points=None: BOHBSearch(
        space, metric="loss", mode="min", seed=seed, points_to_evaluate=points),
    "RandomSearch": lambda space, seed, points=None: RandomSearch(
        space, metric="loss", mode="min", seed=seed, points_to_evaluate=points),
    "ray OptunaSearch": ray_optuna,
    "ray TuneBOHB": ray_bohb,
}
RAY_OF = {"TPESearch": "ray OptunaSearch", "BOHBSearch": "ray TuneBOHB"}


def evaluate(searcher, f, n, batch=4, start=0):
    """n evaluations, ``batch`` pending at a time; returns the values in suggestion order."""
    values = []
    for i in range(start, start + n, batch):
        ids = [f"t{j}" for j in range(i, min(i + batch, start + n))]
        configs = [searcher.suggest(t) for t in ids]
        for t, c in zip(ids, configs):
            v = f(c)
            # TuneBOHB only learns from results that carry HyperBandForBOHB's budget
            result = {"loss": v, "training_iteration": 1, "hyperband_info": {"budget": 1}}
            searcher.on_trial_result(t, result)
            searcher.on_trial_complete(t, result)
            values.append(v)
    return values


def latencies(names, n_obs, n_timed, seed=0):
    """ms per suggest after n_obs observations (random points fed in), for every searcher.

    The timed suggests are interleaved round-robin across searchers, so that load from other
    processes on the machine hits them all alike and the ratios stay meaningful."""
    f, _, space = PROBLEMS["hartmann6"]
    rng = np.random.default_rng(seed)
    points = [{k: float(v) for k, v in zip(space, row)} for row in rng.uniform(size=(n_obs, 6))]
    searchers, out = {}, {}
    for name in names:
        try:
            searchers[name] = SEARCHERS[name](space, seed, [dict(p) for p in points])
            evaluate(searchers[name], f, n_obs, batch=1)
            searchers[name].suggest("warm-up")  # untimed: lazy imports (cmaes, statsmodels)
        except Exception as e:  # reported in the table, not hidden (e.g. a ConfigSpace clash)
            out[name] = f"fails: {type(e).__name__}: {str(e)[:70]}"
            searchers.pop(name, None)
    times = {name: [] for name in searchers}
    for i in range(n_timed):
        for name, searcher in searchers.items():
            t0 = time.perf_counter()
            searcher.suggest(f"timed{i}")
            times[name].append(time.perf_counter() - t0)
    out.update({name: f"{1000 * statistics.mean(t):.1f}" for name, t in times.items()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evals", type=int, nargs=2, default=[60, 100],
                    help="evaluations on Branin and on Hartmann-6")
    ap.add_argument("--timed", type=int, default=10, help="suggests timed per latency cell")
    ap.add_argument("--quick", action="store_true", help="latency at 100 observations only")
    args = ap.parse_args()

    sizes = [100] if args.quick else [100, 1000]
    lat = {}
    for n in sizes:
        for name, value in latencies(list(SEARCHERS), n, args.timed).items():
            lat[name, n] = value
    print(f"## Suggest latency (Hartmann-6 space, ms per suggest, mean of {args.timed}, interleaved)\n")
    print("| searcher | " + " | ".join(f"{n} obs" for n in sizes) + " | ours / Ray's |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name in SEARCHERS:
        ratios = []
        for n in sizes:
            try:
                ratios.append(f"{float(lat[name, n]) / float(lat[RAY_OF[name], n]):.2f}x")
            except (KeyError, ValueError):
                ratios.append("n/a" if name in RAY_OF else "")
        print(f"| {name} | " + " | ".join(lat[name, n] for n in sizes) + " | "
              + (" / ".join(ratios) if name in RAY_OF else "") + " |", flush=True)

    print(f"\n## Best value after a fixed budget (median over {args.seeds} seeds, 4 pending at a "
          "time; regret = best - optimum)\n")
    print("| problem | evals | searcher | median best | median regret | regret / random's |")
    print("|---|---|---|---|---|---|")
    for (prob, (f, fmin, space)), n in zip(PROBLEMS.items(), args.evals):
        rows = {}
        for name in SEARCHERS:
            try:
                bests = [min(evaluate(SEARCHERS[name](space, seed), f, n))
                         for seed in range(args.seeds)]
                rows[name] = (statistics.median(bests), statistics.median(b - fmin for b in bests))
            except Exception as e:
                rows[name] = f"fails: {type(e).__name__}: {str(e)[:70]}"
        base = rows["RandomSearch"][1]
        for name, row in rows.items():
            if isinstance(row, str):
                print(f"| {prob} | {n} | {name} | {row} | | |")
            else:
                print(f"| {prob} | {n} | {name} | {row[0]:.4f} | {row[1]:.4f} | "
                      f"{row[1] / base:.2f} |", flush=True)

if __name__ == "__main__":
    main()

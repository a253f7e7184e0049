"""Which use of the concurrent slots and which horizon ladder help FDS, in the harness itself.

Runs variants of the harness's ``fds`` method on a task (default mnist1d, its default budget,
2 concurrent trials of 1 CPU), each with the same seeds, and prints the harness's table:

- ``fds``: the harness's method (each concurrent chain from its own start in the task's space,
  the first from the paper's; one inner run per outer step; the ladder 1, 2, 5, 10, 20 epochs);
- ``fds-same-start``: every chain from the paper's start (lr 0, momentum 0.5), seeds differ;
- ``fds-ens2``: every chain from the paper's start, two seeds per outer step, hypergradients
  averaged (FDSTrainable's ``ensemble``; twice the cost per step);
- ``fds-diverse-ens2``: own starts and two seeds per outer step;
- ``fds-ladder4``: own starts, a cheaper ladder (1, 5, 20 epochs: 6 epochs before the first
  full-horizon run instead of 18, two outer steps instead of four);
- ``fds-warmup4``: own starts, warm-up runs doubling up to a fifth of the horizon (1, 2, 4, then
  20 epochs: 7 epochs and three outer steps before the first full-horizon run);
- ``fds-same-start-warmup4``: the same ladder, every chain from the paper's start.

    PYTHONPATH=. python scripts/fds_variants.py --seeds 5 --out /tmp/fds-variants [--only a,b]
"""
from __future__ import annotations

import argparse

from tune_ext.benchmark.methods import METHODS, Method, gradient_config, horizon_ladder


def variant(name: str, description: str, diverse: bool = True, ensemble: int = 1,
            ladder=None) -> Method:
    def build(task, seed):
        from ray import tune
        from ray.tune.search import BasicVariantGenerator

        kwargs = METHODS["fds"].build(task, seed)
        if not diverse:
            kwargs["config"] = {**gradient_config(task, "fds"), "seed": tune.randint(0, 2**31 - 1)}
            kwargs["search_alg"] = BasicVariantGenerator(random_state=seed)
        if ladder is not None:
            kwargs["config"]["inner_epochs"] = ladder(task.max_t)
        if ensemble > 1:
            kwargs["config"]["ensemble"] = ensemble
        return kwargs
    return Method(name, "gradient", "gradient", description, build)


VARIANTS = [
    variant("fds", "the harness's fds"),
    variant("fds-same-start", "every chain from the paper's start", diverse=False),
    variant("fds-ens2", "paper's start, 2 seeds averaged per step", diverse=False, ensemble=2),
    variant("fds-diverse-ens2", "own starts, 2 seeds averaged per step", ensemble=2),
    variant("fds-ladder4", "own starts, ladder 1, 5, 20 (x4 apart)",
            ladder=lambda horizon: sorted({max(1, horizon // 4**k) for k in range(3)})),
    variant("fds-warmup4", "own starts, ladder 1, 2, 4, 20 (warm-up up to horizon / 5)",
            ladder=lambda horizon: horizon_ladder(horizon, longest=max(1, horizon // 5))),
    variant("fds-same-start-warmup4", "paper's start, ladder 1, 2, 4, 20", diverse=False,
            ladder=lambda horizon: horizon_ladder(horizon, longest=max(1, horizon // 5))),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from tune_ext.benchmark.runner import Budget, run_benchmark
    from tune_ext.benchmark.summary import format_table
    from tune_ext.benchmark.tasks import get_task

    task = get_task(args.task)
    methods = [v for v in VARIANTS if args.only is None or v.name in args.only.split(",")]
    budget = Budget(seconds=args.budget_s or task.default_budget_s)
    summary = run_benchmark(task, methods, list(range(args.seeds)), budget, args.out,
                            log=lambda s: print(s, flush=True))
    print(format_table(summary))
    for v in methods:
        print(f"{v.name}: {v.description}")


if __name__ == "__main__":
    main()

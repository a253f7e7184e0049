"""Which use of the concurrent slots and which horizon ladder help FDS, in the harness itself.

Runs variants of the harness's ``fds`` method on a task (default mnist1d, its default budget,
2 concurrent trials of 1 CPU), each with the same seeds, and prints the harness's table. Three
choices vary: where the concurrent chains start ("own": the first from the paper's start, lr 0
and momentum 0.5, each later one from its own point of the task's space, as the harness does;
"paper": every chain from the paper's start, seeds differ), how many seeds an outer step averages
(FDSTrainable's ``ensemble``; 2 costs twice as much per step), and the warm-up ladder of inner-run
lengths before the full horizon (``horizon_ladder``):

- ``fds``: the harness's method: own starts, 1 seed, warm-up up to a fifth of the horizon
  (1, 2, 4, then 20 epochs on mnist1d);
- ``fds-same-start``: paper's start, 1 seed, warm-up up to a fifth;
- ``fds-half``: own starts, 1 seed, warm-up up to half the horizon (1, 2, 5, 10, 20: the
  harness's ladder before);
- ``fds-same-start-half``: paper's start, 1 seed, warm-up up to half;
- ``fds-ens2-half``: paper's start, 2 seeds averaged per step, warm-up up to half;
- ``fds-diverse-ens2-half``: own starts, 2 seeds, warm-up up to half;
- ``fds-ladder4``: own starts, 1 seed, 1, 5, 20 epochs (runs 4x apart: two warm-up steps).

    PYTHONPATH=. python scripts/fds_variants.py --seeds 5 --out /tmp/fds-variants [--only a,b]
"""
from __future__ import annotations

import argparse

from tune_ext.benchmark.methods import Method, gradient_trials, horizon_ladder


def variant(name: str, description: str, diverse: bool = True, ensemble: int = 1,
            ladder=None) -> Method:
    def build(task, seed):
        kwargs = gradient_trials("fds", spread_starts=diverse)(task, seed)
        if ladder is not None:
            kwargs["config"]["inner_epochs"] = ladder(task.max_t)
        if ensemble > 1:
            kwargs["config"]["ensemble"] = ensemble
        return kwargs
    return Method(name, "gradient", "gradient", description, build)


def HALF(horizon):
    return horizon_ladder(horizon, longest=max(1, horizon // 2))


VARIANTS = [
    variant("fds", "own starts, 1 seed, warm-up up to a fifth (the harness's)"),
    variant("fds-same-start", "paper's start, 1 seed, warm-up up to a fifth", diverse=False),
    variant("fds-half", "own starts, 1 seed, warm-up up to half", ladder=HALF),
    variant("fds-same-start-half", "paper's start, 1 seed, warm-up up to half", diverse=False,
            ladder=HALF),
    variant("fds-ens2-half", "paper's start, 2 seeds, warm-up up to half", diverse=False,
            ensemble=2, ladder=HALF),
    variant("fds-diverse-ens2-half", "own starts, 2 seeds, warm-up up to half", ensemble=2,
            ladder=HALF),
    variant("fds-ladder4", "own starts, 1 seed, 1, 5, 20 epochs",
            ladder=lambda horizon: sorted({max(1, horizon // 4**k) for k in range(3)})),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from tune_ext.benchmark import Budget, RunOptions, run_benchmark
    from tune_ext.benchmark.summary import format_table
    from tune_ext.benchmark.tasks import get_task

    task = get_task(args.task)
    names = [v.name for v in VARIANTS]
    only = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(names))
    if unknown or not only:
        parser.error(f"--only: unknown variant(s) {unknown or only}; valid: {', '.join(names)}")
    methods = [v for v in VARIANTS if v.name in only]
    budget = Budget(seconds=args.budget_s or task.default_budget_s)
    summary = run_benchmark(task, methods, list(range(args.seeds)), budget, args.out,
                            RunOptions(log=lambda s: print(s, flush=True)))
    print(format_table(summary))
    for v in methods:
        print(f"{v.name}: {v.description}")


if __name__ == "__main__":
    main()

"""The main job: race gradient-based and black-box HPO methods on one Ray budget.

Each method runs once per seed with the same wall-clock budget, concurrent trials and per-trial
resources; regret curves go to TensorBoard (regret/<method>), regret.csv and regret.png, and
summary.json holds final regret and time to target regret per method.

    python scripts/benchmark.py                 # digits, all methods, 3 seeds (~12 min on 2 cores)
    python scripts/benchmark.py --quick         # a few methods, 1 seed (~2 min)
    python scripts/benchmark.py --address auto  # on a running Ray cluster
"""
import argparse
import os
import sys

if not any(a.startswith("--address") for a in sys.argv[1:]):
    # a local Ray of our own: keep it on the loopback address (Ray reads this when imported)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from tune_ext.benchmark.methods import METHODS, QUICK_METHODS, get_methods
from tune_ext.benchmark.runner import Budget, format_table, run_benchmark
from tune_ext.benchmark.tasks import TASKS, get_task

QUICK_BUDGET_S = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="digits", help=f"one of: {', '.join(sorted(TASKS))}")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from: {', '.join(METHODS)} (default: all; --quick: "
                        f"{','.join(QUICK_METHODS)})")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --quick: 1)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock seconds per method and seed (default: the task's; --quick: "
                        f"{QUICK_BUDGET_S:g})")
    p.add_argument("--concurrency", type=int, default=2, help="concurrent trials per method")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="fraction of a GPU each trial requests (gradient and black-box alike)")
    p.add_argument("--compile", action="store_true",
                   help="gradient methods torch.compile their differentiated step (a one-off "
                        "compilation per trial process, inside the budget; worth it for long budgets)")
    p.add_argument("--address", default=None, help="Ray cluster to join ('auto' for a running one)")
    p.add_argument("--out", default="results/benchmark", help="output folder")
    p.add_argument("--quick", action="store_true", help="a few methods, 1 seed, short budget")
    p.add_argument("--verbose", action="store_true", help="show Ray's own console output")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        task = get_task(args.task)
        names = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
        methods = get_methods([n.strip() for n in names if n.strip()])
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    budget = Budget(seconds=args.budget_s or (QUICK_BUDGET_S if args.quick else task.default_budget_s),
                    concurrency=args.concurrency, gpus_per_trial=args.gpus_per_trial)
    print(f"task {task.name}: {task.description}\n{len(methods)} method(s) x {len(seeds)} seed(s), "
          f"{budget.seconds:g}s each, {budget.concurrency} concurrent trials of {budget.resources()}",
          flush=True)
    summary = run_benchmark(task, methods, seeds, budget, args.out, address=args.address,
                            verbose=args.verbose, log=lambda s: print(s, flush=True),
                            compile_gradient=args.compile)
    print(format_table(summary))
    print(f"wrote {args.out}/summary.json, regret.csv, regret.png and tensorboard/ "
          f"(tensorboard --logdir {args.out}/tensorboard)")


if __name__ == "__main__":
    main()

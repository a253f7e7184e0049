"""The installed commands: ``tune-ext-benchmark`` (also ``python -m tune_ext.benchmark``),
``tune-ext-reference`` and ``tune-ext-plot``.

Every input is checked before Ray starts; a bad one ends in one line ``error: ...`` on stderr
and exit code 2.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

QUICK_BUDGET_S = 30.0
QUICK_TASK = "digits"

BENCHMARK_DOC = """Race gradient-based and black-box HPO methods on one Ray budget.

Each method runs once per seed with the same wall-clock budget, concurrent trials and per-trial
resources; regret curves go to TensorBoard (one chart, tag "regret"), regret.csv, regret.png and
ranks.png, and summary.json holds per method the median final regret and time to target with
bootstrap 95% intervals, seeds reached, average rank and the run counts.

  tune-ext-benchmark                 # mnist1d, all methods, 3 seeds (~30 min on 2 cores)
  tune-ext-benchmark --quick         # digits, a few methods, 1 seed (~2 min)
  tune-ext-benchmark --address auto  # on a running Ray cluster: runs side by side where room
"""


class UsageError(Exception):
    pass


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def plain(doc: str) -> str:
    """A docstring as --help shows it: without reStructuredText's literal markers (````x````)."""
    return doc.replace("``", "")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit code 2, as for every other bad input
        _fail(message)


def benchmark_parser():
    from tune_ext.benchmark.methods import METHODS, QUICK_METHODS
    from tune_ext.benchmark.tasks import DEFAULT_TASK, TASKS

    p = _Parser(prog="tune-ext-benchmark", description=BENCHMARK_DOC,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=None,
                   help=f"one of: {', '.join(TASKS)}, or 'module:attr' naming your Task "
                        f"(default {DEFAULT_TASK}; --quick: {QUICK_TASK})")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, from: {', '.join(METHODS)} (default: all; --quick: "
                        f"{','.join(QUICK_METHODS)})")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --quick: 1)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock seconds per method and seed (default: the task's; --quick: "
                        f"{QUICK_BUDGET_S:g})")
    p.add_argument("--max-results", type=int, default=None,
                   help="for tests and smoke runs: a run also ends after this many results (a "
                        "limit that does not depend on the machine's speed)")
    p.add_argument("--concurrency", type=int, default=2, help="concurrent trials per run")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each trial requests")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="fraction of a GPU each trial requests (gradient and black-box alike)")
    p.add_argument("--parallel", type=int, default=None,
                   help="at most this many runs side by side (default: as many as the cluster "
                        "has room for; a local Ray started here has room for one)")
    p.add_argument("--compile", action="store_true",
                   help="gradient methods torch.compile their differentiated step (inside the budget)")
    p.add_argument("--address", default=None, help="Ray cluster to join ('auto' for a running one)")
    p.add_argument("--out", default="results/benchmark", help="output folder")
    p.add_argument("--quick", action="store_true", help="digits, a few methods, 1 seed, short budget")
    p.add_argument("--verbose", action="store_true", help="show Ray's own console output")
    return p


def prepare(args):
    """Task, methods, seeds and budget from the arguments; UsageError for anything wrong."""
    from tune_ext.benchmark.methods import METHODS, QUICK_METHODS, check_trial_config, get_methods
    from tune_ext.benchmark.runner import Budget, check_output_dir
    from tune_ext.benchmark.tasks import DEFAULT_TASK, get_task

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.budget_s is not None and (not math.isfinite(args.budget_s) or args.budget_s <= 0):
        raise UsageError(f"--budget-s must be a finite number of seconds > 0, got {args.budget_s:g}")
    if args.max_results is not None and args.max_results < 1:
        raise UsageError(f"--max-results must be >= 1, got {args.max_results}")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.parallel is not None and args.parallel < 1:
        raise UsageError(f"--parallel must be >= 1, got {args.parallel}")
    try:
        task = get_task(args.task or (QUICK_TASK if args.quick else DEFAULT_TASK))
        names = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
        methods = get_methods([n.strip() for n in names if n.strip()])
        for m in methods:
            m.check(task)
            check_trial_config(m, task)
        budget = Budget(seconds=args.budget_s if args.budget_s is not None else
                        (QUICK_BUDGET_S if args.quick else task.default_budget_s),
                        concurrency=args.concurrency, cpus_per_trial=args.cpus_per_trial,
                        gpus_per_trial=args.gpus_per_trial, max_results=args.max_results)
        task.reference_value()
        check_output_dir(args.out)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    return task, methods, seeds, budget


def main(argv=None):
    """``tune-ext-benchmark``: see ``--help``."""
    if not any(a.startswith("--address") for a in (argv if argv is not None else sys.argv[1:])):
        # a local Ray of our own: keep it on the loopback address (Ray reads this when imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    args = benchmark_parser().parse_args(argv)
    try:
        task, methods, seeds, budget = prepare(args)
    except UsageError as exc:
        _fail(str(exc))
    from tune_ext.benchmark.runner import RunOptions, run_benchmark
    from tune_ext.benchmark.summary import format_table

    print(f"task {task.name}: {task.description}\n{len(methods)} method(s) x {len(seeds)} seed(s), "
          f"{budget.seconds:g}s each, {budget.concurrency} concurrent trials of {budget.resources()}",
          flush=True)
    try:
        options = RunOptions(address=args.address, parallel=args.parallel,
                             compile_gradient=args.compile, verbose=args.verbose,
                             log=lambda s: print(s, flush=True))
        summary = run_benchmark(task, methods, seeds, budget, args.out, options)
    except ValueError as exc:  # found on the cluster (e.g. no GPU there): Ray is shut down again
        _fail(str(exc))
    print(format_table(summary))
    print(f"wrote {args.out}/summary.json, regret.csv, regret.png, ranks.png and tensorboard/ "
          f"(tensorboard --logdir {args.out}/tensorboard)")


def reference_main(argv=None):
    """``tune-ext-reference``: compute a task's reference score and store it."""
    from tune_ext.benchmark.tasks import TASKS, get_task

    p = _Parser(prog="tune-ext-reference",
                description="Train a task's reference grid with several seeds and store the best "
                            "mean test score (the reference regret is measured against).")
    p.add_argument("--task", required=True,
                   help=f"one of {', '.join(TASKS)}, or 'module:attr' naming your Task")
    p.add_argument("--seeds", type=int, default=2, help="seeds per grid setting (default 2)")
    p.add_argument("--out", default=None,
                   help="where to write the JSON (default: the task's reference_path)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    args = p.parse_args(argv)
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        task = get_task(args.task)
        out = args.out or task.reference_path
        if out is None:
            raise ValueError(f"task {task.name!r} has no reference_path: pass --out PATH")
        if not task.reference_grid:
            raise ValueError(f"task {task.name!r} has no reference_grid to train")
        check_dir = os.path.dirname(os.path.abspath(out))
        from tune_ext.benchmark.runner import check_output_dir
        check_output_dir(check_dir)
    except ValueError as exc:
        _fail(str(exc))
    import torch

    from tune_ext.benchmark.reference import compute_reference, store_reference

    torch.set_num_threads(1)  # the benchmark's trials run with one thread each, as Ray sets them
    reference = compute_reference(task, seeds=range(args.seeds), num_cpus=args.num_cpus)
    print(f"reference {task.test_metric} for {task.name}: {reference['reference']:.4f} "
          f"({reference['best']['config']}) -> {store_reference(reference, out)}")


def plot_main(argv=None):
    """``tune-ext-plot OUT``: redraw regret.png and ranks.png from OUT's summary.json and regret.csv."""
    import json

    from tune_ext.benchmark.curves import load_curves
    from tune_ext.benchmark.summary import write_plots

    p = _Parser(prog="tune-ext-plot", description=plain(plot_main.__doc__))
    p.add_argument("out", help="a benchmark output folder")
    args = p.parse_args(argv)
    try:
        with open(os.path.join(args.out, "summary.json")) as f:
            summary = json.load(f)
        csv_path = os.path.join(args.out, "regret.csv")
        curves = load_curves(csv_path) if os.path.exists(csv_path) else {}
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the benchmark output in {args.out!r}: {exc}")
    print(f"drawing {args.out}/regret.png and ranks.png ({len(summary.get('methods', {}))} methods)",
          flush=True)
    write_plots(summary, curves, args.out)
    print(f"wrote {args.out}/regret.png and ranks.png")

"""The study "Where gradient-based HPO wins": the same methods on the mnist1d variants of 5, 30 and
105 hyperparameters, then one figure and one table against the number of hyperparameters.

``run`` checks every variant's arguments first, writes ``<out>/study.json`` (each variant's task,
number of hyperparameters, budget and the exact harness command), then runs the harness
(``tune-ext-benchmark``) once per variant, one after another, into ``<out>/<task>/``. ``plot``
reads ``study.json`` and each variant's ``summary.json`` and writes ``study.png`` (time to the
target regret and final regret, median with the summary's bootstrap 95% interval, against the
number of hyperparameters, one line per method) and ``study.md`` (the same numbers as a table).
A median that never reached the target is drawn in a "never" band above the budget, and a method
without any result in a "no result" band: neither is ever a number.

    PYTHONPATH=. python scripts/study.py run --out results/study [--budgets mnist1d-100=90] \\
        [-- --concurrency 2 ...]     # options after "--" go to every variant's harness run
    PYTHONPATH=. python scripts/study.py plot results/study
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys

VARIANTS = ("mnist1d", "mnist1d-30", "mnist1d-100")
DEFAULT_METHODS = "random,tpe,bohb,asha,fds"
DEFAULT_SEEDS = 5
MANIFEST = "study.json"


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def number(x: float) -> str:
    """``x`` as a command-line number that reads back as the same float."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_budgets(text: str, tasks) -> dict:
    """``"mnist1d=35,mnist1d-100=90"`` -> ``{task: seconds}``; ValueError naming what is wrong."""
    budgets = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        task, eq, seconds = item.partition("=")
        if not eq:
            raise ValueError(f"--budgets takes TASK=SECONDS items separated by commas, got {item!r}")
        if task not in tasks:
            raise ValueError(f"--budgets names {task!r}, which is not a task of this study "
                             f"({', '.join(tasks)})")
        try:
            budgets[task] = float(seconds)
        except ValueError:
            raise ValueError(f"--budgets {task}={seconds}: seconds must be a number") from None
        if not math.isfinite(budgets[task]) or budgets[task] <= 0:
            raise ValueError(f"--budgets {task}={seconds}: seconds must be finite and > 0")
    return budgets


def plan(args, extra) -> list[dict]:
    """Every variant's harness arguments, checked as the harness checks them, before any run."""
    from tune_ext.benchmark.cli import UsageError, benchmark_parser, prepare

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ValueError("--tasks names no task")
    budgets = parse_budgets(args.budgets or "", tasks)
    variants = []
    for name in tasks:
        argv = ["--task", name, "--methods", args.methods, "--seeds", str(args.seeds)]
        argv += ["--budget-s", number(budgets[name])] if name in budgets else []
        argv += ["--out", os.path.join(args.out, name), *extra]
        parsed = benchmark_parser().parse_args(argv)
        # options after "--" come last and would win (also abbreviated, as argparse allows)
        if (parsed.task, parsed.methods, parsed.seeds, parsed.budget_s, parsed.out, parsed.quick) != \
                (name, args.methods, args.seeds, budgets.get(name), os.path.join(args.out, name), False):
            raise ValueError(f"{' '.join(extra)} after '--' sets what the study sets itself (--task, "
                             f"--methods, --seeds, --budget-s, --out, --quick): use its own options")
        try:
            task, _, _, budget = prepare(parsed)
        except UsageError as exc:
            raise ValueError(f"variant {name}: {exc}") from None
        if name not in budgets:  # the task's default, written out so the command says it
            argv[argv.index("--out"):argv.index("--out")] = ["--budget-s", number(budget.seconds)]
        variants.append({"task": task.name, "n_hyperparameters": task.n_hyperparameters(),
                         "budget_s": budget.seconds, "out": name, "argv": argv,
                         "command": shlex.join(["tune-ext-benchmark", *argv])})
    return variants


def write_manifest(out: str, variants: list[dict]) -> str:
    """``<out>/study.json``: these variants, and those of an earlier ``run`` into ``out`` that
    this one does not redo (so variants can be run one at a time)."""
    path = os.path.join(out, MANIFEST)
    kept = []
    if os.path.exists(path):
        kept = [v for v in read_json(path, "the study's manifest")["variants"]
                if v["task"] not in {n["task"] for n in variants}]
    entries = kept + [{k: v[k] for k in ("task", "n_hyperparameters", "budget_s", "out", "command")}
                      for v in variants]
    entries.sort(key=lambda v: v["n_hyperparameters"])
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"variants": entries}, f, indent=1)
    return path


def run(args, extra):
    """The harness once per variant, one after another; stops at the first that fails."""
    try:
        variants = plan(args, extra)
    except ValueError as exc:
        fail(str(exc))
    print(f"wrote {write_manifest(args.out, variants)}", flush=True)
    for i, v in enumerate(variants, 1):
        print(f"\n[{i}/{len(variants)}] {v['task']} ({v['n_hyperparameters']} hyperparameters, "
              f"{v['budget_s']:g} s per method and seed); reproduce with:\n  {v['command']}",
              flush=True)
        done = subprocess.run([sys.executable, "-m", "tune_ext.benchmark", *v["argv"]])
        if done.returncode:
            fail(f"variant {v['task']} failed (exit code {done.returncode}); the variants before "
                 f"it are complete in {args.out}")
    print(f"\nnext: python scripts/study.py plot {args.out}")


def read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        fail(f"cannot read {what} {path!r}: {exc}")


def load_study(folder: str) -> list[dict]:
    """The variants of ``folder/study.json``, each with its ``summary``, fewest hyperparameters first."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        fail(f"no {MANIFEST} in {folder!r}: run 'python scripts/study.py run --out {folder}' first")
    variants = read_json(path, "the study's manifest")["variants"]
    for v in variants:
        summary_path = os.path.join(folder, v["out"], "summary.json")
        if not os.path.exists(summary_path):
            fail(f"variant {v['task']} has no {summary_path}: run it with\n  {v['command']}")
        v["summary"] = read_json(summary_path, f"variant {v['task']}'s summary")
        if v["summary"].get("task") != v["task"]:
            fail(f"{summary_path} is task {v['summary'].get('task')!r}, not {v['task']!r}")
    return sorted(variants, key=lambda v: v["n_hyperparameters"])


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def fmt(x, digits: int, none: str) -> str:
    return none if x is None else f"{x:.{digits}f}"


def table(variants: list[dict]) -> str:
    """study.md: per variant and method, final regret and time to target with their intervals."""
    lines = ["Medians over seeds with percentile-bootstrap 95% intervals (the harness's "
             "summary.json); \"never\": the median (or a bound) did not reach the target regret "
             "within the budget; \"no result\": the method reported nothing scored.", ""]
    for v in variants:
        s = v["summary"]
        lines.append(f"- `{v['task']}`: {v['n_hyperparameters']} hyperparameters, {s['budget_s']:g} s "
                     f"per method and seed, {plural(len(s['seeds']), 'seed')}, reference {s['reference']:g}, "
                     f"target regret {s['target_regret']:g}: `{v['command']}`")
    lines += ["", "| hyperparameters | task | method | final regret, median [95% CI] | time to "
              "target regret (s), median [95% CI] | seeds reached |", "| --- | --- | --- | --- | --- | --- |"]
    notes = []
    for v in variants:
        s = v["summary"]
        for name, m in s["methods"].items():
            lo, hi = m["final_regret_ci95"]
            final = ("no result" if m["final_regret"] is None else
                     f"{m['final_regret']:.4f} [{fmt(lo, 4, 'none')}, {fmt(hi, 4, 'none')}]")
            lo, hi = m["time_to_target_ci95"]
            ttt = f"{fmt(m['time_to_target_s'], 1, 'never')} [{fmt(lo, 1, 'never')}, {fmt(hi, 1, 'never')}]"
            lines.append(f"| {v['n_hyperparameters']} | {v['task']} | {name} | {final} | {ttt} | "
                         f"{m['seeds_reached']} of {len(s['seeds'])} |")
            if m.get("no_result"):
                notes.append(f"{v['task']}, {name}: no result: {m['no_result']}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def figure(variants: list[dict]):
    """study.png's figure: time to target and final regret against the number of hyperparameters.

    Each method's medians are one Line2D labelled with the method's name (its y data in the
    "never"/"no result" band where the median is not a number), intervals vertical bars.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tune_ext.benchmark.curves import method_colour
    from tune_ext.benchmark.methods import METHODS

    names = []
    for v in variants:
        names += [n for n in v["summary"]["methods"] if n not in names]
    names.sort(key=lambda n: list(METHODS).index(n) if n in METHODS else len(METHODS))
    xs = [v["n_hyperparameters"] for v in variants]
    fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(13, 5.2))
    budget = max(v["summary"]["budget_s"] for v in variants)
    targets = {v["summary"]["target_regret"] for v in variants}
    seeds = sorted({len(v["summary"]["seeds"]) for v in variants})
    finals = [y for v in variants for m in v["summary"]["methods"].values()
              for y in [m["final_regret"], *m["final_regret_ci95"]] if y is not None] + list(targets)
    f_lo, f_hi = min(0.0, *finals), max(finals)
    panels = [(ax_t, "time_to_target_s", "time_to_target_ci95", budget * 1.12, "never", 0.0, budget),
              (ax_f, "final_regret", "final_regret_ci95", f_hi + 0.15 * (f_hi - f_lo), "no result",
               f_lo, f_hi)]
    for ax, key, ci_key, band_y, band_label, lo_y, hi_y in panels:
        ax.axhspan(hi_y + 0.04 * (band_y - lo_y), band_y + 0.08 * (band_y - lo_y), color="0.93", zorder=0)
        for i, name in enumerate(names):
            colour = method_colour(name, list(METHODS))
            dodge = 1.12 ** (i - (len(names) - 1) / 2)   # side by side at each x (log axis)
            px, py, missing = [], [], []
            for v, x in zip(variants, xs):
                m = v["summary"]["methods"].get(name)
                if m is None:
                    continue
                x = x * dodge
                y = band_y if m[key] is None else m[key]
                px.append(x)
                py.append(y)
                missing.append(m[key] is None)
                lo, hi = m[ci_key]
                if m["final_regret"] is not None or key == "time_to_target_s":
                    ax.plot([x, x], [band_y if lo is None else lo, band_y if hi is None else hi],
                            color=colour, lw=1.4, alpha=0.7)
                if key == "time_to_target_s":   # in the band: below the marker, staggered
                    below = m[key] is None
                    ax.annotate(f"{m['seeds_reached']}/{len(v['summary']['seeds'])}", (x, y),
                                textcoords="offset points",
                                xytext=(0, -12 - 8 * (i % 2)) if below else (4, 3),
                                ha="center" if below else "left", fontsize=7, color=colour)
            ax.plot(px, py, color=colour, lw=0, label=name)   # the medians, for the tests and legend
            for (x0, y0, m0), (x1, y1, m1) in zip(zip(px, py, missing), zip(px[1:], py[1:], missing[1:])):
                ax.plot([x0, x1], [y0, y1], color=colour, lw=1.6, ls=":" if m0 or m1 else "-")
            ax.scatter([x for x, m in zip(px, missing) if not m], [y for y, m in zip(py, missing) if not m],
                       color=colour, s=36, zorder=3)
            ax.scatter([x for x, m in zip(px, missing) if m], [y for y, m in zip(py, missing) if m],
                       facecolors="white", edgecolors=colour, marker="X", s=70, lw=1.4, zorder=3)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x}\n{v['task']}" for x, v in zip(xs, variants)])
        ax.minorticks_off()
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.set_ylim(lo_y - 0.04 * (band_y - lo_y), band_y + 0.08 * (band_y - lo_y))
        ticks = [t for t in ax.get_yticks() if lo_y <= t <= hi_y]
        ax.set_yticks(ticks + [band_y], [f"{t:g}" for t in ticks] + [band_label])
        ax.set_xlabel("hyperparameters searched (log scale)")
        ax.grid(alpha=0.3)
    target = ", ".join(f"{t:g}" for t in sorted(targets))
    for v, x in zip(variants, xs):   # each variant's own budget: no time beyond it counts
        ax_t.plot([x / 1.3, x * 1.3], [v["summary"]["budget_s"]] * 2, color="0.5", lw=0.8, ls="--")
    ax_t.set_ylabel("seconds")
    ax_t.set_title(f"time to regret <= {target}: median, 95% CI; k/n seeds reached; dashed: "
                   f"budget", fontsize=10)
    for t in targets:
        ax_f.axhline(t, color="0.3", lw=0.8, ls=":")
    ax_f.set_ylabel("regret (reference - test accuracy)")
    ax_f.set_title(f"final regret: median, 95% CI; dotted: target {target}", fontsize=10)
    handles, labels = ax_t.get_legend_handles_labels()
    handles = [plt.Line2D([], [], color=h.get_color(), marker="o", lw=1.6) for h in handles]
    handles.append(plt.Line2D([], [], color="0.3", marker="X", markerfacecolor="white", lw=0, ms=8))
    labels.append('median not reached: "never" / "no result"')
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=9, frameon=False)
    fig.suptitle(f"methods against the number of hyperparameters ({' or '.join(map(str, seeds))} "
                 f"seed{'s' * (seeds != [1])}; budget per variant as in the table)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig


def plot(args):
    """study.png and study.md from a study folder's study.json and summaries."""
    import matplotlib.pyplot as plt

    variants = load_study(args.folder)
    to = args.to or args.folder
    os.makedirs(to, exist_ok=True)
    text = table(variants)
    with open(os.path.join(to, "study.md"), "w") as f:
        f.write(text)
    fig = figure(variants)
    fig.savefig(os.path.join(to, "study.png"), dpi=120)
    plt.close(fig)
    print(text)
    print(f"wrote {os.path.join(to, 'study.png')} and {os.path.join(to, 'study.md')}")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    p = argparse.ArgumentParser(prog="study.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the harness on every variant, one after another")
    r.add_argument("--out", default="results/study", help="study folder (default results/study)")
    r.add_argument("--tasks", default=",".join(VARIANTS), help=f"default {','.join(VARIANTS)}")
    r.add_argument("--methods", default=DEFAULT_METHODS, help=f"default {DEFAULT_METHODS}")
    r.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"default {DEFAULT_SEEDS}")
    r.add_argument("--budgets", default=None,
                   help="seconds per method and seed of some variants, e.g. mnist1d-100=90,"
                        "mnist1d-30=60 (default: each task's own)")
    q = sub.add_parser("plot", help="study.png and study.md from a study folder")
    q.add_argument("folder", nargs="?", default="results/study", help="default results/study")
    q.add_argument("--to", default=None, help="where to write them (default: the folder)")
    args = p.parse_args(argv)
    if args.command == "run":
        run(args, extra)
    elif extra:
        fail("options after '--' go to the harness: only 'run' takes them")
    else:
        plot(args)


if __name__ == "__main__":
    main()

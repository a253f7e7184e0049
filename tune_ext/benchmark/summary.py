"""From the runs' records to summary.json, the plots and the printed table.

Per method: the median final regret with its bootstrap 95% interval over seeds, time to the target
regret with its interval and the number of seeds that reached it, the average rank over time,
and the counts (trials, results, errored trials, time to first result). A run without any result
counts as +inf regret (last) in medians and ranks; where the median lands there, the method has
"no result" with the reason, never a number.
"""
from __future__ import annotations

import json
import os
import statistics

from tune_ext.benchmark.curves import plot_ranks, plot_regret, time_to_target
from tune_ext.benchmark.methods import METHODS
from tune_ext.benchmark.stats import describe, disjoint, ranks_over_time

RANK_POINTS = 201
MIN_SEEDS_TO_SEPARATE = 3  # below, a bootstrap interval is the range of one or two values


def run_curves(records) -> dict:
    """``{method: {seed: [(time_s, regret), ...]}}`` of the runs' ``RunRecord``s (empty: no result)."""
    curves: dict = {}
    for r in records:
        curves.setdefault(r.method, {})[r.seed] = r.curve()
    return curves


def summarize_runs(task, methods, seeds, budget, reference, records, cluster, runs_at_once,
                   compile_gradient, wall_s) -> dict:
    """summary.json's content from the runs' ``RunRecord``s (see the module's docstring)."""
    by = {(r.method, r.seed): r for r in records}
    curves = run_curves(records)
    grid = [budget.seconds * i / (RANK_POINTS - 1) for i in range(RANK_POINTS)]
    ranks = ranks_over_time(curves, grid)
    t0 = min(r.start for r in records)
    out = {}
    for m in methods:
        recs = [by[(m.name, s)] for s in seeds]
        per_seed = []
        for r in recs:
            curve = curves[m.name][r.seed]
            per_seed.append({
                "seed": r.seed, "final_regret": curve[-1][1] if curve else None,
                "time_to_target_s": time_to_target(curve, task.target_regret),
                "trials": r.trials, "results": r.results, "errored_trials": r.errored,
                "late_results": r.late_results, "time_to_first_result_s": r.first_result_s,
                "startup_s": r.startup_s, "devices": list(r.devices),
                "no_result": r.no_result_reason(task.metric, task.test_metric),
                "node": r.node, "start_s": round(r.start - t0, 2), "end_s": round(r.end - t0, 2)})
        final = describe([x["final_regret"] for x in per_seed])
        ttt = describe([x["time_to_target_s"] for x in per_seed])
        firsts = [x["time_to_first_result_s"] for x in per_seed if x["time_to_first_result_s"] is not None]
        reasons = sorted({x["no_result"] for x in per_seed if x["no_result"]})
        out[m.name] = {
            "kind": m.kind, "family": m.family,
            "final_regret": final["median"], "final_regret_ci95": final["ci95"],
            "no_result": "; ".join(reasons) if final["median"] is None else None,
            "time_to_target_s": ttt["median"], "time_to_target_ci95": ttt["ci95"],
            "seeds_reached": sum(x["time_to_target_s"] is not None for x in per_seed),
            "mean_rank": statistics.fmean(ranks[m.name]) if ranks[m.name] else None,
            "trials": sum(x["trials"] for x in per_seed),
            "results": sum(x["results"] for x in per_seed),
            "errored_trials": sum(x["errored_trials"] for x in per_seed),
            "time_to_first_result_s": statistics.median(firsts) if firsts else None,
            "seeds": per_seed}
    separated = [[a, b] for a in out for b in out if a != b and len(seeds) >= MIN_SEEDS_TO_SEPARATE
                 and out[a]["final_regret"] is not None
                 and (out[b]["final_regret"] is None or out[a]["final_regret"] < out[b]["final_regret"])
                 and disjoint(out[a]["final_regret_ci95"], out[b]["final_regret_ci95"])]
    return {
        "task": task.name, "metric": task.metric, "mode": task.mode, "test_metric": task.test_metric,
        "reference": reference, "target_regret": task.target_regret, "budget_s": budget.seconds,
        "max_results": budget.max_results, "seeds": list(seeds), "concurrency": budget.concurrency,
        "resources_per_trial": budget.resources(), "compile_gradient": compile_gradient,
        "cluster_resources": cluster,
        "placement": {"mode": "sequential" if runs_at_once == 1 else "parallel",
                      "runs_at_once": runs_at_once, "wall_s": round(wall_s, 1)},
        "methods": out, "separated_final_regret": separated,
        "ranks_over_time": {"time_s": grid, **ranks}}


def family_best(summary: dict) -> dict:
    """The method of each family with the lowest average rank."""
    best = {}
    for name, m in summary["methods"].items():
        f = m["family"]
        if m["mean_rank"] is not None and (f not in best or
                                           m["mean_rank"] < summary["methods"][best[f]]["mean_rank"]):
            best[f] = name
    return best


def write_outputs(summary: dict, curves: dict, out_dir: str) -> None:
    """summary.json, regret.png (families and best of each) and ranks.png; ``curves`` is
    ``{method: {seed: [(time_s, regret), ...]}}``."""
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_plots(summary, curves, out_dir)


def write_plots(summary: dict, curves: dict, out_dir: str) -> None:
    curves = {name: curves.get(name, {}) for name in summary["methods"]}
    families = {name: m["family"] for name, m in summary["methods"].items()}
    n = len(summary["seeds"])
    plot_regret(curves, families, os.path.join(out_dir, "regret.png"), summary["budget_s"],
                summary["target_regret"], summary["reference"], order=list(METHODS),
                best=family_best(summary),
                title=f"{summary['task']}: regret (median, IQR over {n} seed{'s' * (n > 1)}); "
                      f"dotted: target {summary['target_regret']:g}")
    ranks = {k: v for k, v in summary["ranks_over_time"].items() if k != "time_s"}
    plot_ranks(ranks, summary["ranks_over_time"]["time_s"], os.path.join(out_dir, "ranks.png"),
               order=list(METHODS), title=f"{summary['task']}: average rank over {n} seed(s)")


def _num(x, fmt="{:.4f}", none="never"):
    return none if x is None else fmt.format(x)


def _ci(ci, fmt="{:.4f}", none="never"):
    return f"[{_num(ci[0], fmt, none)}, {_num(ci[1], fmt, none)}]"


def format_table(summary: dict) -> str:
    """Markdown table, best average rank first, then which differences the intervals support."""
    n = len(summary["seeds"])
    rows = [f"| method | final regret, median [95% CI] | time to regret <= {summary['target_regret']:g} "
            f"(s), median [95% CI] | seeds reached | mean rank | first result (s) | trials | errored |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = sorted(summary["methods"].items(),
                   key=lambda kv: (kv[1]["mean_rank"] is None, kv[1]["mean_rank"] or 0))
    for name, m in order:
        final = ("no result" if m["final_regret"] is None else
                 f"{m['final_regret']:.4f} {_ci(m['final_regret_ci95'], none='none')}")
        rows.append(f"| {name} | {final} | {_num(m['time_to_target_s'], '{:.1f}')} "
                    f"{_ci(m['time_to_target_ci95'], '{:.1f}')} | {m['seeds_reached']} of {n} | "
                    f"{_num(m['mean_rank'], '{:.2f}', '-')} | "
                    f"{_num(m['time_to_first_result_s'], '{:.1f}', '-')} | {m['trials']} | "
                    f"{m['errored_trials']} |")
    sep = summary["separated_final_regret"]
    lines = ["\n".join(rows), ""]
    if n < MIN_SEEDS_TO_SEPARATE:
        lines.append(f"With {n} seed(s) no difference can be shown to hold: run at least "
                     f"{MIN_SEEDS_TO_SEPARATE} seeds for intervals.")
    elif sep:
        lines.append(f"Final-regret intervals that do not overlap at {n} seed(s) (left is lower): "
                     + ", ".join(f"{a} < {b}" for a, b in sep) + ". Every other difference in "
                     "final regret is within the intervals.")
    else:
        lines.append(f"No two final-regret intervals are disjoint at {n} seed(s): no difference in "
                     f"final regret holds at this number of seeds.")
    for name, m in order:
        if m["no_result"]:
            lines.append(f"{name}: no result: {m['no_result']}")
    return "\n".join(lines)

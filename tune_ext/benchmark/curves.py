"""Regret curves from the harness's CSV: step functions per (method, seed), their summary and plot."""
from __future__ import annotations

import bisect
import csv
import math
import statistics
from collections import defaultdict


def load_curves(csv_path: str) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """``{method: {seed: [(time_s, regret), ...]}}`` in time order, from a regret CSV."""
    curves: dict = defaultdict(lambda: defaultdict(list))
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            curves[row["method"]][int(row["seed"])].append((float(row["time_s"]), float(row["regret"])))
    # stable sort on time: points written in the same millisecond keep their order
    return {m: {s: sorted(c, key=lambda p: p[0]) for s, c in by_seed.items()}
            for m, by_seed in curves.items()}


def regret_at(curve, t: float, before: float) -> float:
    """The regret standing at time ``t`` (``before`` ahead of the first point)."""
    i = bisect.bisect_right([p[0] for p in curve], t)
    return curve[i - 1][1] if i else before


def time_to_target(curve, target: float) -> float | None:
    """First time the regret is at or below ``target``; None if never."""
    return next((t for t, r in curve if r <= target), None)


def _median_or_none(values):
    """Median where a missing value (never reached) counts as infinitely late."""
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def summarize(curves, target_regret: float) -> dict:
    """Per method: median final regret and time to target over seeds, and the per-seed numbers."""
    out = {}
    for method, by_seed in curves.items():
        seeds = [{"seed": s, "final_regret": c[-1][1], "time_to_target_s": time_to_target(c, target_regret)}
                 for s, c in sorted(by_seed.items())]
        out[method] = {"final_regret": statistics.median(x["final_regret"] for x in seeds),
                       "time_to_target_s": _median_or_none([x["time_to_target_s"] for x in seeds]),
                       "seeds": seeds}
    return out


def plot_curves(curves, png_path: str, reference: float, budget_s: float, target_regret: float,
                title: str = "", floor: float = 1e-3) -> None:
    """Median and inter-quartile range of regret over seeds per method, log-scale regret."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0.0, budget_s, 400)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = plt.get_cmap("tab20").colors
    for i, method in enumerate(sorted(curves)):
        values = np.array([[max(regret_at(c, t, reference), floor) for t in grid]
                           for c in curves[method].values()])
        q25, q50, q75 = np.percentile(values, [25, 50, 75], axis=0)
        # Ray's yardsticks dashed, so 14 methods stay apart
        line, = ax.step(grid, q50, where="post", label=method, linewidth=1.6,
                        color=colours[(2 * i) % 20 + (2 * i) // 20 % 2],
                        linestyle="--" if method.startswith("ray-") else "-")
        ax.fill_between(grid, q25, q75, step="post", alpha=0.15, color=line.get_color())
    ax.axhline(target_regret, color="k", linestyle=":", linewidth=1, label=f"target {target_regret}")
    ax.set_yscale("log")
    ax.set_xlim(0, budget_s)
    ax.set_xlabel("wall-clock seconds since the method started")
    ax.set_ylabel(f"regret (reference {reference:.4f} - test acc of incumbent), floor {floor}")
    ax.set_title(title or "regret: median and IQR over seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)

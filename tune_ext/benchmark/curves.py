"""Regret curves on disk and in pictures: the CSV, TensorBoard events, and the two plots.

Each (method, seed) run is one step curve [(seconds since the run started, regret)]. TensorBoard
gets one run directory per method and seed (``tensorboard/<method>/seed<k>``) under the one tag
``regret``, so a single chart overlays every method; its step is milliseconds on the run's clock,
so the methods line up on TensorBoard's "Step" axis (its "Relative" axis counts from each run's
first point, which differs between runs). The plots draw each method in the same
colour everywhere: small multiples by family on shared axes plus an overlay of each family's
best (``regret.png``), and the average rank over time (``ranks.png``).
"""
from __future__ import annotations

import csv
import math
import os
import warnings
import zlib
from collections import defaultdict

from tune_ext.benchmark.stats import value_at

CSV_FIELDS = ("method", "seed", "time_s", "regret", "val_score", "test_score", "trial_id", "iteration")
TAG = "regret"
FAMILY_ORDER = ("full-budget", "multi-fidelity", "gradient", "hybrid", "ray")
FAMILY_TITLES = {"full-budget": "full-budget black-box", "multi-fidelity": "multi-fidelity",
                 "gradient": "gradient-based", "hybrid": "hybrid (black-box + FDS)",
                 "ray": "Ray's own (yardsticks)", "other": "other"}


def append_csv(csv_path: str, method: str, seed: int, points: list[dict]) -> None:
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(CSV_FIELDS)
        for p in points:
            w.writerow([method, seed, f"{p['time_s']:.3f}", f"{p['regret']:.6f}",
                        f"{p['val_score']:.6f}", f"{p['test_score']:.6f}", p["trial_id"],
                        "" if p["iteration"] is None else p["iteration"]])


def load_curves(csv_path: str) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """``{method: {seed: [(time_s, regret), ...]}}`` in time order, from a regret CSV."""
    curves: dict = defaultdict(lambda: defaultdict(list))
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            curves[row["method"]][int(row["seed"])].append((float(row["time_s"]), float(row["regret"])))
    # stable sort on time: points written in the same millisecond keep their order
    return {m: {s: sorted(c, key=lambda p: p[0]) for s, c in by_seed.items()}
            for m, by_seed in curves.items()}


def tensorboard_step(time_s: float) -> int:
    """TensorBoard's step for a point ``time_s`` seconds into a run: milliseconds on the run's
    clock, so every run starts at step 0 and TensorBoard's "Step" axis lines methods up."""
    return int(round(time_s * 1000))


def write_tensorboard(logdir: str, method: str, seed: int, points: list[dict], start_wall: float):
    """One run directory per method and seed, tag ``regret``: step = milliseconds since the run's
    clock started (``tensorboard_step``), walltime exact."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(os.path.join(logdir, method, f"seed{seed}")) as writer:
        for p in points:
            writer.add_scalar(TAG, p["regret"], global_step=tensorboard_step(p["time_s"]),
                              walltime=start_wall + p["time_s"])


def write_run(out_dir: str, record) -> None:
    """A finished run's curve (a ``RunRecord``) into ``out_dir``'s regret.csv and tensorboard/;
    a run without a result writes nothing."""
    if record.points:
        append_csv(os.path.join(out_dir, "regret.csv"), record.method, record.seed, record.points)
        write_tensorboard(os.path.join(out_dir, "tensorboard"), record.method, record.seed,
                          record.points, record.start)


def time_to_target(curve, target: float):
    """First time the regret is at or below ``target``; None if never."""
    return next((t for t, r in curve if r <= target), None)


def method_colour(name: str, order=None):
    """A fixed colour per method: its index in ``order`` (the registry), else a hash of its name."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    order = list(order or [])
    i = order.index(name) if name in order else zlib.crc32(name.encode()) % 20
    return colours[(2 * i) % 20 + (2 * i) // 20 % 2]


def _median_band(curves_by_seed, grid, floor):
    import numpy as np

    values = np.array([[max(value_at(c, t, math.nan), floor) for t in grid]
                       for c in curves_by_seed.values() if c])
    if not len(values):
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no result yet
        # a seed without a result yet counts as not there (NaN), and a time where fewer than
        # half the seeds have one shows no median
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)
        have = (~np.isnan(values)).sum(0) * 2 >= len(curves_by_seed)
    return np.where(have, q25, np.nan), np.where(have, q50, np.nan), np.where(have, q75, np.nan)


def plot_regret(curves, families: dict, png_path: str, budget_s: float, target_regret: float,
                reference: float, order=None, best=None, title: str = "", floor: float = 1e-3):
    """Small multiples by family (median and IQR over seeds, log regret, shared axes) and a last
    panel overlaying each family's best method (``best``: {family: method}), as a PNG."""
    import matplotlib.pyplot as plt

    fig = regret_figure(curves, families, budget_s, target_regret, reference, order, best, title,
                        floor)
    fig.savefig(png_path)
    plt.close(fig)


def regret_figure(curves, families: dict, budget_s: float, target_regret: float, reference: float,
                  order=None, best=None, title: str = "", floor: float = 1e-3):
    """``plot_regret``'s figure (a matplotlib Figure on the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    grid = np.linspace(0.0, budget_s, 400)
    present = [f for f in (*FAMILY_ORDER, "other") if any(families.get(m, "other") == f for m in curves)]
    panels = [(FAMILY_TITLES[f], [m for m in sorted(curves) if families.get(m, "other") == f])
              for f in present]
    if best:
        panels.append(("best of each family", [best[f] for f in present if best.get(f) in curves]))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), dpi=100, sharex=True,
                             sharey=True, squeeze=False)
    for ax, (name, methods) in zip(axes.flat, panels):
        for m in methods:
            band = _median_band(curves[m], grid, floor)
            if band is None:
                ax.plot([], [], color=method_colour(m, order), label=f"{m} (no result)")
                continue
            q25, q50, q75 = band
            line, = ax.step(grid, q50, where="post", label=m, linewidth=1.6,
                            color=method_colour(m, order))
            ax.fill_between(grid, q25, q75, step="post", alpha=0.15, color=line.get_color())
        ax.axhline(target_regret, color="k", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlim(0, budget_s)
        # few, short time labels ("20", not "20.0"): side by side, one panel's last label and the
        # next panel's first must not run into each other
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:len(panels)]):
        if i + cols >= len(panels):   # nothing drawn below: this panel carries the time axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("seconds since the run started")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"regret (floor {floor:g})")
    fig.suptitle(title or f"regret vs reference {reference:.4f}; dotted: target {target_regret:g}",
                 fontsize=11)
    fig.tight_layout(w_pad=2.0)
    return fig


def plot_ranks(ranks: dict, grid, png_path: str, order=None, title: str = ""):
    """Average rank over time per method (1 = best), one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for m in sorted(ranks, key=lambda m: sum(ranks[m]) / max(1, len(ranks[m]))):
        if ranks[m]:
            ax.step(grid, ranks[m], where="post", label=m, color=method_colour(m, order),
                    linestyle="--" if m.startswith("ray-") else "-", linewidth=1.5)
    ax.set_ylim(len(ranks) + 0.5, 0.5)
    ax.set_xlim(0, grid[-1])
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("average rank over seeds (1 = lowest regret)")
    ax.set_title(title or "average rank over time")
    ax.grid(True, alpha=0.3)
    # beside the axes, best first: with a dozen methods any place inside covers some curves
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)

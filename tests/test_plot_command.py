"""The plot command: readable --help, no Ray import, and a regret picture whose labels do not collide."""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tune_ext.benchmark.curves import regret_figure

ROOT = Path(__file__).resolve().parents[1]


def _x_tick_label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(ax, label.get_text(), label.get_window_extent(renderer))
            for ax in fig.axes if ax.axison
            for label in ax.get_xticklabels() if label.get_visible() and label.get_text()]


@pytest.mark.parametrize("budget_s", [20.0, 7.0, 35.0, 100.0])
@pytest.mark.parametrize("families", [{"asha": "multi-fidelity"},
                                      {"asha": "multi-fidelity", "fds": "gradient", "tpe": "full-budget"}],
                         ids=["two-panels", "four-panels"])
def test_time_labels_of_panels_side_by_side_do_not_overlap(budget_s, families):
    import matplotlib.pyplot as plt

    curves = {m: {0: [(budget_s * 0.2, 0.1), (budget_s * 0.6, 0.01)]} for m in families}
    best = {f: m for m, f in families.items()}
    fig = regret_figure(curves, families, budget_s, 0.02, 0.9, best=best)
    try:
        boxes = _x_tick_label_boxes(fig)
        timed = [ax for ax in fig.axes if ax.axison and ax.xaxis.get_label_text()]
        assert timed and all(sum(a is ax for a, _, _ in boxes) >= 3 for ax in timed)
        # labels on one row keep at least a character's width apart ("20.0" then "0.0" touching
        # read "20.00.0")
        space = boxes[0][2].height / 2
        for (_, t1, b1), (_, t2, b2) in itertools.combinations(boxes, 2):
            if b1.y0 < b2.y1 and b2.y0 < b1.y1:
                gap = max(b2.x0 - b1.x1, b1.x0 - b2.x1)
                assert gap >= space, f"x labels {t1!r} and {t2!r} are {gap:.1f} px apart"
    finally:
        plt.close(fig)


def test_help_is_plain_text_and_plotting_does_not_import_ray(tmp_path):
    summary = {"task": "toy", "seeds": [0], "budget_s": 20.0, "target_regret": 0.02,
               "reference": 0.9, "methods": {"asha": {"family": "multi-fidelity", "mean_rank": 1.0}},
               "ranks_over_time": {"time_s": [0.0, 10.0, 20.0], "asha": [1.0, 1.0, 1.0]}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "regret.csv").write_text("method,seed,time_s,regret\nasha,0,4.0,0.1\nasha,0,12.0,0.01\n")
    exe = Path(sys.executable).parent / "tune-ext-plot"      # the entry point pip installed
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "``" not in proc.stdout and "tune-ext-plot OUT: redraw" in proc.stdout
    code = ("import sys; from tune_ext.benchmark.cli import plot_main; plot_main([sys.argv[1]]); "
            "print('ray imported' if 'ray' in sys.modules else 'no ray')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"drawing {tmp_path}/regret.png and ranks.png (1 methods)",
                                        f"wrote {tmp_path}/regret.png and ranks.png", "no ray"]
    assert (tmp_path / "regret.png").stat().st_size > 0 and (tmp_path / "ranks.png").stat().st_size > 0

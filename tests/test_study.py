"""scripts/study.py: ``plot`` on synthetic summaries laid out as the harness writes them (no Ray),
and ``run``'s plan of harness commands (no run)."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "scripts" / "study.py"


def load_script():
    spec = importlib.util.spec_from_file_location("study_script", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def method(final, final_ci, ttt, ttt_ci, reached, n=5, family="full-budget", no_result=None):
    """One method's entry with summarize_runs' keys (per-seed rows abridged to the seed numbers)."""
    return {"kind": "gradient" if family == "gradient" else "black-box", "family": family,
            "final_regret": final, "final_regret_ci95": final_ci, "no_result": no_result,
            "time_to_target_s": ttt, "time_to_target_ci95": ttt_ci, "seeds_reached": reached,
            "mean_rank": None if final is None else 1.0, "trials": 40, "results": 700,
            "errored_trials": 0, "time_to_first_result_s": None if final is None else 4.2,
            "seeds": [{"seed": s} for s in range(n)]}


# (task, hyperparameters, budget) -> methods; fds's median never reaches the target on mnist1d-100
# (2 of 5 seeds did), bohb never reaches it there at all, asha has no result there
INPUT = {
    ("mnist1d", 5, 35.0): {
        "tpe": method(0.0115, [0.0015, 0.0375], 7.0, [6.6, 9.1], 5),
        "bohb": method(0.0255, [0.0185, 0.0325], 12.5, [7.5, None], 3, family="multi-fidelity"),
        "asha": method(0.0095, [0.0065, 0.0185], 14.8, [11.5, 20.7], 5, family="multi-fidelity"),
        "fds": method(0.0105, [0.0045, 0.0335], 22.0, [20.6, None], 3, family="gradient")},
    ("mnist1d-30", 30, 60.0): {
        "tpe": method(0.0215, [0.0105, 0.0415], 31.5, [18.2, None], 3),
        "bohb": method(0.0335, [0.0215, 0.0505], 40.25, [28.0, None], 3, family="multi-fidelity"),
        "asha": method(0.0185, [-0.0075, 0.0625], 27.5, [16.0, 44.0], 4, family="multi-fidelity"),
        "fds": method(0.0125, [0.0065, 0.0205], 24.5, [21.0, 30.5], 5, family="gradient")},
    ("mnist1d-100", 105, 90.0): {
        "tpe": method(0.0415, [0.0255, 0.0615], 77.0, [60.0, None], 3),
        "bohb": method(0.0655, [0.0405, 0.0905], None, [None, None], 0, family="multi-fidelity"),
        "asha": method(None, [None, None], None, [None, None], 0, family="multi-fidelity",
                       no_result="no trial reported val_acc"),
        "fds": method(0.0235, [0.0105, 0.0305], None, [29.5, None], 2, family="gradient")},
}


def write_study(folder: Path):
    variants = []
    for (task, n_hp, budget), methods in INPUT.items():
        (folder / task).mkdir(parents=True)
        summary = {"task": task, "metric": "val_acc", "mode": "max", "test_metric": "test_acc",
                   "reference": 0.9335, "target_regret": 0.02, "budget_s": budget, "max_results": None,
                   "seeds": list(range(5)), "concurrency": 2, "resources_per_trial": {"cpu": 1.0},
                   "compile_gradient": False, "cluster_resources": {"CPU": 2.0},
                   "placement": {"mode": "sequential", "runs_at_once": 1, "wall_s": 1000.0},
                   "methods": methods, "separated_final_regret": [],
                   "ranks_over_time": {"time_s": [0.0, budget], **{m: [1.0, 1.0] for m in methods}}}
        (folder / task / "summary.json").write_text(json.dumps(summary))
        variants.append({"task": task, "n_hyperparameters": n_hp, "budget_s": budget, "out": task,
                         "command": f"tune-ext-benchmark --task {task} --out results/study/{task}"})
    (folder / "study.json").write_text(json.dumps({"variants": variants[::-1]}))  # any order


def numbers(cell: str) -> list:
    """The numbers of a table cell in order, "never"/"none" as None."""
    return [None if t in ("never", "none") else float(t)
            for t in re.findall(r"-?\d+\.\d+|never|none", cell)]


def test_plot_writes_a_table_of_the_inputs_and_a_png_without_importing_ray(tmp_path):
    write_study(tmp_path / "study")
    code = ("import runpy, sys; sys.argv = ['study.py', 'plot', sys.argv[1], '--to', sys.argv[2]]; "
            "runpy.run_path(%r, run_name='__main__'); "
            "print('ray imported' if 'ray' in sys.modules else 'no ray')" % str(STUDY))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "study"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "no ray"
    md = (tmp_path / "out" / "study.md").read_text()
    assert md in proc.stdout   # printed and written alike
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            rows[(cells[1], cells[2])] = cells
    assert len(rows) == sum(len(m) for m in INPUT.values())
    for (task, n_hp, _), methods in INPUT.items():
        for name, m in methods.items():
            n, _, _, final, ttt, reached = rows[(task, name)]
            assert int(n) == n_hp and reached == f"{m['seeds_reached']} of 5"
            if m["final_regret"] is None:
                assert final == "no result"
            else:
                assert numbers(final) == pytest.approx([m["final_regret"], *m["final_regret_ci95"]],
                                                       abs=5e-5)
            got, want = numbers(ttt), [m["time_to_target_s"], *m["time_to_target_ci95"]]
            assert [g is None for g in got] == [w is None for w in want]
            assert [g for g in got if g is not None] == \
                pytest.approx([w for w in want if w is not None], abs=0.05)
    # a median that never reached the target reads "never", never a number
    assert rows[("mnist1d-100", "fds")][4] == "never [29.5, never]"
    assert rows[("mnist1d-100", "bohb")][4] == "never [never, never]"
    assert "mnist1d-100, asha: no result: no trial reported val_acc" in md
    assert "tune-ext-benchmark --task mnist1d-30 --out results/study/mnist1d-30" in md
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "out" / "study.png")
    assert image.shape[0] > 400 and image.shape[1] > 1000


def test_the_figure_draws_medians_at_their_values_and_never_in_its_own_band(tmp_path):
    study = load_script()
    write_study(tmp_path)
    variants = study.load_study(str(tmp_path))
    assert [v["n_hyperparameters"] for v in variants] == [5, 30, 105]
    fig = study.figure(variants)
    try:
        ax_t, ax_f = fig.axes
        for ax, band in ((ax_t, "never"), (ax_f, "no result")):
            assert [round(x) for x in ax.get_xticks()] == [5, 30, 105] and ax.get_xscale() == "log"
            labels = [t.get_text() for t in ax.get_yticklabels()]
            assert labels[-1] == band and band not in labels[:-1]
        never_y, no_result_y = ax_t.get_yticks()[-1], ax_f.get_yticks()[-1]
        assert never_y > 90.0   # above every budget, so never reads as a time
        medians = {(ax, line.get_label()): line for ax in (ax_t, ax_f) for line in ax.get_lines()
                   if not line.get_label().startswith("_")}
        for name in ("tpe", "bohb", "asha", "fds"):
            for ax, key, band_y in ((ax_t, "time_to_target_s", never_y),
                                    (ax_f, "final_regret", no_result_y)):
                line = medians[(ax, name)]
                want = [band_y if m[name][key] is None else m[name][key] for m in INPUT.values()]
                assert list(line.get_ydata()) == pytest.approx(want)
                x = line.get_xdata()
                assert [5 / 1.3 < x[0] < 5 * 1.3, 30 / 1.3 < x[1] < 30 * 1.3,
                        105 / 1.3 < x[2] < 105 * 1.3] == [True] * 3
        assert medians[(ax_t, "fds")].get_ydata()[2] == never_y
        assert medians[(ax_f, "asha")].get_ydata()[2] == no_result_y
        assert max(y for line in ax_f.get_lines() for y in line.get_ydata()
                   if y != no_result_y) < no_result_y
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_plot_refuses_a_folder_without_its_study_or_a_variant_without_its_summary(tmp_path):
    proc = subprocess.run([sys.executable, str(STUDY), "plot", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and f"no study.json in {str(tmp_path)!r}" in proc.stderr
    write_study(tmp_path / "s")
    (tmp_path / "s" / "mnist1d-30" / "summary.json").unlink()
    proc = subprocess.run([sys.executable, str(STUDY), "plot", str(tmp_path / "s")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert "variant mnist1d-30 has no" in proc.stderr
    assert "tune-ext-benchmark --task mnist1d-30 --out results/study/mnist1d-30" in proc.stderr


def test_run_plans_one_harness_command_per_variant_and_keeps_earlier_variants(tmp_path):
    """The plan only (harness arguments checked, nothing run; imports Ray's modules, starts no Ray)."""
    study = load_script()
    args = study.argparse.Namespace(out=str(tmp_path), tasks="mnist1d,mnist1d-100", methods="tpe,fds",
                                    seeds=5, budgets="mnist1d-100=90")
    variants = study.plan(args, ["--concurrency", "2"])
    assert [v["command"] for v in variants] == [
        f"tune-ext-benchmark --task mnist1d --methods tpe,fds --seeds 5 --budget-s 35 "
        f"--out {tmp_path}/mnist1d --concurrency 2",
        f"tune-ext-benchmark --task mnist1d-100 --methods tpe,fds --seeds 5 --budget-s 90 "
        f"--out {tmp_path}/mnist1d-100 --concurrency 2"]
    assert [(v["n_hyperparameters"], v["budget_s"]) for v in variants] == [(5, 35.0), (105, 90.0)]
    study.write_manifest(str(tmp_path), variants)
    args.tasks, args.budgets = "mnist1d-30", None
    study.write_manifest(str(tmp_path), study.plan(args, []))   # a later run of one variant
    manifest = json.loads((tmp_path / "study.json").read_text())["variants"]
    assert [(v["task"], v["n_hyperparameters"], v["out"]) for v in manifest] == \
        [("mnist1d", 5, "mnist1d"), ("mnist1d-30", 30, "mnist1d-30"), ("mnist1d-100", 105, "mnist1d-100")]
    for bad, match in [({"budgets": "cifar10=5"}, "not a task of this study"),
                       ({"budgets": "mnist1d-30=-1"}, "finite and > 0"),
                       ({"methods": "tpe,nope"}, "variant mnist1d-30: unknown method")]:
        with pytest.raises(ValueError, match=match):
            study.plan(study.argparse.Namespace(**{**vars(args), **bad}), [])
    for extra in (["--seeds", "3"], ["--budget", "5"], ["--out=/elsewhere"], ["--quick"]):
        with pytest.raises(ValueError, match="sets what the study sets itself"):
            study.plan(args, extra)

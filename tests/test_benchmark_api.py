"""A user's own task through the public API: inside a program that started Ray itself, and its
reference computed by the installed command into a path the user chooses."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

import user_task
from tune_ext.benchmark import Budget, RunOptions, get_methods, run_benchmark

ray.cloudpickle.register_pickle_by_value(user_task)  # Ray workers can't import tests/
HERE = Path(__file__).resolve().parent
BEST = user_task.loss_at(0.3, user_task.MAX_T) + 0.01       # the best possible test loss


def test_user_task_inside_a_program_that_started_ray(ray_local, tmp_path):
    task = user_task.task(reference=BEST)
    # a count of results ends each run: what a wall-clock budget yields depends on the machine
    summary = run_benchmark(task, get_methods(["random", "asha"]), [0],
                            Budget(300.0, concurrency=1, max_results=8), str(tmp_path),
                            RunOptions(log=lambda s: None))
    assert ray.is_initialized()                  # the caller's Ray is left running
    # the session's Ray has 2 CPUs: room for both runs of one trial each, side by side
    assert summary["placement"]["mode"] == "parallel" and summary["placement"]["runs_at_once"] == 2
    spans = [summary["methods"][m]["seeds"][0] for m in ("random", "asha")]
    # both under way at one moment (their start-ups included)
    assert max(s["start_s"] - s["startup_s"] for s in spans) < min(s["end_s"] for s in spans)
    assert summary["metric"] == "val_loss" and summary["mode"] == "min"
    with open(tmp_path / "regret.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for name in ("random", "asha"):
        m = summary["methods"][name]
        assert m["final_regret"] is not None and m["trials"] >= 1 and m["errored_trials"] == 0, m
        mine = [r for r in rows if r["method"] == name]
        # mode "min": the incumbent has the lowest validation loss so far, regret = test - reference
        vals = [float(r["val_score"]) for r in mine]
        assert vals == sorted(vals, reverse=True)
        for r in mine:
            assert float(r["regret"]) == pytest.approx(float(r["test_score"]) - BEST, abs=1e-6)
            assert float(r["regret"]) >= -1e-9
        assert float(mine[-1]["regret"]) == pytest.approx(m["final_regret"], abs=1e-6)
    # TensorBoard: one run directory per method and seed, one tag, so one chart overlays them
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path / "tensorboard"))
    mux.Reload()
    assert set(mux.Runs()) == {os.path.join("random", "seed0"), os.path.join("asha", "seed0")}
    for run, tags in mux.Runs().items():
        assert tags["scalars"] == ["regret"]
        events = mux.Scalars(run, "regret")
        mine = [r for r in rows if r["method"] == run.split(os.sep)[0]]
        assert [round(e.value, 5) for e in events] == [round(float(r["regret"]), 5) for r in mine]
        assert [e.step for e in events] == [round(float(r["time_s"]) * 1000) for r in mine]


def test_reference_command_writes_where_the_user_says(tmp_path):
    out = tmp_path / "refs" / "parabola.json"
    command = Path(sys.executable).parent / "tune-ext-reference"   # the installed entry point
    # the task module sits in the current folder, as a user's would, and is not on any path:
    # the command and Ray's workers find it there
    shutil.copy(HERE / "user_task.py", tmp_path / "user_task.py")
    env = {**os.environ, "USER_TASK_REFERENCE": str(out)}
    proc = subprocess.run([str(command), "--task", "user_task:task_with_stored_reference",
                           "--seeds", "1", "--num-cpus", "1"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stored = json.loads(out.read_text())
    assert stored["reference"] == pytest.approx(BEST) and stored["mode"] == "min"
    assert [r["config"] for r in stored["results"]] == [{"x": 0.1}, {"x": 0.3}, {"x": 0.9}]
    assert user_task.task(reference_path=str(out)).reference_value() == pytest.approx(BEST)
    assert not (tmp_path / "results").exists()      # nothing written beside the user's path


def test_a_task_from_your_own_model_and_data_runs_black_box_and_gradient_methods(ray_local, tmp_path):
    task = user_task.own_model_task()
    assert task.gradient_config == {"batch_size": 32, "n_lr_windows": 2, "n_momentum_windows": 1,
                                    "n_weight_decay_windows": 1} and "model_fn" in task.trainable_kwargs
    summary = run_benchmark(task, get_methods(["asha", "fds"]), [0],
                            Budget(300.0, concurrency=1, max_results=4), str(tmp_path),
                            RunOptions(log=lambda s: None))
    for name in ("asha", "fds"):
        m = summary["methods"][name]
        assert m["errored_trials"] == 0 and m["trials"] >= 1, m
    # accuracy against a reference of 1.0: the regret is the incumbent's test error
    asha = summary["methods"]["asha"]
    assert asha["final_regret"] is not None and 0.0 <= asha["final_regret"] < 0.6


@pytest.mark.slow
def test_the_hybrid_method_runs_end_to_end_in_quick_mode(ray_local, tmp_path, capsys):
    import math

    from tune_ext.benchmark import cli

    # quick mode (digits), ended by a count of results rather than the machine's speed
    cli.main(["--quick", "--methods", "asha-fds", "--budget-s", "300", "--max-results", "4",
              "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "task digits" in out and "asha-fds" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    m = summary["methods"]["asha-fds"]
    assert m["family"] == "hybrid" and m["errored_trials"] == 0 and m["trials"] >= 2, m
    assert m["final_regret"] is not None and math.isfinite(m["final_regret"]) and m["results"] >= 2
    assert m["final_regret"] < 0.5  # test accuracy far above chance (0.1): the FDS trials trained

"""The main job end to end: ``scripts/benchmark.py --quick`` locally and on a started Ray cluster."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from tune_ext.benchmark.methods import METHODS, QUICK_METHODS

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "scripts" / "benchmark.py"


def run_cli(args, env=None, timeout=900):
    proc = subprocess.run([sys.executable, str(BENCHMARK), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Every run ends after this many results (or the budget, which a loaded machine does not reach
# first): how many results a wall-clock budget yields depends on the machine, a count does not.
MAX_RESULTS = ["--budget-s", "300", "--max-results", "6"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    proc = run_cli(["--quick", *MAX_RESULTS, "--out", str(out)])
    return out, proc.stdout


def test_quick_races_black_box_gradient_and_ray_methods(quick):
    kinds = {METHODS[m].kind for m in QUICK_METHODS}
    assert kinds == {"black-box", "gradient"} and any(m.startswith("ray-") for m in QUICK_METHODS)
    out, stdout = quick
    # one progress line per finished method and seed, and Ray's own console output stays quiet
    progress = [line for line in stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(QUICK_METHODS)
    assert "placement: one run at a time" in stdout
    assert "Trial status" not in stdout and "Configuration for experiment" not in stdout
    assert "no difference can be shown" in stdout   # one seed: no claims


def test_tensorboard_overlays_every_method_in_one_chart_matching_the_csv(quick):
    out, _ = quick
    summary = json.loads((out / "summary.json").read_text())
    reference = summary["reference"]
    with open(out / "regret.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(out / "tensorboard"))
    mux.Reload()
    assert set(mux.Runs()) == {os.path.join(m, "seed0") for m in QUICK_METHODS}
    for method in QUICK_METHODS:
        run = os.path.join(method, "seed0")
        assert mux.Runs()[run]["scalars"] == ["regret"]   # one tag: one chart holds them all
        events = mux.Scalars(run, "regret")
        mine = [r for r in rows if r["method"] == method]
        # an incumbent and the end point: every method had results to choose one from
        assert len(events) == len(mine) >= 2, summary["methods"][method]["no_result"]
        for ev, row in zip(events, mine):
            assert ev.value == pytest.approx(float(row["regret"]), abs=1e-6)
            # milliseconds on the run's clock: every run starts at step 0 on TensorBoard's axis
            assert ev.step == round(float(row["time_s"]) * 1000)
        # the incumbent is the best validation score so far: it never worsens, and the regret
        # is the reference minus its test accuracy
        vals = [float(r["val_score"]) for r in mine]
        assert vals == sorted(vals)
        for r in mine:
            assert float(r["regret"]) == pytest.approx(reference - float(r["test_score"]), abs=1e-5)
        times = [float(r["time_s"]) for r in mine]
        assert times == sorted(times) and times[-1] <= summary["budget_s"]


def _png(path):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
        return im.size


def test_summary_and_pictures(quick):
    out, _ = quick
    summary = json.loads((out / "summary.json").read_text())
    assert {"task", "reference", "target_regret", "budget_s", "methods"} <= set(summary)
    assert summary["task"] == "digits" and summary["budget_s"] == 300 and summary["max_results"] == 6
    assert summary["resources_per_trial"] == {"cpu": 1.0} and summary["concurrency"] == 2
    assert summary["compile_gradient"] is False and summary["placement"]["mode"] == "sequential"
    assert set(summary["methods"]) == set(QUICK_METHODS)
    for m in summary["methods"].values():
        assert {"final_regret", "final_regret_ci95", "time_to_target_s", "time_to_target_ci95",
                "seeds_reached", "mean_rank", "trials", "results", "errored_trials",
                "time_to_first_result_s", "seeds"} <= set(m)
        assert len(m["seeds"]) == 1 and m["final_regret"] < summary["reference"], m["no_result"]
        assert m["time_to_target_s"] is None or 0 <= m["time_to_target_s"] <= summary["budget_s"]
        assert m["results"] >= 1 and 0 <= m["time_to_first_result_s"] <= summary["budget_s"]
        # the start-up before a run's first trial is up is measured, and outside the budget
        assert m["seeds"][0]["startup_s"] > 0
    assert set(summary["ranks_over_time"]) == {"time_s", *QUICK_METHODS}
    width, height = _png(out / "regret.png")
    assert width > 800 and height > 300                     # the family panels
    assert _png(out / "ranks.png")[0] > 400


@pytest.mark.slow   # the default task's data and model have fast tests (test_data, test_models)
def test_mnist1d_default_task_runs(tmp_path):
    proc = run_cli(["--methods", "asha,fds", "--seeds", "1", *MAX_RESULTS, "--out", str(tmp_path)])
    assert "task mnist1d" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == "mnist1d" and summary["target_regret"] == 0.02
    asha = summary["methods"]["asha"]
    assert asha["final_regret"] is not None and asha["trials"] >= 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runs_on_an_existing_cluster_started_with_ray_start(tmp_path):
    port = _free_port()
    ray_cli = str(Path(sys.executable).parent / "ray")
    # Ray >= 2.5x turns on token authentication for `ray start` clusters; clients then send the
    # token from ~/.ray/auth_token when RAY_AUTH_MODE=token. Loopback only (conftest).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    # --block keeps the head in this process group, so ending the group stops exactly this
    # cluster (a plain `ray stop` would also stop every other Ray instance on the machine)
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=3", "--num-gpus=0",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True,
                             env=env).returncode:
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not come up"
        run_cli(["--quick", "--methods", "ray-asha", *MAX_RESULTS, "--address", "auto",
                 "--out", str(tmp_path)], env={**env, "RAY_ADDRESS": address})
        summary = json.loads((tmp_path / "summary.json").read_text())
        # the 3 CPUs are the started cluster's: a Ray started by the harness would have 2
        assert summary["cluster_resources"]["CPU"] == 3.0
        assert summary["methods"]["ray-asha"]["final_regret"] < summary["reference"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=120)


def test_runs_go_side_by_side_on_a_multi_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    # two real nodes (a head and a second raylet) of 2 CPUs: room for 3 runs of 1 trial each
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"}
        proc = run_cli(["--quick", "--methods", "asha,random,ray-asha", "--concurrency", "1",
                        "--budget-s", "20", "--address", "auto", "--out", str(tmp_path)], env=env)
        assert "placement: 3 runs side by side" in proc.stdout
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["cluster_resources"]["CPU"] == 4.0
        assert summary["placement"]["mode"] == "parallel" and summary["placement"]["runs_at_once"] == 3
        spans = [m["seeds"][0] for m in summary["methods"].values()]
        # all three were under way at one moment: the latest begin (its start-up included) is
        # before the earliest end
        assert max(s["start_s"] - s["startup_s"] for s in spans) < min(s["end_s"] for s in spans)
        for m in summary["methods"].values():
            assert m["trials"] >= 1 and m["errored_trials"] == 0
            # how many results fit in 20 s depends on the machine's load (4 raylets on 2 cores):
            # whatever came, the report must match it, and no result is never a number
            if m["final_regret"] is not None:
                assert m["results"] >= 1 and m["final_regret"] < 1.0, m
            else:
                assert m["no_result"], m
    finally:
        cluster.shutdown()


def _last_results(experiment_state):
    """Every trial's last result, from a Ray Tune experiment_state-*.json (Tune's own record)."""
    trials = json.loads(experiment_state.read_text())["trial_data"]
    results = (json.loads(runtime)["last_result"] for _, runtime in trials)
    return [r for r in results if r.get("training_iteration")]   # trials that reported


def test_half_a_gpu_per_trial_on_logical_gpus_shares_each_gpu_between_two_trials(tmp_path):
    """GPU placement without a GPU: a Ray node with 2 logical GPUs, half a GPU per trial, checked
    from Ray Tune's own records of the trials (scripts/gpu_check.sh is the check on a real device)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False})
    try:
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"}
        proc = run_cli(["--quick", "--methods", "asha,fds", "--cpus-per-trial", "0.5",
                        "--gpus-per-trial", "0.5", *MAX_RESULTS, "--address", "auto",
                        "--out", str(tmp_path)], env=env)
    finally:
        cluster.shutdown()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cluster_resources"] == {"CPU": 2.0, "GPU": 2.0}
    assert summary["resources_per_trial"] == {"cpu": 0.5, "gpu": 0.5}
    # one run takes 2 trials x 0.5 GPU: both runs side by side, 4 trials on 2 GPUs
    assert summary["placement"]["runs_at_once"] == 2
    # no CUDA on this machine: the trials fell back to the CPU, and the harness said so once
    assert [line for line in proc.stdout.splitlines() if line.startswith("GPU:")] == [
        "GPU: trials requested 0.5 GPU and Ray assigned them GPU ids, but CUDA is not available "
        "where they ran: they train on the CPU"]
    for method in ("asha", "fds"):
        assert summary["methods"][method]["seeds"][0]["devices"] == ["cpu"]
        rows = [_last_results(f) for f in (tmp_path / "ray" / f"{method}-seed0").glob(
            "experiment_state-*.json")]
        rows = [r for per_file in rows for r in per_file]
        assert rows, f"no result of {method} trials"
        for row in rows:
            # Ray granted each trial half a GPU (so at most 2 trials per GPU), one GPU id, and the
            # trial's process saw exactly that GPU (CUDA_VISIBLE_DEVICES)
            assert row["gpu_fraction"] == 0.5 and row["gpu_ids"] in ("0", "1"), row
            assert row["visible_gpus"] == row["gpu_ids"] and row["device"] == "cpu", row

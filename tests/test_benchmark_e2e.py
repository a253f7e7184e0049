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


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    proc = run_cli(["--quick", "--budget-s", "20", "--out", str(out)])
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
        assert len(events) == len(mine) >= 2, f"{method} found no incumbent within the budget"
        for ev, row in zip(events, mine):
            assert ev.value == pytest.approx(float(row["regret"]), abs=1e-6)
            assert ev.step == int(float(row["time_s"]))
        # the incumbent is the best validation score so far: it never worsens, and the regret
        # is the reference minus its test accuracy
        vals = [float(r["val_score"]) for r in mine]
        assert vals == sorted(vals)
        for r in mine:
            assert float(r["regret"]) == pytest.approx(reference - float(r["test_score"]), abs=1e-5)
        times = [float(r["time_s"]) for r in mine]
        assert times == sorted(times) and times[-1] <= summary["budget_s"] + 30


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
    assert summary["task"] == "digits" and summary["budget_s"] == 20
    assert summary["resources_per_trial"] == {"cpu": 1.0} and summary["concurrency"] == 2
    assert summary["compile_gradient"] is False and summary["placement"]["mode"] == "sequential"
    assert set(summary["methods"]) == set(QUICK_METHODS)
    for m in summary["methods"].values():
        assert {"final_regret", "final_regret_ci95", "time_to_target_s", "time_to_target_ci95",
                "seeds_reached", "mean_rank", "trials", "results", "errored_trials",
                "time_to_first_result_s", "seeds"} <= set(m)
        assert len(m["seeds"]) == 1 and m["final_regret"] < summary["reference"]
        assert m["time_to_target_s"] is None or 0 <= m["time_to_target_s"] <= 60
        assert m["results"] >= 1 and 0 < m["time_to_first_result_s"] < 60
    assert set(summary["ranks_over_time"]) == {"time_s", *QUICK_METHODS}
    width, height = _png(out / "regret.png")
    assert width > 800 and height > 300                     # the family panels
    assert _png(out / "ranks.png")[0] > 400


@pytest.mark.slow   # the default task's data and model have fast tests (test_data, test_models)
def test_mnist1d_default_task_runs(tmp_path):
    proc = run_cli(["--methods", "asha,fds", "--seeds", "1", "--budget-s", "15", "--out", str(tmp_path)])
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
        run_cli(["--quick", "--methods", "ray-asha", "--budget-s", "20", "--address", "auto",
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
        # all three were running at one moment: the latest start is before the earliest end
        assert max(s["start_s"] for s in spans) < min(s["end_s"] for s in spans)
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

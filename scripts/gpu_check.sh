#!/usr/bin/env bash
# GPU path check, for a machine with a GPU (never a test dependency): FDSTrainable on the GPU Ray
# assigns, then the harness with gradient and black-box trials sharing one device (0.5 GPU each).
# Prints what it measured; writes results/gpu_check/ (summary.json, plots, fds.json).
#   ./scripts/gpu_check.sh [BUDGET_S]      (default 30 s per method)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/bootstrap.sh"
cd "$root"
budget="${1:-30}"
out="results/gpu_check"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$venv/bin/python" - "$out" <<'PY'
import json, sys, time
import ray, torch
from ray import tune
from trainables import FDSTrainable
out = sys.argv[1]
assert torch.cuda.is_available(), "no GPU visible to torch"
ray.init(address="local", num_gpus=1, include_dashboard=False, log_to_driver=False)
t0 = time.time()
analysis = tune.run(FDSTrainable, resources_per_trial={"cpu": 1, "gpu": 0.5}, verbose=0,
                    stop={"training_iteration": 4}, metric="val_acc", mode="max",
                    config={"dataset": "mnist1d", "model": "cnn1d", "batch_size": 128,
                            "method": tune.grid_search(["fds", "oho"]), "inner_epochs": 5,
                            "outer_steps": 4, "n_lr_windows": 3, "lr_init": 0.0, "lr_step": 0.1})
rows = [{"method": t.config["method"], "status": t.status,
         "val_acc": t.last_result.get("val_acc"), "test_acc": t.last_result.get("test_acc"),
         "time_total_s": t.last_result.get("time_total_s"),
         # where the trial trained and the GPU Ray assigned it (the trainables report both)
         "device": t.last_result.get("device"), "gpu_ids": t.last_result.get("gpu_ids"),
         "gpu_fraction": t.last_result.get("gpu_fraction")} for t in analysis.trials]
ray.shutdown()
print(f"FDSTrainable on {torch.cuda.get_device_name(0)} (0.5 GPU per trial, 2 trials sharing it): "
      f"{time.time() - t0:.1f}s wall")
for r in rows:
    print("  ", r)
json.dump(rows, open(f"{out}/fds.json", "w"), indent=1)
assert all(r["status"] == "TERMINATED" for r in rows), rows
assert all(r["device"] == "cuda" and r["gpu_fraction"] == 0.5 for r in rows), rows
PY
"$venv/bin/python" -m tune_ext.benchmark --task mnist1d --methods asha,fds,oho,ray-asha --seeds 1 \
  --budget-s "$budget" --gpus-per-trial 0.5 --out "$out"

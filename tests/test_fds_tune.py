"""FDSTrainable under Ray Tune: runs, and PAUSE / resume gives the numbers of an uninterrupted run."""
import pytest
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from pause_helpers import PauseOnce, run_one_trial
from trainables import FDSTrainable

BASE = {"dataset": "digits", "model": "mlp", "batch_size": 256, "seed": 1, "n_lr_windows": 1,
        "lr_init": 0.05, "momentum_init": 0.5, "lr_step": 0.05, "momentum_step": 0.05,
        "weight_decay_step": 0.0}
CONFIGS = {
    "fds": {**BASE, "method": "fds", "inner_epochs": 1, "outer_steps": 3, "n_lr_windows": 2},
    "oho": {**BASE, "method": "oho", "inner_epochs": 3, "hyper_every": 4, "val_batch_size": 64,
            "lr_step": 0.01, "momentum_step": 0.01},
}
METRICS = ("val_loss", "val_acc", "test_acc", "lr_0", "momentum_0", "weight_decay_0",
           "hypergrad_norm_lr", "hypergrad_norm_momentum")


@pytest.mark.parametrize("method", ["fds", pytest.param("oho", marks=pytest.mark.slow)])
def test_pause_resume_under_ray_matches_an_uninterrupted_run(method, ray_local, tmp_path):
    config = CONFIGS[method]
    _, straight = run_one_trial(FDSTrainable, config, FIFOScheduler(), tmp_path / "straight")
    scheduler = PauseOnce()
    trial, paused = run_one_trial(FDSTrainable, config, scheduler, tmp_path / "paused")
    assert scheduler.paused == {trial.trial_id}
    assert [r["training_iteration"] for r in paused] == [1, 2, 3]
    assert [{k: r[k] for k in METRICS} for r in paused] == [{k: r[k] for k in METRICS} for r in straight]
    # the schedule was learned, not fixed
    assert straight[-1]["lr_0"] != straight[0]["lr_0"]
    assert straight[-1]["val_acc"] > 0.3
    assert {"lr_0", "momentum_0", "weight_decay_0", "hypergrad_norm_lr", "skipped_updates"} <= set(paused[-1])


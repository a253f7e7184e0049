"""FDSTrainable under Ray Tune: runs, and PAUSE / resume gives the numbers of an uninterrupted run."""
import pytest
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

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


class PauseOnce(FIFOScheduler):
    """Pauses each trial once, at iteration 2: Ray checkpoints it, stops its actor, restores it."""

    def __init__(self):
        super().__init__()
        self.paused = set()

    def on_trial_result(self, tune_controller, trial, result):
        if result["training_iteration"] == 2 and trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


class Record(Callback):
    def __init__(self):
        self.results = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append(result)


def run_under_ray(config, scheduler, path):
    record = Record()
    analysis = tune.run(FDSTrainable, config=config, scheduler=scheduler, reuse_actors=False,
                        resources_per_trial={"cpu": 1}, storage_path=str(path), verbose=0,
                        callbacks=[record])
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED"
    return trial, record.results


@pytest.mark.parametrize("method", ["fds", "oho"])
def test_pause_resume_under_ray_matches_an_uninterrupted_run(method, ray_local, tmp_path):
    config = CONFIGS[method]
    _, straight = run_under_ray(config, FIFOScheduler(), tmp_path / "straight")
    scheduler = PauseOnce()
    trial, paused = run_under_ray(config, scheduler, tmp_path / "paused")
    assert scheduler.paused == {trial.trial_id}
    assert [r["training_iteration"] for r in paused] == [1, 2, 3]
    assert [{k: r[k] for k in METRICS} for r in paused] == [{k: r[k] for k in METRICS} for r in straight]
    # the schedule was learned, not fixed
    assert straight[-1]["lr_0"] != straight[0]["lr_0"]
    assert straight[-1]["val_acc"] > 0.3
    assert {"lr_0", "momentum_0", "weight_decay_0", "hypergrad_norm_lr", "skipped_updates"} <= set(paused[-1])


"""Shared by the pause/resume tests: a scheduler that PAUSEs each trial once, and a recorder."""
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler


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


def run_one_trial(trainable, config, scheduler, path):
    """One trial of ``trainable`` under ``scheduler`` without actor reuse; (trial, every result)."""
    record = Record()
    analysis = tune.run(trainable, config=config, scheduler=scheduler, reuse_actors=False,
                        resources_per_trial={"cpu": 1}, storage_path=str(path), verbose=0,
                        callbacks=[record])
    (trial,) = analysis.trials
    assert trial.status == "TERMINATED"
    return trial, record.results

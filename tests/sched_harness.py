"""A scripted driver for scheduler unit tests: Trial-like objects and a controller stand-in that
offers exactly what schedulers call (get_trials, search_alg.is_finished, stop_trial) and applies
PAUSE/STOP the way Ray's TuneController does. End-to-end tests use real Ray instead."""
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler


class FakeTrial:
    def __init__(self, trial_id):
        self.trial_id = trial_id
        self.status = Trial.PENDING
        self.last_result = {}

    def set_status(self, status):
        self.status = status

    def __repr__(self):
        return self.trial_id


class Search:
    finished = False

    def is_finished(self):
        return self.finished


class Driver:
    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.trials = {}
        self.search_alg = Search()
        self.log = []

    def get_trials(self):
        return list(self.trials.values())

    def add(self, *ids):
        for tid in ids:
            t = self.trials[tid] = FakeTrial(tid)
            self.scheduler.on_trial_add(self, t)

    def report(self, tid, t, value, metric="m", time_attr="training_iteration"):
        trial = self.trials[tid]
        trial.status = Trial.RUNNING
        d = self.scheduler.on_trial_result(self, trial, {time_attr: t, metric: value})
        if d == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED
        elif d == TrialScheduler.STOP:
            self.scheduler.on_trial_complete(self, trial, {time_attr: t, metric: value})
            trial.status = Trial.TERMINATED
        self.log.append((tid, t, d))
        return d

    def choose(self):
        """One controller step: the scheduler's pick becomes PENDING then RUNNING."""
        trial = self.scheduler.choose_trial_to_run(self)
        self.resumed = trial is not None and trial.status == Trial.PAUSED
        if trial is not None:
            trial.status = Trial.RUNNING
        return trial

    def stop_trial(self, trial):
        if trial.status in (Trial.PAUSED, Trial.PENDING):
            self.scheduler.on_trial_remove(self, trial)
        trial.status = Trial.TERMINATED
        self.log.append((trial.trial_id, None, "STOPPED_BY_SCHEDULER"))

    def error(self, tid, requeue=False):
        trial = self.trials[tid]
        self.scheduler.on_trial_error(self, trial)
        if requeue:
            trial.status = Trial.PENDING
            self.scheduler.on_trial_add(self, trial)
        else:
            trial.status = Trial.ERROR

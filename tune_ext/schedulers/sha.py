"""Synchronous successive halving (SHA), the building block Hyperband runs bracket by bracket."""
from __future__ import annotations

import math
from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers._base import MetricScheduler, ray_arguments
from tune_ext.schedulers.brackets import (check_geometry, highest_rung_reached,
                                          max_bracket_index, rung_resources)


class SuccessiveHalvingScheduler(MetricScheduler):
    """Synchronous successive halving: Jamieson & Talwalkar 2016, "Non-stochastic Best Arm
    Identification and Hyperparameter Optimization" (AISTATS), Algorithm 1.

    Every trial of the experiment joins one bracket whose rungs are Hyperband's most aggressive
    (``brackets.rung_resources``: ``max_t * eta**(i - s_max)``). A trial whose ``time_attr``
    reaches a rung is paused until the rung is complete: every live trial has arrived and no
    further trial can join (the searcher is finished). Then the top floor(n / eta) (at least one)
    continue and the rest stop. Trials that error, end early or are removed leave the rung, which
    completes without them. Needs a checkpointing trainable, like every pausing scheduler.

    Args:
        time_attr: the result key that measures training progress (``training_iteration``).
        metric, mode: what to rank by, "min" or "max"; or leave None and give them to
            ``tune.run`` / ``tune.TuneConfig``.
        max_t: the budget at which every trial stops (in ``time_attr`` units; default 100).
        min_t: the first rung's budget (default 1); Ray's name ``grace_period`` is accepted.
        reduction_factor: eta: the top 1/eta of a rung continue (default 3, the papers').

    Example::

        from ray import tune
        from tune_ext.schedulers import SuccessiveHalvingScheduler

        def train(config):
            for t in range(1, 10):
                tune.report({"loss": config["x"] / t})   # add checkpoint=... to resume, see docs

        tune.run(train, config={"x": tune.grid_search([0.1 * i for i in range(1, 10)])},
                 metric="loss", mode="min", scheduler=SuccessiveHalvingScheduler(max_t=9))
    """

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t=100, min_t=None, reduction_factor=3,
                 **ray_kwargs):
        super().__init__(time_attr, metric, mode, max_t, reduction_factor)
        min_t = ray_arguments(type(self).__name__, min_t, ray_kwargs,
                              ("time_attr", "metric", "mode", "max_t", "min_t", "reduction_factor"))
        check_geometry(max_t, min_t, reduction_factor)
        self._min_t = min_t
        self._bands = 0
        self._unsettled: set[int] = set()   # brackets whose rungs may complete at the next step

    # ---- brackets: SHA runs one, as large as the experiment ----
    def _new_band(self) -> list[tuple[list[float], Optional[int]]]:
        """Brackets (milestones, capacity) that open when all earlier ones are full: SHA has one,
        with Hyperband's most aggressive rungs and no size limit."""
        s_max = max_bracket_index(self._max_t, self._min_t, self._eta)
        return [(rung_resources(self._max_t, self._eta, s_max), None)]

    def _bracket_for_new_trial(self) -> int:
        book = self._book
        for b in range(len(book.brackets)):
            if book.accepting(b):
                return b
        self._bands += 1
        for milestones, capacity in self._new_band():
            book.open_bracket(milestones, capacity)
        return self._bracket_for_new_trial()

    # ---- Algorithm 1: a trial reaching its rung waits there until the rung is complete ----
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        t, score = self._read(result)
        tid, book = trial.trial_id, self._book
        entry = self._trials[tid]
        if entry.stopped:
            return self.STOP
        if entry.waiting:      # already arrived in its rung (a restored trial Ray ran anyway)
            return self.PAUSE
        rung, milestones = entry.rung + 1, book.milestones(tid)
        if t < milestones[rung]:
            return self.STOP if t >= self._max_t else self.CONTINUE
        # Arrival (a result may overstep the rung; it is ranked in the rung it was heading to).
        book.record(tid, rung, score, wait=True)
        decision = self._settle(entry.bracket, reporter=tid).get(tid)
        if decision is not None:
            return decision
        return self.STOP if rung == len(milestones) - 1 else self.PAUSE

    def _settle(self, bracket: int, reporter: Optional[str] = None) -> dict[str, str]:
        """Close what can close: the top floor(n / eta) (at least one) of a complete rung continue,
        the rest stop. Queue resumes and stops of the paused trials; return the decisions by trial
        id (the reporting trial gets its decision directly, not queued)."""
        decisions = {}
        for winners, losers in self._book.complete_rungs(bracket):
            for tid in winners:
                decisions[tid] = self.CONTINUE
                if tid != reporter:
                    self._to_resume.append(tid)
            for tid in losers:
                decisions[tid] = self.STOP
                if tid != reporter:
                    self._to_stop.append(tid)
        return decisions

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        if self._unbooked:
            self._rebuild()
        for b in sorted(self._unsettled):
            self._settle(b)
        self._unsettled.clear()
        if tune_controller.search_alg.is_finished():
            for b in range(len(self._book.brackets)):
                if self._book.close(b):   # no further trial: rung 0 may be complete now
                    self._settle(b)
        self._stop_queued(tune_controller)
        trial = self._resume_queued()
        if trial is not None:
            return trial
        return self._pending(tune_controller)[0]

    # ---- trials that leave: the rung completes without them ----
    def _leave(self, trial_id: str, settle: bool = True, stopped: bool = True) -> None:
        entry = self._trials.get(trial_id)
        if entry is None:
            return
        # its record stays: the rung's survivors are counted from every arrival
        self._book.withdraw(trial_id, forget=False, stopped=stopped)
        if settle:
            self._settle(entry.bracket)   # the rung may be complete without it
        else:
            self._unsettled.add(entry.bracket)

    def _ended(self, trial_id: str, stopped: bool) -> None:
        self._leave(trial_id, settle=False, stopped=stopped)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        self._leave(trial.trial_id)
        self._objects.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial: Trial):
        # Ray calls on_trial_add right after this when the trial is re-queued (max_failures), so
        # the rung is only settled without it at the next choose_trial_to_run.
        self._failed_on_resume(trial)
        self._leave(trial.trial_id, settle=False, stopped=False)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._leave(trial.trial_id)
        self._objects.pop(trial.trial_id, None)

    def _rejoin(self, trial: Trial) -> None:
        """Back after a failure: to the rung it was heading to or waiting in, arriving there
        again, unless that rung has completed without it meanwhile."""
        tid = trial.trial_id
        entry = self._trials[tid]
        if self._book.rung_done(entry.bracket, self._book.position(tid)):
            self._book.withdraw(tid, forget=False, stopped=True)
            self._to_stop.append(tid)
        else:
            self._book.revive(tid, forget=True)

    # ---- restore ----
    def _catch_up(self, trial: Trial) -> None:
        """Record a rung arrival that the trial's last result has and the book lacks."""
        tid, book = trial.trial_id, self._book
        entry = self._trials[tid]
        rung = book.position(tid)
        if entry.waiting or book.rung_done(entry.bracket, rung) \
                or not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        if book.milestones(tid)[rung] <= t < self._max_t:
            book.record(tid, rung, score, wait=True)
            self._unsettled.add(entry.bracket)

    def _replay(self, trial: Trial) -> None:
        """A trial's last result is its score in the highest rung it reached; it won every rung
        below (+inf there). Deciding the rungs again then stops exactly the trials whose last
        result sits in a rung they lost, ranked by the same scores as when they arrived."""
        tid = trial.trial_id
        self._unsettled.add(self._trials[tid].bracket)
        if not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        top = highest_rung_reached(self._book.milestones(tid), t)
        for k in range(top + 1):
            self._book.record(tid, k, score if k == top else math.inf, wait=True)

    def debug_string(self) -> str:
        brackets = self._book.brackets
        lines = [f"{type(self).__name__}: {len(brackets)} brackets in {self._bands} bands"]
        for b, br in enumerate(brackets):
            size = "all" if br.capacity is None else br.capacity
            done = self._book.completed(b)
            rungs = " | ".join(
                f"t={r.milestone:g}: {len(r)} arrived, {r.num_heading} expected"
                + (" (done)" if done[i] else "") for i, r in enumerate(br.rungs))
            lines.append(f"  bracket {b} ({br.members}/{size} trials): {rungs}")
        return "\n".join(lines)

    # ---- state ----
    GEOMETRY = "(max_t, min_t, reduction_factor)"

    def _geometry(self) -> list:
        return [self._max_t, self._min_t, self._eta]

    def _extra_state(self) -> dict:
        return {"bands": self._bands, "unsettled": sorted(self._unsettled)}

    def _set_extra_state(self, state: dict) -> None:
        self._bands, self._unsettled = int(state["bands"]), set(state["unsettled"])

"""Synchronous successive halving (SHA), the building block Hyperband runs bracket by bracket."""
from __future__ import annotations

import logging
import math
from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers._base import MetricScheduler, decode_score, encode_score, ray_arguments
from tune_ext.schedulers.brackets import (check_geometry, highest_rung_reached,
                                          max_bracket_index, rung_resources, survivors)

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class _Bracket:
    """One run of successive halving: n trials, rungs r_0 < .. < r_s, a rung closes when every
    live trial expected there has arrived; then the top floor(arrived / eta) (at least one) of the
    live arrivals continue and the rest stop."""

    def __init__(self, resources: list[float], capacity: Optional[int], eta):
        self.resources = resources
        self.eta = eta
        self.capacity = capacity               # None: every trial of the experiment (plain SHA)
        self.members = 0
        self.closed = False                    # no more trials will join
        self.expected = [set() for _ in resources]   # live trials heading to rung i
        self.arrived = [dict() for _ in resources]   # trial_id -> (score, arrival) at rung i
        self.done = [False] * len(resources)

    def accepting(self) -> bool:
        return not self.closed and (self.capacity is None or self.members < self.capacity)

    def join(self, trial_id: str) -> None:
        self.members += 1
        self.expected[0].add(trial_id)
        if self.capacity is not None and self.members >= self.capacity:
            self.closed = True

    def complete_rungs(self, alive) -> list[tuple[list[str], list[str]]]:
        """Close every rung that can close now, in order; [(winners, losers)] per closed rung."""
        out = []
        for i in range(len(self.resources)):
            if self.done[i]:
                continue
            ready = (self.closed if i == 0 else self.done[i - 1]) and not self.expected[i]
            if not ready:
                break
            self.done[i] = True
            ranked = sorted(self.arrived[i], key=lambda tid: (-self.arrived[i][tid][0],
                                                              self.arrived[i][tid][1]))
            ranked = [tid for tid in ranked if alive(tid)]
            if i == len(self.resources) - 1:
                out.append(([], ranked))       # max_t: everyone stops
                continue
            keep = survivors(len(self.arrived[i]), self.eta)
            winners, losers = ranked[:keep], ranked[keep:]
            # (a rebuilt book already holds the next-rung arrivals of winners that went on)
            self.expected[i + 1].update(w for w in winners if w not in self.arrived[i + 1])
            out.append((winners, losers))
        return out

    def exhausted(self) -> bool:
        return self.done[-1]

    def to_data(self) -> dict:
        return {"resources": list(self.resources), "capacity": self.capacity,
                "members": self.members, "closed": self.closed, "done": list(self.done),
                "expected": [sorted(e) for e in self.expected],
                "arrived": [[[tid, encode_score(score), seq] for tid, (score, seq) in a.items()]
                            for a in self.arrived]}

    @classmethod
    def from_data(cls, data: dict, eta) -> "_Bracket":
        bracket = cls(list(data["resources"]), data["capacity"], eta)
        bracket.members, bracket.closed = data["members"], data["closed"]
        bracket.done = list(data["done"])
        bracket.expected = [set(e) for e in data["expected"]]
        bracket.arrived = [{tid: (decode_score(score), seq) for tid, score, seq in a}
                           for a in data["arrived"]]
        return bracket


class _TrialState:
    __slots__ = ("bracket", "rung", "alive", "stopped")

    def __init__(self, bracket: int):
        self.bracket = bracket
        self.rung = 0          # the rung this trial is heading to (or waiting in)
        self.alive = True
        self.stopped = False   # ended for good (stopped, completed, removed); not by an error


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
        super().__init__(time_attr, metric, mode)
        min_t = ray_arguments(type(self).__name__, min_t, ray_kwargs,
                              ("time_attr", "metric", "mode", "max_t", "min_t", "reduction_factor"))
        check_geometry(max_t, min_t, reduction_factor)
        self._max_t, self._min_t, self._eta = max_t, min_t, reduction_factor
        self._brackets: list[_Bracket] = []
        self._trials: dict[str, _TrialState] = {}
        self._objects: dict[str, Trial] = {}
        self._to_resume: list[str] = []
        self._to_stop: list[str] = []
        self._seq = 0
        self._bands = 0
        self._restoring: set[str] = set()
        self._restored = False
        self._unsettled: set[int] = set()
        self._unbooked: list[Trial] = []   # restored without our state: rebuilt before any runs

    def _new_band(self) -> list[_Bracket]:
        """Brackets that open when all earlier ones are full: SHA has one, as large as needed."""
        s_max = max_bracket_index(self._max_t, self._min_t, self._eta)
        return [_Bracket(rung_resources(self._max_t, self._eta, s_max), None, self._eta)]

    def _bracket_for_new_trial(self) -> int:
        for b, bracket in enumerate(self._brackets):
            if bracket.accepting():
                return b
        self._bands += 1
        self._brackets.extend(self._new_band())
        return self._bracket_for_new_trial()

    def on_trial_add(self, tune_controller, trial: Trial):
        self._require_metric()
        self._check_searcher(tune_controller)
        self._objects[trial.trial_id] = trial
        state = self._trials.get(trial.trial_id)
        if state is None and not self._restored:
            if self._unbooked or self._has_history(trial):
                # Experiment restore without our saved state: collect every trial, rebuild the
                # rungs from their last results before any of them runs (choose_trial_to_run).
                self._unbooked.append(trial)
                if trial.status == Trial.PENDING:
                    trial.set_status(Trial.PAUSED)   # filed under its status after this hook
                return
            self._check_not_a_silent_restart(trial)
        if state is None and trial.status in (Trial.TERMINATED, Trial.ERROR):
            return                 # restored as finished and unknown to us: nothing to schedule
        if state is None:
            b = self._bracket_for_new_trial()
            state = self._trials[trial.trial_id] = _TrialState(b)
            self._brackets[b].join(trial.trial_id)
            if self._restored and trial.status == Trial.PENDING:
                self._catch_up(trial, state)
            return
        bracket = self._brackets[state.bracket]
        if trial.trial_id in self._restoring:
            # Experiment restore. Ray saves our state with the trial table, but its uploads can
            # leave the two a step apart: a rung arrival in the trial's last result that our
            # state lacks is recorded now. A paused trial stays paused (Ray re-adds it PENDING).
            self._restoring.discard(trial.trial_id)
            if state.stopped and trial.status not in (Trial.TERMINATED, Trial.ERROR):
                # We stopped it, but Ray's snapshot still has it unfinished (Ray does not mark a
                # trial stopped while PAUSED for its next snapshot): stop it again before it runs.
                trial.set_status(Trial.PAUSED)
                self._to_stop.append(trial.trial_id)
                return
            if trial.status in (Trial.TERMINATED, Trial.ERROR):
                return
            if state.alive:
                if trial.status == Trial.PENDING and not bracket.done[state.rung]:
                    self._catch_up(trial, state)
                    if trial.trial_id in bracket.arrived[state.rung]:
                        trial.set_status(Trial.PAUSED)   # filed under its status after this hook
                return
            # It had errored and is resumed (resume_errored): a re-queue, as below.
        # Re-queued after a failure (max_failures): back to the rung it was heading to, if that
        # rung has not completed without it meanwhile.
        state.alive = True
        if bracket.done[state.rung]:
            state.alive = False
            state.stopped = True
            self._to_stop.append(trial.trial_id)
        else:
            bracket.arrived[state.rung].pop(trial.trial_id, None)
            bracket.expected[state.rung].add(trial.trial_id)

    def _catch_up(self, trial: Trial, state: _TrialState) -> None:
        bracket, tid = self._brackets[state.bracket], trial.trial_id
        if tid in bracket.arrived[state.rung] or not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        if bracket.resources[state.rung] <= t < self._max_t:
            self._seq += 1
            bracket.arrived[state.rung][tid] = (score, self._seq)
            bracket.expected[state.rung].discard(tid)
            self._unsettled.add(state.bracket)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        t, score = self._read(result)
        state = self._trials[trial.trial_id]
        if state.stopped:
            return self.STOP
        bracket = self._brackets[state.bracket]
        if t < bracket.resources[state.rung]:
            return self.STOP if t >= self._max_t else self.CONTINUE
        # Arrival (a result may overstep the rung; it still is ranked in the rung it waits in).
        tid, rung = trial.trial_id, state.rung
        self._seq += 1
        bracket.arrived[rung][tid] = (score, self._seq)
        bracket.expected[rung].discard(tid)
        decision = self._settle(bracket, reporter=tid).get(tid)
        if decision is not None:
            return decision
        return self.STOP if rung == len(bracket.resources) - 1 else self.PAUSE

    def _settle(self, bracket: _Bracket, reporter: Optional[str] = None) -> dict[str, str]:
        """Close what can close; queue resumes and stops of the paused trials; return the
        decisions by trial id (the reporting trial gets its decision directly, not queued)."""
        decisions = {}
        for winners, losers in bracket.complete_rungs(lambda tid: self._trials[tid].alive):
            for tid in winners:
                self._trials[tid].rung += 1
                decisions[tid] = self.CONTINUE
                if tid != reporter:
                    self._to_resume.append(tid)
            for tid in losers:
                self._trials[tid].alive = False
                self._trials[tid].stopped = True
                decisions[tid] = self.STOP
                if tid != reporter:
                    self._to_stop.append(tid)
        return decisions

    def _rebuild(self) -> None:
        """Restore without saved state: replay each trial's last result in trial order. A trial
        records an arrival in every rung up to the highest its last result reached (its score
        there; +inf in the rungs below, which it must have won to get further), then the rungs
        that can close are decided again: the rung-k losers are exactly the trials whose last
        result sits in rung k, ranked by the same scores as when they arrived."""
        trials, self._unbooked = sorted(self._unbooked, key=lambda t: t.trial_id), []
        logger.warning(
            "%s: no saved scheduler state was restored (%s missing or unreadable); rebuilt the "
            "rungs from the last results of the %d restored trials", type(self).__name__,
            self._state_location(trials[0]), len(trials))
        touched = set()
        for trial in trials:
            tid = trial.trial_id
            b = self._bracket_for_new_trial()
            bracket, state = self._brackets[b], _TrialState(b)
            self._trials[tid] = state
            bracket.join(tid)
            touched.add(b)
            if trial.status == Trial.ERROR:
                state.alive = False
                bracket.expected[0].discard(tid)
                continue
            if self._has_keys(trial.last_result):
                t, score = self._read(trial.last_result)
                top = highest_rung_reached(bracket.resources, t)
                for k in range(top + 1):
                    self._seq += 1
                    bracket.arrived[k][tid] = (score if k == top else math.inf, self._seq)
                if top >= 0:
                    bracket.expected[0].discard(tid)
            if trial.status == Trial.TERMINATED:
                state.alive, state.stopped = False, True
                bracket.expected[0].discard(tid)
        for b in sorted(touched):
            self._settle(self._brackets[b])
        # Resume what must train (a live trial not yet arrived in the rung it is heading to);
        # choose_trial_to_run skips those that wait in a rung.
        self._to_resume.extend(t.trial_id for t in trials if self._trials[t.trial_id].alive)

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        if self._unbooked:
            self._rebuild()
        for b in sorted(self._unsettled):
            self._settle(self._brackets[b])
        self._unsettled.clear()
        if tune_controller.search_alg.is_finished():
            for bracket in self._brackets:
                if not bracket.closed:
                    bracket.closed = True
                    self._settle(bracket)
        for tid in list(self._to_stop):
            trial = self._objects.get(tid)
            if trial is None or trial.status in (Trial.TERMINATED, Trial.ERROR):
                self._to_stop.remove(tid)
            elif trial.status in (Trial.PAUSED, Trial.PENDING):
                self._to_stop.remove(tid)
                tune_controller.stop_trial(trial)
        for tid in list(self._to_resume):
            trial = self._objects.get(tid)
            if trial is None or trial.status != Trial.RUNNING:   # RUNNING: still saving its pause
                self._to_resume.remove(tid)
            if trial is not None and trial.status == Trial.PAUSED and not self._waits(tid):
                return trial
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                return trial
        return None

    def _knows(self, trial_id: str) -> bool:
        return trial_id in self._trials or any(t.trial_id == trial_id for t in self._unbooked)

    def _waits(self, trial_id: str) -> bool:
        """Paused in the rung it has arrived at, until that rung completes."""
        state = self._trials[trial_id]
        return trial_id in self._brackets[state.bracket].arrived[state.rung]

    def _leave(self, trial_id: str, settle: bool = True, stopped: bool = True) -> None:
        state = self._trials.get(trial_id)
        if state is None:
            return
        state.stopped = state.stopped or stopped
        if not state.alive:
            return
        state.alive = False
        bracket = self._brackets[state.bracket]
        bracket.expected[state.rung].discard(trial_id)
        if settle:
            self._settle(bracket)   # the rung may be complete without it
        else:
            self._unsettled.add(state.bracket)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        self._leave(trial.trial_id)
        self._objects.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial: Trial):
        # Ray calls on_trial_add right after this when the trial is re-queued (max_failures), so
        # the rung is only settled without it at the next choose_trial_to_run.
        self._leave(trial.trial_id, settle=False, stopped=False)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._leave(trial.trial_id)
        self._objects.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        lines = [f"{type(self).__name__}: {len(self._brackets)} brackets in {self._bands} bands"]
        for b, br in enumerate(self._brackets):
            size = "all" if br.capacity is None else br.capacity
            rungs = " | ".join(
                f"t={r:g}: {len(br.arrived[i])} arrived, {len(br.expected[i])} expected"
                + (" (done)" if br.done[i] else "") for i, r in enumerate(br.resources))
            lines.append(f"  bracket {b} ({br.members}/{size} trials): {rungs}")
        return "\n".join(lines)

    def get_state(self) -> dict:
        """The brackets, rungs and trial states as JSON-able plain data, with a version."""
        return {"version": STATE_VERSION, "geometry": [self._max_t, self._min_t, self._eta],
                "metric": self._metric, "mode": self._mode, "seq": self._seq,
                "bands": self._bands, "brackets": [b.to_data() for b in self._brackets],
                "trials": {tid: [st.bracket, st.rung, st.alive, st.stopped]
                           for tid, st in self._trials.items()},
                "to_resume": list(self._to_resume), "to_stop": list(self._to_stop),
                "unsettled": sorted(self._unsettled)}

    def set_state(self, state: dict) -> None:
        self._check_saved(state, STATE_VERSION, [self._max_t, self._min_t, self._eta])
        self._seq, self._bands = state["seq"], state["bands"]
        self._brackets = [_Bracket.from_data(b, self._eta) for b in state["brackets"]]
        self._trials = {}
        for tid, (bracket, rung, alive, stopped) in state["trials"].items():
            st = self._trials[tid] = _TrialState(bracket)
            st.rung, st.alive, st.stopped = rung, alive, stopped
        self._to_resume, self._to_stop = list(state["to_resume"]), list(state["to_stop"])
        self._unsettled = set(state["unsettled"])
        self._objects, self._unbooked = {}, []
        self._restoring = set(self._trials)
        self._restored = True

"""Asynchronous successive halving (ASHA), promotion and stopping variants."""
from __future__ import annotations

import heapq
import logging
import math
from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers._base import MetricScheduler, decode_score, encode_score, ray_arguments
from tune_ext.schedulers.brackets import (check_geometry, continues_at_arrival,
                                          highest_rung_reached, max_bracket_index,
                                          promotable_count, rung_resources)
from tune_ext.schedulers.ranking import RankedValues

logger = logging.getLogger(__name__)

VARIANTS = ("promotion", "stopping")
STATE_VERSION = 1


def _encode_key(key):
    """A rung key as JSON-able data: a score ("stopping") or [score, -arrival] ("promotion")."""
    if key is None:
        return None
    return [encode_score(key[0]), key[1]] if isinstance(key, tuple) else encode_score(key)


def _decode_key(data):
    if data is None:
        return None
    return (decode_score(data[0]), data[1]) if isinstance(data, list) else decode_score(data)


class _Rung:
    """One rung: every recorded result (ranked) and the trials paused here, best first."""
    __slots__ = ("resource", "values", "waiting", "num_waiting")

    def __init__(self, resource: float):
        self.resource = resource
        self.values = RankedValues()
        self.waiting: list = []   # heap of (-score, seq, trial_id); stale entries skipped lazily
        self.num_waiting = 0


class _TrialState:
    __slots__ = ("bracket", "rung", "key", "waiting", "alive", "stopped")

    def __init__(self, bracket: int):
        self.bracket = bracket
        self.rung = -1          # highest rung this trial has a result recorded in
        self.key = None         # its ranking key in that rung (promotion variant)
        self.waiting = False    # paused in that rung, not yet promoted
        self.alive = True
        self.stopped = False    # ended for good (stopped, completed, removed); not by an error


class ASHAScheduler(MetricScheduler):
    """Asynchronous successive halving: Li et al. 2020, "A System for Massively Parallel
    Hyperparameter Tuning" (MLSys), Algorithm 2.

    Rungs are Hyperband's (``brackets.rung_resources``): bracket b has milestones
    ``max_t * eta**(i - s)``, i = 0 .. s, with s = s_max - b. A rung is reached by the first result
    with ``time_attr >= r_i``; a trial stops at ``max_t``. Trials are dealt to brackets in turn.

    ``variant="promotion"`` (the paper): a trial that reaches a rung is paused; when a worker frees
    (``choose_trial_to_run``), the best not-yet-promoted trial in the top 1/eta of the highest rung
    that has one is promoted, else a new trial starts. A trial arriving at a rung continues at once
    when it is itself that promotion. When no trial runs or waits to start and the searcher is
    finished, the paused trials can never be promoted and are stopped. PAUSE needs a trainable that
    checkpoints (class trainables, or function trainables reporting ``checkpoint=``); without one
    Ray restarts the trial from scratch and this scheduler ignores results below its rung.

    ``variant="stopping"``: a trial continues iff its result is in the top 1/eta of the rung at
    the moment it arrives (``num_better * eta < num_recorded``), as Ray's ASHA approximates.

    Every decision is O(log n): each rung keeps its results in a ``RankedValues``.

    Args:
        time_attr: the result key that measures training progress (``training_iteration``).
        metric, mode: what to rank by, "min" or "max"; or leave None and give them to
            ``tune.run`` / ``tune.TuneConfig``.
        max_t: the budget at which every trial stops (in ``time_attr`` units; default 100).
        min_t: the first rung's budget (default 1); Ray's name ``grace_period`` is accepted.
        reduction_factor: eta: the top 1/eta of a rung continue (default 3, the papers').
        brackets: how many of Hyperband's brackets, from the most aggressive (default 1).
        variant: "promotion" (the paper's Algorithm 2, pauses) or "stopping" (never pauses).

    Example::

        from ray import tune
        from tune_ext.schedulers import ASHAScheduler

        def train(config):
            for t in range(1, 28):
                tune.report({"loss": config["x"] / t})

        tune.run(train, config={"x": tune.uniform(0, 1)}, num_samples=9, metric="loss",
                 mode="min", scheduler=ASHAScheduler(max_t=27, variant="stopping"))
    """

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t=100, min_t=None, reduction_factor=3,
                 brackets: int = 1, variant: str = "promotion", **ray_kwargs):
        super().__init__(time_attr, metric, mode)
        min_t = ray_arguments(type(self).__name__, min_t, ray_kwargs,
                              ("time_attr", "metric", "mode", "max_t", "min_t", "reduction_factor",
                               "brackets", "variant"))
        check_geometry(max_t, min_t, reduction_factor)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        s_max = max_bracket_index(max_t, min_t, reduction_factor)
        if isinstance(brackets, bool) or not isinstance(brackets, int) \
                or not 1 <= brackets <= s_max + 1:
            raise ValueError(f"brackets must be an integer in [1, {s_max + 1}] for max_t={max_t}, "
                             f"min_t={min_t}, reduction_factor={reduction_factor}; got {brackets!r}")
        self._init(max_t, reduction_factor, variant,
                   [rung_resources(max_t, reduction_factor, s_max - b) for b in range(brackets)])

    def _init(self, max_t, eta, variant, bracket_resources: list[list[float]]) -> None:
        self._max_t, self._eta, self._variant = max_t, eta, variant
        self.pauses_trials = variant == "promotion"
        self._brackets = [[_Rung(r) for r in res] for res in bracket_resources]
        self._resources = [list(res) for res in bracket_resources]
        self._trials: dict[str, _TrialState] = {}
        self._objects: dict[str, Trial] = {}     # live Trial objects; not part of the saved state
        self._seq = 0
        self._added = 0
        self._promoting: Optional[str] = None
        self._to_stop: list[str] = []            # restored trials we had stopped: stop again
        self._restoring: Optional[set] = None    # trial ids to re-bind after set_state
        self._num_stopped = self._num_paused = self._num_promoted = 0

    # ---- Algorithm 2: bracket assignment (Hyperband brackets run side by side) ----
    def _choose_bracket(self) -> int:
        return self._added % len(self._brackets)

    def on_trial_add(self, tune_controller, trial: Trial):
        self._require_metric()
        self._check_searcher(tune_controller)
        self._objects[trial.trial_id] = trial
        state = self._trials.get(trial.trial_id)
        if state is not None:      # re-queued after a failure, or restored: keep its rungs
            restoring = bool(self._restoring) and trial.trial_id in self._restoring
            if restoring:
                self._restoring.discard(trial.trial_id)
            if restoring and state.stopped and trial.status not in (Trial.TERMINATED, Trial.ERROR):
                # We stopped it while PAUSED, which Ray's snapshot does not record: stop it again
                # before it runs (the controller files it under PAUSED after this hook).
                trial.set_status(Trial.PAUSED)
                self._to_stop.append(trial.trial_id)
                return
            state.alive = trial.status not in (Trial.TERMINATED, Trial.ERROR)
            if restoring and trial.status == Trial.PENDING and not state.waiting:
                self._catch_up(trial, state)
            if state.waiting and trial.status == Trial.PENDING:
                # Restored while paused in a rung: stay paused until promoted. The controller
                # files the trial under its status only after this hook, so this is safe here.
                trial.set_status(Trial.PAUSED)
            return
        if self._restoring is None:
            if self._has_history(trial):
                raise RuntimeError(
                    f"{type(self).__name__}: this experiment restore has no saved scheduler state "
                    f"({self._state_location(trial)} missing or unreadable), and ASHA's rungs "
                    f"cannot be rebuilt exactly from the trials' last results (they lack the "
                    f"scores at the lower rungs). Put the file back and resume again, pass "
                    f"SchedulerStateCallback(scheduler) in callbacks when you start an "
                    f"experiment, or start a new experiment under another name.")
            self._check_not_a_silent_restart(trial)
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            return                 # restored as finished and unknown to us: nothing to schedule
        state = self._trials[trial.trial_id] = _TrialState(self._choose_bracket())
        self._added += 1
        if self._restoring is not None and trial.status == Trial.PENDING:
            self._catch_up(trial, state)
            if state.waiting:
                trial.set_status(Trial.PAUSED)

    def _catch_up(self, trial: Trial, state: _TrialState) -> None:
        """Restore: record a rung arrival that the trial's last result has and our saved state
        lacks (Ray's uploads can leave the two a step apart); the trial then waits there."""
        if not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        resources = self._resources[state.bracket]
        top = highest_rung_reached(resources, t)
        if state.rung < top < len(resources) - 1:
            rungs = self._brackets[state.bracket]
            key = score if self._variant == "stopping" else (score, -self._next_seq())
            for k in range(state.rung + 1, top + 1):
                rungs[k].values.add(key)
            state.rung, state.key = top, key
            if self._variant == "promotion":
                heapq.heappush(rungs[top].waiting, (-score, -key[1], trial.trial_id))
                state.waiting = True
                rungs[top].num_waiting += 1

    # ---- a worker reports: record the result in every rung it reached ----
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        t, score = self._read(result)
        state = self._trials[trial.trial_id]
        if state.stopped:          # restored after we stopped it: stop it again
            return self.STOP
        resources = self._resources[state.bracket]
        nxt = state.rung + 1
        if nxt < len(resources) and t >= resources[nxt]:
            return self._arrive(state, trial.trial_id, highest_rung_reached(resources, t), score)
        if t >= self._max_t:
            self._num_stopped += 1
            state.stopped = True
            return self.STOP
        return self.CONTINUE

    def _arrive(self, state: _TrialState, trial_id: str, top: int, score: float) -> str:
        rungs = self._brackets[state.bracket]
        if self._variant == "stopping":
            rung = rungs[top]
            # a non-finite result ranks behind everything, other non-finite results included
            better = rung.values.count_above(score) if score != -math.inf else len(rung.values)
            for k in range(state.rung + 1, top + 1):
                rungs[k].values.add(score)
            state.rung = top
            if top == len(rungs) - 1 or not continues_at_arrival(better, len(rung.values),
                                                                  self._eta):
                self._num_stopped += 1
                state.stopped = True
                return self.STOP
            return self.CONTINUE
        # promotion: ties rank by arrival, so keys are (score, -arrival)
        self._seq += 1
        key = (score, -self._seq)
        for k in range(state.rung + 1, top + 1):
            rungs[k].values.add(key)
        state.rung, state.key = top, key
        if top == len(rungs) - 1:
            self._num_stopped += 1
            state.stopped = True
            return self.STOP
        rung = rungs[top]
        heapq.heappush(rung.waiting, (-score, self._seq, trial_id))
        state.waiting = True
        rung.num_waiting += 1
        # The worker is free: get_job() may hand it straight back to this trial.
        if self._best_promotable(state.bracket) == (top, trial_id):
            self._promote(state, rung)
            return self.CONTINUE
        self._num_paused += 1
        return self.PAUSE

    # ---- get_job(): the best promotable trial of the highest rung that has one ----
    def _best_promotable(self, bracket: int):
        rungs = self._brackets[bracket]
        for k in range(len(rungs) - 2, -1, -1):
            rung = rungs[k]
            heap = rung.waiting
            while heap:
                neg, seq, tid = heap[0]
                st = self._trials.get(tid)
                if st is not None and st.waiting and st.rung == k and st.key[1] == -seq:
                    break
                heapq.heappop(heap)   # promoted, withdrawn or re-recorded since it was pushed
            if heap and rung.values.count_above((-heap[0][0], -heap[0][1])) < \
                    promotable_count(len(rung.values), self._eta):
                return k, heap[0][2]
        return None

    def _promote(self, state: _TrialState, rung: _Rung) -> None:
        heapq.heappop(rung.waiting)
        state.waiting = False
        rung.num_waiting -= 1
        self._num_promoted += 1

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        for tid in self._to_stop:
            trial = self._objects.get(tid)
            if trial is not None and trial.status in (Trial.PAUSED, Trial.PENDING):
                tune_controller.stop_trial(trial)
        self._to_stop = []
        if self._variant == "promotion":
            if self._promoting is not None:
                trial = self._objects.get(self._promoting)
                if trial is not None and trial.status == Trial.PENDING:
                    return trial   # idempotent until the controller starts it
                self._promoting = None
            for b in range(len(self._brackets)):
                found = self._best_promotable(b)
                if found is None:
                    continue
                k, tid = found
                trial = self._objects.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    self._promote(self._trials[tid], self._brackets[b][k])
                    self._promoting = tid
                    return trial
        busy = False
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                return trial
            busy = busy or trial.status == Trial.RUNNING
        if self._variant == "promotion" and not busy and tune_controller.search_alg.is_finished():
            self._stop_unpromotable(tune_controller)
        return None

    def _stop_unpromotable(self, tune_controller) -> None:
        """Finite budget: nothing runs and no new trial can start, so no rung can change."""
        paused = [(st, self._objects[tid]) for tid, st in self._trials.items()
                  if st.waiting and tid in self._objects
                  and self._objects[tid].status == Trial.PAUSED]
        for st, trial in paused:
            # Its result stays in the rung (it is a real measurement); it just is not waiting.
            st.waiting, st.stopped = False, True
            self._brackets[st.bracket][st.rung].num_waiting -= 1
            self._num_stopped += 1
            tune_controller.stop_trial(trial)

    # ---- trials that leave: their paused records leave the rung with them ----
    def _withdraw(self, trial_id: str, stopped: bool = False) -> None:
        state = self._trials.get(trial_id)
        if state is None:
            return
        state.alive = False
        state.stopped = state.stopped or stopped
        if state.waiting:
            rung = self._brackets[state.bracket][state.rung]
            rung.values.remove(state.key)
            rung.num_waiting -= 1
            state.waiting = False
            state.rung -= 1    # if it comes back (max_failures) it re-enters this rung
        if self._promoting == trial_id:
            self._promoting = None

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        state = self._trials.get(trial.trial_id)
        if state is not None and self._has_keys(result) and not state.waiting:
            t, score = self._read(result)
            top = highest_rung_reached(self._resources[state.bracket], t)
            if top > state.rung:   # finished early: its result still counts in the rungs it reached
                key = score if self._variant == "stopping" else (score, -self._next_seq())
                for k in range(state.rung + 1, top + 1):
                    self._brackets[state.bracket][k].values.add(key)
                state.rung, state.key = top, key
        self._withdraw(trial.trial_id, stopped=True)
        self._objects.pop(trial.trial_id, None)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def on_trial_error(self, tune_controller, trial: Trial):
        self._withdraw(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._withdraw(trial.trial_id, stopped=True)
        self._objects.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        lines = [f"{type(self).__name__} ({self._variant}): {self._num_stopped} stopped, "
                 f"{self._num_paused} paused, {self._num_promoted} promoted"]
        for b, rungs in enumerate(self._brackets):
            lines.append(f"  bracket {b}: " + " | ".join(
                f"t={r.resource:g}: {len(r.values)} recorded, {r.num_waiting} waiting"
                for r in rungs))
        return "\n".join(lines)

    def get_state(self) -> dict:
        """Rungs (recorded keys, paused trials), trial states and counters as JSON-able plain
        data, with a version."""
        return {"version": STATE_VERSION,
                "geometry": [self._max_t, self._eta, self._variant, self._resources],
                "metric": self._metric, "mode": self._mode, "seq": self._seq, "added": self._added,
                "counters": [self._num_stopped, self._num_paused, self._num_promoted],
                "rungs": [[{"values": [_encode_key(k) for k in rung.values],
                            "waiting": [[encode_score(neg), seq, tid]
                                        for neg, seq, tid in rung.waiting],
                            "num_waiting": rung.num_waiting} for rung in rungs]
                          for rungs in self._brackets],
                "trials": {tid: [st.bracket, st.rung, _encode_key(st.key), st.waiting, st.alive,
                                 st.stopped] for tid, st in self._trials.items()},
                "to_stop": list(self._to_stop)}

    def set_state(self, state: dict) -> None:
        self._check_saved(state, STATE_VERSION,
                          [self._max_t, self._eta, self._variant, self._resources])
        self._seq, self._added = state["seq"], state["added"]
        self._num_stopped, self._num_paused, self._num_promoted = state["counters"]
        for rungs, saved in zip(self._brackets, state["rungs"]):
            for rung, data in zip(rungs, saved):
                rung.values = RankedValues()
                for key in data["values"]:
                    rung.values.add(_decode_key(key))
                rung.waiting = [(decode_score(neg), seq, tid) for neg, seq, tid in data["waiting"]]
                rung.num_waiting = data["num_waiting"]   # (a heap stays a heap in list order)
        self._trials = {}
        for tid, (bracket, rung, key, waiting, alive, stopped) in state["trials"].items():
            st = self._trials[tid] = _TrialState(bracket)
            st.rung, st.key, st.waiting = rung, _decode_key(key), waiting
            st.alive, st.stopped = alive, stopped
        self._to_stop = list(state["to_stop"])
        self._promoting = None
        self._objects = {}
        self._restoring = set(self._trials)

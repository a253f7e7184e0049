"""Asynchronous successive halving (ASHA), promotion and stopping variants."""
from __future__ import annotations

from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers._base import FINISHED, MetricScheduler, ray_arguments
from tune_ext.schedulers.brackets import check_geometry, max_bracket_index, rung_resources
from tune_ext.schedulers.rungs import RungBook

VARIANTS = ("promotion", "stopping")


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

    Every decision is O(log n): the rung book (``rungs.py``) keeps each rung's results ranked.

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
        self._max_t, self._eta, self._variant = max_t, reduction_factor, variant
        self.pauses_trials = variant == "promotion"
        self._open_brackets([rung_resources(max_t, reduction_factor, s_max - b)
                             for b in range(brackets)])

    def _open_brackets(self, bracket_milestones: list[list[float]]) -> None:
        """A fresh book with these brackets, open for good (ASHA's brackets have no size)."""
        # "stopping" ranks bare scores: its decision counts strictly better results only
        self._use_book(RungBook(self._eta, ties_by_arrival=self._variant == "promotion"))
        for milestones in bracket_milestones:
            self._book.open_bracket(milestones)
        self._last_rung = [len(milestones) - 1 for milestones in bracket_milestones]
        self._added = 0
        self._promoting: Optional[str] = None
        self._num_stopped = self._num_paused = self._num_promoted = 0

    # ---- Algorithm 2: bracket assignment (Hyperband brackets run side by side) ----
    def _bracket_for_new_trial(self) -> int:
        b = self._added % len(self._book.brackets)
        self._added += 1
        return b

    # ---- a worker reports: record the result in every rung it reached ----
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        t, score = self._read(result)
        tid = trial.trial_id
        entry = self._trials[tid]
        if entry.stopped:    # restored after we stopped it: stop it again
            return self.STOP
        if t < entry.next_milestone:   # between rungs
            if t < self._max_t:
                return self.CONTINUE
            self._stop(tid)
            return self.STOP
        if self._variant == "stopping":
            # continue iff in the top 1/eta of the rung at arrival (else the book stops it)
            if self._book.continues(tid, t, score):
                return self.CONTINUE
            self._num_stopped += 1
            return self.STOP
        top = self._book.reached(tid, t)
        last = top == self._last_rung[entry.bracket]
        self._book.record(tid, top, score, wait=not last)
        if last:
            self._stop(tid)
            return self.STOP
        # The worker is free: get_job() may hand it straight back to this trial.
        if self._book.promotable(entry.bracket) == tid:
            self._promote(tid)
            return self.CONTINUE
        self._num_paused += 1
        return self.PAUSE

    def _stop(self, tid: str) -> None:
        self._book.stop(tid)
        self._num_stopped += 1

    def _promote(self, tid: str) -> None:
        self._book.promote(tid)
        self._num_promoted += 1

    # ---- get_job(): the best promotable trial of the highest rung that has one ----
    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        if self._unbooked:
            self._rebuild()
        self._stop_queued(tune_controller)
        trial = self._resume_queued()
        if trial is not None:
            return trial
        if self._variant == "promotion":
            if self._promoting is not None:
                trial = self._objects.get(self._promoting)
                if trial is not None and trial.status == Trial.PENDING:
                    return trial   # idempotent until the controller starts it
                self._promoting = None
            for b in range(len(self._book.brackets)):
                tid = self._book.promotable(b)
                trial = self._objects.get(tid) if tid is not None else None
                if trial is not None and trial.status == Trial.PAUSED:
                    self._promote(tid)
                    self._promoting = tid
                    return trial
        trial, busy = self._pending(tune_controller)
        if trial is not None:
            return trial
        if self._variant == "promotion" and not busy and tune_controller.search_alg.is_finished():
            self._stop_unpromotable(tune_controller)
        return None

    def _stop_unpromotable(self, tune_controller) -> None:
        """Finite budget: nothing runs and no new trial can start, so no rung can change."""
        for tid in self._book.waiting_trials():
            trial = self._objects.get(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                self._stop(tid)    # its result stays in the rung: it is a real measurement
                tune_controller.stop_trial(trial)

    # ---- trials that leave: their paused records leave the rung with them ----
    def _withdraw(self, tid: str, stopped: bool) -> None:
        self._book.withdraw(tid, forget=True, stopped=stopped)
        if self._promoting == tid:
            self._promoting = None

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        tid = trial.trial_id
        entry = self._trials.get(tid)
        if entry is not None and self._has_keys(result) and not entry.waiting:
            t, score = self._read(result)
            top = self._book.reached(tid, t)
            if top >= 0:   # finished early: its result still counts in the rungs it reached
                self._book.record(tid, top, score)
        self._withdraw(tid, stopped=True)
        self._objects.pop(tid, None)

    def on_trial_error(self, tune_controller, trial: Trial):
        self._withdraw(trial.trial_id, stopped=False)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._withdraw(trial.trial_id, stopped=True)
        self._objects.pop(trial.trial_id, None)

    def _rejoin(self, trial: Trial) -> None:
        """Back after a failure: it re-enters the rung it was withdrawn from when it gets there."""
        if trial.status not in FINISHED:
            self._book.revive(trial.trial_id)

    # ---- restore ----
    def _catch_up(self, trial: Trial) -> None:
        """Record a rung arrival that the trial's last result has and the book lacks; the trial
        then waits there ("promotion")."""
        tid = trial.trial_id
        if self._trials[tid].waiting or not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        top = self._book.reached(tid, t)
        if 0 <= top < len(self._book.milestones(tid)) - 1:
            self._book.record(tid, top, score, wait=self._variant == "promotion")

    def _history(self, trial: Trial) -> Optional[list[tuple[float, float]]]:
        """(time, score) of every result of the trial, in order, from what Ray stores with it: the
        result of each checkpoint it reported, and its last result. None when these miss a
        training iteration up to the last one (then a lower rung's score is unknown)."""
        last = getattr(trial, "last_result", None) or {}
        if not self._has_keys(last):
            return []
        manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
        if manager is None:
            return None
        by_iteration = {}
        for result in [r.metrics for r in manager.best_checkpoint_results] + [last]:
            i = result.get("training_iteration")
            if i is not None and self._has_keys(result):
                by_iteration.setdefault(i, result)
        n = last.get("training_iteration")
        if n is None or any(i not in by_iteration for i in range(1, n + 1)):
            return None
        return [self._read(by_iteration[i]) for i in range(1, n + 1)]

    def _check_rebuildable(self, trial: Trial) -> None:
        if self._history(trial) is None:
            raise RuntimeError(
                f"{type(self).__name__}: this experiment restore has no saved scheduler state "
                f"({self._state_location(trial)} missing or unreadable), and the rungs cannot be "
                f"rebuilt: Ray stored only some results of trial {trial.trial_id} (a result is "
                f"kept with each checkpoint), so its scores at the lower rungs are unknown. Put "
                f"the file back and resume again; to make a rebuild possible, report a "
                f"checkpoint with every result and keep them (CheckpointConfig(num_to_keep="
                f"None), the default); or start a new experiment under another name.")

    def _replay(self, trial: Trial) -> None:
        """Record the trial's results in order, as they arrived. A trial whose last result was a
        rung arrival waits there ("promotion": get_job decides again, as it would have); one
        that trained on was promoted; one that reached max_t ends."""
        tid, book = trial.trial_id, self._book
        arrived = False
        for t, score in self._history(trial):
            top = book.reached(tid, t)
            arrived = top >= 0
            if arrived:
                book.record(tid, top, score)
        entry = self._trials[tid]
        if trial.status in FINISHED or entry.rung < 0:
            return
        if entry.rung == len(book.milestones(tid)) - 1:
            self._stop(tid)
            self._to_stop.append(tid)
        elif arrived and self._variant == "promotion":
            book.wait(tid)

    def debug_string(self) -> str:
        lines = [f"{type(self).__name__} ({self._variant}): {self._num_stopped} stopped, "
                 f"{self._num_paused} paused, {self._num_promoted} promoted"]
        for b, bracket in enumerate(self._book.brackets):
            lines.append(f"  bracket {b}: " + " | ".join(
                f"t={r.milestone:g}: {len(r)} recorded, {r.num_waiting} waiting"
                for r in bracket.rungs))
        return "\n".join(lines)

    # ---- state ----
    GEOMETRY = "(max_t, reduction_factor, variant, rung milestones)"

    def _geometry(self) -> list:
        return [self._max_t, self._eta, self._variant,
                [list(b.milestones) for b in self._book.brackets]]

    def _extra_state(self) -> dict:
        return {"added": self._added,
                "counters": [self._num_stopped, self._num_paused, self._num_promoted]}

    def _set_extra_state(self, state: dict) -> None:
        self._added = int(state["added"])
        self._num_stopped, self._num_paused, self._num_promoted = map(int, state["counters"])
        self._promoting = None

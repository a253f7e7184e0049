"""Asynchronous successive halving (ASHA), promotion and stopping variants."""
from __future__ import annotations

from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers._base import FINISHED, MetricScheduler, ray_arguments
from tune_ext.schedulers.brackets import check_geometry, max_bracket_index, rung_resources
from tune_ext.schedulers.rungs import RULES, RungBook

VARIANTS = tuple(RULES)


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
    Each variant is a small rule over the book (``rungs.PromotionRule``, ``rungs.StoppingRule``).

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
        super().__init__(time_attr, metric, mode, max_t, reduction_factor)
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
        self._variant = variant
        self.pauses_trials = RULES[variant].pauses
        self._open_brackets([rung_resources(max_t, reduction_factor, s_max - b)
                             for b in range(brackets)])

    def _open_brackets(self, bracket_milestones: list[list[float]]) -> None:
        """A fresh book with these brackets, open for good (ASHA's brackets have no size), and a
        fresh rule of the variant."""
        self._rule = RULES[self._variant]()
        self._use_book(RungBook(self._eta, ties_by_arrival=self._rule.ties_by_arrival))
        for milestones in bracket_milestones:
            self._book.open_bracket(milestones)
        self._added = 0
        self._promoting: Optional[str] = None

    # ---- Algorithm 2: bracket assignment (Hyperband brackets run side by side) ----
    def _bracket_for_new_trial(self) -> int:
        b = self._added % len(self._book.brackets)
        self._added += 1
        return b

    # ---- a worker reports: the variant's rule decides at each rung arrival ----
    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        t, score = self._read(result)
        tid = trial.trial_id
        entry = self._trials[tid]
        if entry.stopped:    # restored after we stopped it: stop it again
            return self.STOP
        if t < entry.next_milestone:   # between rungs
            if t < self._max_t:
                return self.CONTINUE
            self._rule.stop(self._book, tid)
            return self.STOP
        return self._rule.arrive(self._book, tid, t, score)

    # ---- get_job(): the best promotable trial of the highest rung that has one ----
    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        trial = self._queued(tune_controller)
        if trial is not None:
            return trial
        if self._promoting is not None:
            trial = self._objects.get(self._promoting)
            if trial is not None and trial.status == Trial.PENDING:
                return trial   # idempotent until the controller starts it
            self._promoting = None
        for b in range(len(self._book.brackets)):
            trial = self._promotion(b)
            if trial is not None:
                self._rule.promote(self._book, trial.trial_id)
                self._promoting = trial.trial_id
                return trial
        trial, busy = self._pending(tune_controller)
        if trial is not None:
            return trial
        if self._rule.pauses and not busy and tune_controller.search_alg.is_finished():
            self._stop_unpromotable(tune_controller)
        return None

    def _promotion(self, bracket: int) -> Optional[Trial]:
        """The paused trial of ``bracket`` to promote next; one whose checkpoint is gone is
        stopped, with a message, and promotions go on without it."""
        while True:
            tid = self._rule.next_promotion(self._book, bracket)
            trial = self._objects.get(tid) if tid is not None else None
            if trial is None or trial.status != Trial.PAUSED:
                return None
            if self._resumable(trial, "promotions go on without it"):
                return trial

    def _stop_unpromotable(self, tune_controller) -> None:
        """Finite budget: nothing runs and no new trial can start, so no rung can change."""
        for tid in self._book.waiting_trials():
            trial = self._objects.get(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                self._rule.stop(self._book, tid)   # its result stays in the rung: a measurement
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
        self._failed_on_resume(trial)
        self._withdraw(trial.trial_id, stopped=False)

    def on_trial_remove(self, tune_controller, trial: Trial):
        self._withdraw(trial.trial_id, stopped=True)
        self._objects.pop(trial.trial_id, None)

    # ---- restore (the rest is restore.py's) ----
    def _catch_up(self, trial: Trial) -> None:
        """Record a rung arrival that the trial's last result has and the book lacks; the trial
        then waits there if the variant pauses."""
        tid = trial.trial_id
        if self._trials[tid].waiting or not self._has_keys(trial.last_result):
            return
        t, score = self._read(trial.last_result)
        top = self._book.reached(tid, t)
        if 0 <= top < len(self._book.milestones(tid)) - 1:
            self._book.record(tid, top, score, wait=self._rule.pauses)

    def _check_rebuildable(self, trial: Trial) -> None:
        self._require_history(trial)

    def _replay(self, trial: Trial) -> None:
        """Record the trial's results in order, as they arrived. A trial whose last result was a
        rung arrival is left to the rule (``replayed``: "promotion" waits there, get_job decides
        again); one that trained on was promoted; one that reached max_t ends."""
        tid, book = trial.trial_id, self._book
        arrived = False
        for t, score in self._result_history(trial):
            top = book.reached(tid, t)
            arrived = top >= 0
            if arrived:
                book.record(tid, top, score)
        entry = self._trials[tid]
        if trial.status in FINISHED or entry.rung < 0:
            return
        if entry.rung == len(book.milestones(tid)) - 1:
            self._rule.stop(book, tid)
            self._to_stop.append(tid)
        elif arrived:
            self._rule.replayed(book, tid)

    def _report_title(self) -> str:
        rule = self._rule
        return (f"{type(self).__name__} ({rule.name}): {rule.stopped} stopped, "
                f"{rule.paused} paused, {rule.promoted} promoted")

    # ---- state ----
    GEOMETRY = "(max_t, reduction_factor, variant, rung milestones)"

    def _geometry(self) -> list:
        return [self._max_t, self._eta, self._variant,
                [list(b.milestones) for b in self._book.brackets]]

    def _extra_state(self) -> dict:
        return {"added": self._added,
                "counters": [self._rule.stopped, self._rule.paused, self._rule.promoted]}

    def _set_extra_state(self, state: dict) -> None:
        self._added = int(state["added"])
        self._rule.stopped, self._rule.paused, self._rule.promoted = map(int, state["counters"])
        self._promoting = None

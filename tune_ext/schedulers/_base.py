"""The declared contract of every tune-ext scheduler: metric/mode/time_attr handling, Ray's trial
protocol around a rung book (``rungs.py``), and the hooks a scheduler implements. Restore and its
reconciliation live in ``restore.py``, once for every scheduler."""
from __future__ import annotations

import logging
import math
from typing import Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tune_ext.schedulers.restore import FINISHED, Restorable
from tune_ext.schedulers.rungs import RungBook, TrialEntry
from tune_ext.validate import MODES

logger = logging.getLogger(__name__)


# Ray's scheduler arguments: the same meaning under Ray's name, or what to do instead
RAY_NAMES = {"grace_period": "min_t"}
RAY_ONLY = {
    "stop_last_trials": "trials always stop at max_t here, as Ray's default stop_last_trials=True "
                        "does; drop the argument",
    "brackets": "use ASHAScheduler(brackets=...) for several brackets",
    "max_concurrent": "bound concurrency with resources (resources_per_trial), not the scheduler",
}


def ray_arguments(cls_name: str, min_t, ray_kwargs: dict, valid: tuple) -> int:
    """``min_t`` given as ours or as Ray's ``grace_period`` (not both); a TypeError that names
    ``cls_name`` for any other argument, with the closest valid one or what to do instead."""
    import difflib

    grace = ray_kwargs.pop("grace_period", None)
    for key in ray_kwargs:
        hint = RAY_ONLY.get(key)
        if hint is None:
            close = difflib.get_close_matches(key, valid + tuple(RAY_NAMES), n=1, cutoff=0.5)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"valid arguments: {', '.join(valid + tuple(RAY_NAMES))}")
        raise TypeError(f"{cls_name}() got an unexpected keyword argument {key!r}: {hint}")
    if grace is not None and min_t is not None:
        raise TypeError(f"{cls_name}() got both min_t and grace_period (Ray's name for min_t); "
                        f"give one")
    return grace if grace is not None else (1 if min_t is None else min_t)


class MetricScheduler(Restorable, TrialScheduler):
    """Base class of every tune-ext scheduler, as Ray's ``Searcher`` is of searchers: it reads
    ``time_attr`` and ``metric`` from results and turns the metric into a score where higher is
    better and every non-finite value (NaN, +inf, -inf) ranks last; it keeps the rung book
    (``self._book``, ``rungs.RungBook``) and Ray's trial protocol around it; and it declares below
    every hook a scheduler implements, with what Ray calls, what the book holds and what to return.
    A hook without a sensible default raises NotImplementedError.

    A subclass opens its brackets in the book in its constructor and implements
    ``_bracket_for_new_trial``, ``on_trial_result``, ``_catch_up`` and ``_replay``; restore (with
    or without saved state), reconciliation with the trials Ray hands back, the saved state and
    the defaults for trials that end, fail or come back are inherited (``restore.py``). See
    docs/schedulers.md, "Write your own scheduler", for a complete example.

    Args:
        time_attr: the result key that measures training progress (``training_iteration``).
        metric, mode: what to rank by, "min" or "max"; or None, given later by Ray
            (``set_search_properties``).
        max_t: the budget at which every trial stops (in ``time_attr`` units).
        reduction_factor: eta, the book's ranking factor (the top 1/eta of a rung continue).
    """

    # A rung decision must see every result one at a time: buffered results would let a trial
    # run past a rung (and record itself in the next one) before its PAUSE or STOP lands.
    _supports_buffered_results = False

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t=100, reduction_factor=3):
        super().__init__()
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a non-empty string, got {time_attr!r}")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"metric must be a non-empty string or None, got {metric!r}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._checked_start = False
        self._budget_told = False
        # the geometry: checked by the subclass, which knows its other arguments (brackets.py)
        self._max_t, self._eta = max_t, reduction_factor
        self._use_book(RungBook(reduction_factor))

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        # Ray's rule: refuse only a value given on both sides (constructor and tune.run)
        if (self._metric and metric) or (self._mode and mode):
            return False
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _require_metric(self) -> None:
        if not self._metric or not self._mode:
            raise ValueError(
                f"{type(self).__name__} needs metric and mode (one of {MODES}): pass them to the "
                f"scheduler or to tune.run / tune.TuneConfig; got metric={self._metric!r}, "
                f"mode={self._mode!r}")

    def _read(self, result: dict) -> tuple[float, float]:
        """(time, score) of a result; ValueError naming a missing key."""
        try:
            t = result[self._time_attr]
        except KeyError:
            raise ValueError(f"result has no time_attr {self._time_attr!r} "
                             f"(reported keys: {sorted(result)})") from None
        try:
            value = float(result[self._metric])
        except KeyError:
            raise ValueError(f"result has no metric {self._metric!r} "
                             f"(reported keys: {sorted(result)})") from None
        if value - value != 0:  # NaN or +-inf: rank last in either mode
            return t, -math.inf
        return t, value if self._mode == "max" else -value

    def _has_keys(self, result: Optional[dict]) -> bool:
        return bool(result) and self._time_attr in result and self._metric in result

    # A scheduler that pauses trials cannot run under a limit on *live* trials: Ray counts
    # paused trials as live, so N paused trials would stop the searcher for good.
    pauses_trials = True

    def _check_searcher(self, tune_controller) -> None:
        """First trial: refuse a concurrency limit we would stall, then hand max_t to a
        searcher that takes it (``set_budget``) so it learns which trials were stopped early.
        Walks Ray's wrappers (SearchGenerator, ConcurrencyLimiter) down to the searcher."""
        if self._budget_told:
            return
        self._budget_told = True
        chain, searcher = [], getattr(tune_controller, "search_alg", None)
        while searcher is not None:
            chain.append(searcher)
            searcher = getattr(searcher, "searcher", None)
        limit = next((s.max_concurrent for s in chain
                      if isinstance(getattr(s, "max_concurrent", None), int)
                      and s.max_concurrent > 0), None)
        if limit is not None and self.pauses_trials:
            raise ValueError(
                f"{type(self).__name__} pauses trials, and Ray counts paused trials against "
                f"max_concurrent_trials / ConcurrencyLimiter (limit {limit}): once {limit} trials "
                f"wait in a rung nothing would run again. Remove the limit and bound concurrency "
                f"with resources instead (resources_per_trial / tune.with_resources, or "
                f"ray.init(num_cpus=...)), or use ASHAScheduler(variant=\"stopping\"), which never "
                f"pauses.")
        for searcher in chain:
            if callable(getattr(searcher, "set_budget", None)):
                searcher.set_budget(self._time_attr, self._max_t)
                return

    # ---- the rung book, and the Ray trials it stands for ----
    def _use_book(self, book: RungBook) -> None:
        """Make ``book`` the scheduler's book (the constructor's is empty, with one ranking
        factor and ties by arrival; a subclass that ranks otherwise or restores passes its own)."""
        self._book = book
        self._trials: dict[str, TrialEntry] = book.trials   # where each trial stands
        self._objects: dict[str, Trial] = {}    # live Trial objects; not part of the saved state
        self._to_resume: list[str] = []         # paused trials to run again, in order
        self._to_stop: list[str] = []           # trials to stop before they run
        self._restoring: set[str] = set()       # saved trials Ray has not re-added yet
        self._restored = False                  # our saved state was loaded (set_state)
        self._unbooked: list[Trial] = []        # restored without our state: rebuilt first
        self._start_order: Optional[dict[str, int]] = None   # after a restore: join order
        self._resumed: dict[str, tuple] = {}    # paused trials resumed: (time, checkpoint path)

    def _pending(self, tune_controller) -> tuple[Optional[Trial], bool]:
        """(the PENDING trial to start next, whether any trial is RUNNING). Trials start in the
        order they joined the book: Ray adds trials in that order, but a restore hands them back
        in no fixed order (its snapshot comes from a set), and an asynchronous scheduler's
        decisions depend on the order results arrive. Trials the book never saw come after. A
        restored trial starts from its checkpoint: one whose checkpoint is gone is stopped
        (``_resumable``) and the next one starts."""
        while True:
            trial, busy = self._first_pending(tune_controller)
            if trial is None or self._resumable(trial, "the next trial starts instead"):
                return trial, busy

    def _first_pending(self, tune_controller) -> tuple[Optional[Trial], bool]:
        first, busy, rank = None, False, self._start_order
        best = math.inf
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                entry = self._trials.get(trial.trial_id)
                if entry is not None and entry.stopped:
                    continue     # queued for stopping (_to_stop): it never starts again
                if rank is None:
                    return trial, busy
                position = rank.get(trial.trial_id, len(rank))
                if position < best:
                    first, best = trial, position
            busy = busy or trial.status == Trial.RUNNING
        return first, busy

    def on_trial_add(self, tune_controller, trial: Trial):
        """Ray adds a trial (new, re-queued after a failure, or re-added by an experiment
        restore): it joins a bracket (``_bracket_for_new_trial``), or is reconciled with the saved
        book (``restore.py``), or rejoins its rung (``_rejoin``)."""
        self._require_metric()
        self._check_searcher(tune_controller)
        tid = trial.trial_id
        self._objects[tid] = trial
        entry = self._trials.get(tid)
        if entry is None:
            self._add_unknown(trial)
            return
        if tid in self._restoring:
            if self._reconcile(trial, entry):
                return
        else:
            self._rejoin(trial)   # re-queued after a failure (max_failures)
        if entry.alive and entry.waiting and trial.status == Trial.PENDING:
            # Paused in a rung: it stays paused until promoted (Ray re-adds it PENDING; the
            # controller files the trial under its status only after this hook).
            trial.set_status(Trial.PAUSED)

    def _stop_queued(self, tune_controller) -> None:
        """Stop the trials queued for stopping that are not running (a running one gets STOP on
        its next result)."""
        for tid in list(self._to_stop):
            trial = self._objects.get(tid)
            if trial is None or trial.status in FINISHED:
                self._to_stop.remove(tid)
            elif trial.status in (Trial.PAUSED, Trial.PENDING):
                self._to_stop.remove(tid)
                tune_controller.stop_trial(trial)

    def _resume_queued(self) -> Optional[Trial]:
        """The first paused trial queued for resuming that no longer waits in a rung."""
        for tid in list(self._to_resume):
            trial = self._objects.get(tid)
            if trial is None or trial.status != Trial.RUNNING:   # RUNNING: still saving its pause
                self._to_resume.remove(tid)
            if trial is not None and trial.status == Trial.PAUSED and \
                    not self._trials[tid].waiting and \
                    self._resumable(trial, "the scheduler goes on without it"):
                return trial
        return None

    # ---- resuming a paused trial: from the checkpoint Ray keeps for it ----
    def _checkpoint(self, trial: Trial) -> tuple[Optional[str], bool]:
        """(the path of the checkpoint Ray resumes the trial from, whether it is there); (None,
        True) for a trial without one (Ray restarts it from scratch, see docs)."""
        checkpoint = getattr(trial, "checkpoint", None)
        if checkpoint is None:
            return None, True
        try:
            from pyarrow.fs import FileType
            there = checkpoint.filesystem.get_file_info(checkpoint.path).type != FileType.NotFound
        except Exception:   # storage we cannot ask: let Ray try (a failure is reported then)
            there = True
        return checkpoint.path, there

    def _resumable(self, trial: Trial, instead: str) -> bool:
        """Whether a trial the scheduler is about to resume (PAUSED, or restored PENDING) can go
        on where it stopped. When the checkpoint Ray would load is gone, say so, naming the
        trial, the path and what the scheduler does ``instead``; the trial is stopped (its
        records stay: real measurements) and False returned."""
        path, there = self._checkpoint(trial)
        tid = trial.trial_id
        if path is None or tid not in self._trials:
            return True      # a new trial, or one without checkpoints: it starts from scratch
        if there:
            self._resumed[tid] = ((trial.last_result or {}).get(self._time_attr), path)
            return True
        entry = self._trials[tid]
        logger.error(
            "%s: trial %s was to resume from rung %d (%s=%s), but its checkpoint %s is missing: "
            "it cannot go on from where it stopped, so it is stopped (its results stay in the "
            "rungs) and %s. To keep such a trial, keep its checkpoints (CheckpointConfig("
            "num_to_keep=None), the default) and do not delete them while the experiment runs.",
            type(self).__name__, tid, entry.rung, self._time_attr,
            f"{self._book.milestones(tid)[entry.rung]:g}" if entry.rung >= 0 else "-", path,
            instead)
        self._ended(tid, stopped=True)
        self._to_stop.append(tid)
        return False

    def _failed_on_resume(self, trial: Trial) -> None:
        """A trial errored: if it had not reported a result since the scheduler resumed it from
        its checkpoint, say which checkpoint (it may be damaged) and what happens now."""
        resumed = self._resumed.pop(trial.trial_id, None)
        if resumed is None or (trial.last_result or {}).get(self._time_attr) != resumed[0]:
            return
        logger.error(
            "%s: trial %s failed after it was resumed from its checkpoint %s, before it reported "
            "a result: the checkpoint may be damaged (see the trial's error). It has left its "
            "rung and the scheduler goes on without it; to run it again, put back an intact "
            "checkpoint and resume the experiment with resume_errored=True.",
            type(self).__name__, trial.trial_id, resumed[1])

    # ---- the hooks a scheduler implements ----
    def _bracket_for_new_trial(self) -> int:
        """Ray added a trial the book does not know (or a rebuild replays one): return the index
        of the bracket it joins (``self._book.open_bracket`` returned it; a scheduler may open
        one here). The base then calls ``self._book.join(trial_id, bracket)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _bracket_for_new_trial")

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        """Ray hands over each result of a RUNNING trial, one at a time (no buffering): read it
        with ``self._read(result)`` (time, score: higher is better), record rung arrivals in the
        book (``self._book.reached``, ``record``, ``continues``; ``self._trials[trial_id]`` is the
        trial's ``TrialEntry``) and return ``CONTINUE``, ``PAUSE`` (the trial waits in a rung:
        ``record(..., wait=True)``) or ``STOP`` (``self._book.stop(trial_id)`` first). Return STOP
        once ``time_attr`` reaches ``self._max_t``, and for a trial whose entry is ``stopped`` (a
        restore may run it once more)."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_trial_result")

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        """Ray asks for a PENDING or PAUSED trial to run (idempotent until it runs). Default:
        rebuild the book first if a restore without saved state asked for it, stop the trials
        queued for stopping, resume those queued for resuming (``self._to_resume``), else start
        the next PENDING trial in join order. A scheduler that promotes paused trials overrides
        this and starts with ``_queued``."""
        return self._queued(tune_controller) or self._pending(tune_controller)[0]

    def _queued(self, tune_controller) -> Optional[Trial]:
        """What every decision starts with: rebuild the book if a restore without saved state
        asked for it, stop the trials queued for stopping, and return the first trial queued for
        resuming, or None."""
        if self._unbooked:
            self._rebuild()
        self._stop_queued(tune_controller)
        return self._resume_queued()

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        """Ray ended a RUNNING trial (its last result, or our STOP). Default: it leaves its rung
        for good; its records stay (real measurements)."""
        self._book.withdraw(trial.trial_id, forget=False, stopped=True)
        self._objects.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial: Trial):
        """A RUNNING trial failed. Default: it leaves its rung but may come back (``_rejoin``,
        when Ray re-queues it under ``max_failures``); a failure right after a resume is
        reported (``_failed_on_resume``)."""
        self._failed_on_resume(trial)
        self._book.withdraw(trial.trial_id, forget=False, stopped=False)

    def on_trial_remove(self, tune_controller, trial: Trial):
        """Ray removed a PAUSED or PENDING trial (we stopped it, or the user did). Default: as
        ``on_trial_complete``."""
        self._book.withdraw(trial.trial_id, forget=False, stopped=True)
        self._objects.pop(trial.trial_id, None)

    def _rejoin(self, trial: Trial) -> None:
        """A trial the book withdrew (an error) is back: re-queued after a failure, or resumed by
        an experiment restore (``resume_errored``). Default: it is alive again and re-enters the
        rung it was withdrawn from when it gets there (``self._book.revive``)."""
        if trial.status not in FINISHED:
            self._book.revive(trial.trial_id)

    def _catch_up(self, trial: Trial) -> None:
        """Experiment restore with saved state: a PENDING trial whose last result
        (``trial.last_result``) may hold a rung arrival the saved book lacks (Ray saves the book
        and the trial table a step apart). Record that arrival as ``on_trial_result`` would have
        (and ``wait`` there if it would have paused); return nothing."""
        raise NotImplementedError(f"{type(self).__name__} must implement _catch_up")

    def _replay(self, trial: Trial) -> None:
        """Experiment restore without saved state: the trial has joined its bracket; record its
        stored results into the book as ``on_trial_result`` would have decided them (the full
        history from ``self._result_history(trial)``, or its last result only), leaving it
        waiting in a rung, heading on, or stopped (``self._book.stop`` and queue it in
        ``self._to_stop``). Finished trials are withdrawn by the caller afterwards."""
        raise NotImplementedError(f"{type(self).__name__} must implement _replay")

    def _check_rebuildable(self, trial: Trial) -> None:
        """Experiment restore without saved state, before anything runs: raise a RuntimeError
        naming the state file (``self._state_location(trial)``) if ``_replay`` cannot rebuild the
        book from what Ray stored of this trial (``self._require_history`` does so for a
        ``_replay`` that needs every result). Default: every trial is rebuildable."""

    def _ended(self, trial_id: str, stopped: bool) -> None:
        """A restored trial Ray hands back finished while the saved book has it alive (Ray saves
        the two a moment apart): it leaves its rung, its records stay."""
        self._book.withdraw(trial_id, forget=False, stopped=stopped)

    def debug_string(self) -> str:
        """What Ray prints with the trial table: a title line (``_report_title``), then each
        bracket's rungs, their records and how many trials wait there."""
        lines = [self._report_title()]
        for b, bracket in enumerate(self._book.brackets):
            lines.append(f"  bracket {b}: " + " | ".join(
                f"t={r.milestone:g}: {len(r)} recorded, {r.num_waiting} waiting"
                for r in bracket.rungs))
        return "\n".join(lines)

    def _report_title(self) -> str:
        """The first line of ``debug_string``: the class, and the scheduler's counts if any."""
        return f"{type(self).__name__}:"

    # ---- state that survives a driver restart (saved and checked by restore.py) ----
    GEOMETRY = "(max_t, reduction_factor)"

    def _geometry(self) -> list:
        """The constructor arguments that shape the book, named by ``GEOMETRY``; saved state must
        match them. Default: ``[max_t, reduction_factor]``."""
        return [self._max_t, self._eta]

    def _extra_state(self) -> dict:
        """The scheduler's own JSON-able state beside the book (counters, bracket dealing)."""
        return {}

    def _set_extra_state(self, state: dict) -> None:
        """Put back what ``_extra_state`` saved (``state`` is the whole saved dict)."""

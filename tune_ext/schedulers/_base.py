"""What every tune-ext scheduler shares: metric/mode/time_attr handling, and the adapter from Ray's
calls to the rung book (restore, reconciliation, state save/load)."""
from __future__ import annotations

import logging
import math
import pickle
from typing import Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tune_ext.schedulers.rungs import RungBook, TrialEntry
from tune_ext.validate import MODES

logger = logging.getLogger(__name__)

STATE_FILES = "callback-states-*.pkl"
# 2: one rung book (rungs.py) for every scheduler; 1 had a structure per scheduler
STATE_VERSION = 2
FINISHED = (Trial.TERMINATED, Trial.ERROR)


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


class MetricScheduler(TrialScheduler):
    """Base class: reads ``time_attr`` and ``metric`` from results and turns the metric into a
    score where higher is better and every non-finite value (NaN, +inf, -inf) ranks last."""

    # A rung decision must see every result one at a time: buffered results would let a trial
    # run past a rung (and record itself in the next one) before its PAUSE or STOP lands.
    _supports_buffered_results = False

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None):
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
    # Subclasses make the book and say how a new trial joins it (_bracket_for_new_trial), how a
    # trial's stored results are replayed into it (_replay) and how a restored trial catches up
    # with its last result (_catch_up); the rest of Ray's protocol around a book lives here.
    GEOMETRY = "(max_t, min_t, reduction_factor)"

    def _use_book(self, book: RungBook) -> None:
        self._book = book
        self._trials: dict[str, TrialEntry] = book.trials   # where each trial stands
        self._objects: dict[str, Trial] = {}    # live Trial objects; not part of the saved state
        self._to_resume: list[str] = []         # paused trials to run again, in order
        self._to_stop: list[str] = []           # trials to stop before they run
        self._restoring: set[str] = set()       # saved trials Ray has not re-added yet
        self._restored = False                  # our saved state was loaded (set_state)
        self._unbooked: list[Trial] = []        # restored without our state: rebuilt first
        self._start_order: Optional[dict[str, int]] = None   # after a restore: join order

    def _pending(self, tune_controller) -> tuple[Optional[Trial], bool]:
        """(the PENDING trial to start next, whether any trial is RUNNING). Trials start in the
        order they joined the book: Ray adds trials in that order, but a restore hands them back
        in no fixed order (its snapshot comes from a set), and an asynchronous scheduler's
        decisions depend on the order results arrive. Trials the book never saw come after."""
        first, busy, rank = None, False, self._start_order
        best = math.inf
        for trial in tune_controller.get_trials():
            if trial.status == Trial.PENDING:
                if rank is None:
                    return trial, busy
                position = rank.get(trial.trial_id, len(rank))
                if position < best:
                    first, best = trial, position
            busy = busy or trial.status == Trial.RUNNING
        return first, busy

    def on_trial_add(self, tune_controller, trial: Trial):
        self._require_metric()
        self._check_searcher(tune_controller)
        tid = trial.trial_id
        self._objects[tid] = trial
        entry = self._trials.get(tid)
        if entry is None:
            self._add_unknown(trial)
            return
        if tid in self._restoring:
            # Experiment restore: reconcile the saved book with the trial Ray hands back.
            self._restoring.discard(tid)
            if entry.stopped and trial.status not in FINISHED:
                # We stopped it, but Ray's snapshot still has it unfinished (Ray does not mark a
                # trial stopped while PAUSED for its next snapshot): stop it again before it runs.
                trial.set_status(Trial.PAUSED)
                self._to_stop.append(tid)
                return
            if trial.status in FINISHED:
                self._ended(tid, stopped=trial.status == Trial.TERMINATED)
            elif entry.alive:
                # Ray saves the book with the trial table, but its uploads can leave the two a
                # step apart: a rung arrival in the trial's last result that the book lacks is
                # recorded now.
                if trial.status == Trial.PENDING:
                    self._catch_up(trial)
            else:
                # It had errored and is resumed (resume_errored): back to its rung.
                self._rejoin(trial)
                if entry.alive and trial.status == Trial.PENDING:
                    self._catch_up(trial)
        else:
            self._rejoin(trial)   # re-queued after a failure (max_failures)
        if entry.alive and entry.waiting and trial.status == Trial.PENDING:
            # Paused in a rung: it stays paused until promoted (Ray re-adds it PENDING; the
            # controller files the trial under its status only after this hook).
            trial.set_status(Trial.PAUSED)

    def _add_unknown(self, trial: Trial) -> None:
        tid = trial.trial_id
        if not self._restored:
            if self._unbooked or self._has_history(trial):
                # Experiment restore without our saved state: collect every trial, rebuild the
                # book from their stored results before any of them runs (choose_trial_to_run).
                self._check_rebuildable(trial)
                self._unbooked.append(trial)
                if trial.status == Trial.PENDING:
                    trial.set_status(Trial.PAUSED)   # filed under its status after this hook
                return
            self._check_not_a_silent_restart(trial)
        if trial.status in FINISHED:
            return                 # restored as finished and unknown to us: nothing to schedule
        self._book.join(tid, self._bracket_for_new_trial())
        if self._restored and trial.status == Trial.PENDING:
            # a trial Ray has and our saved book lacks: caught up from its last result
            self._catch_up(trial)
            if self._trials[tid].waiting:
                trial.set_status(Trial.PAUSED)

    def _ended(self, trial_id: str, stopped: bool) -> None:
        """A restored trial Ray hands back finished while the saved book has it alive (Ray saves
        the two a moment apart): it leaves its rung, its records stay."""
        self._book.withdraw(trial_id, forget=False, stopped=stopped)

    def _check_rebuildable(self, trial: Trial) -> None:
        """Raise if the book cannot be rebuilt from this trial's stored results."""

    def _rebuild(self) -> None:
        """Restore without saved state: every trial joins a bracket in trial order (creation
        order), and its stored results are replayed into the book (``_replay``). Trials that must
        train (alive, not waiting in a rung) are resumed; the rest stay paused."""
        trials, self._unbooked = sorted(self._unbooked, key=lambda t: t.trial_id), []
        self._start_order = {t.trial_id: i for i, t in enumerate(trials)}
        logger.warning(
            "%s: no saved scheduler state was restored (%s missing or unreadable); rebuilt the "
            "rungs from the stored results of the %d restored trials", type(self).__name__,
            self._state_location(trials[0]), len(trials))
        for trial in trials:
            tid = trial.trial_id
            self._book.join(tid, self._bracket_for_new_trial())
            if trial.status == Trial.ERROR:
                self._book.withdraw(tid, forget=False, stopped=False)
                continue
            self._replay(trial)
            if trial.status == Trial.TERMINATED:
                self._book.withdraw(tid, forget=False, stopped=True)
        self._to_resume.extend(t.trial_id for t in trials if self._trials[t.trial_id].alive
                               and not self._trials[t.trial_id].waiting)

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
                    not self._trials[tid].waiting:
                return trial
        return None

    # ---- restore without our saved state: what to say ----
    def _has_history(self, trial: Trial) -> bool:
        """A trial that ran before this driver: only an experiment restore adds such a trial."""
        return trial.status in FINISHED or self._has_keys(getattr(trial, "last_result", None))

    def _state_location(self, trial: Trial) -> str:
        """Where SchedulerStateCallback's state lives (for messages): Ray's callback-state file."""
        storage = getattr(trial, "storage", None)
        path = getattr(storage, "experiment_fs_path", None)
        return f"{path}/{STATE_FILES}" if path else STATE_FILES

    def _earlier_run(self, trial: Trial) -> tuple[str, list[str]]:
        """(experiment directory, saved-state files of earlier runs in it) for messages."""
        storage = getattr(trial, "storage", None)
        try:
            from pyarrow.fs import FileSelector
            infos = storage.storage_filesystem.get_file_info(
                FileSelector(storage.experiment_fs_path, allow_not_found=True))
        except Exception:    # no storage context (unit tests) or an unreachable filesystem
            return "", []
        return storage.experiment_fs_path, sorted(i.base_name for i in infos if i.base_name.startswith(
            ("experiment_state-", "callback-states-", "searcher-state-", "search_gen_state-")))

    def _unreadable_state(self, directory: str, files: list[str], what: str) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}: {directory} holds an earlier run of this experiment "
            f"({', '.join(files)}), but {what}: Ray could not read one of these files (see "
            f"'Failed to restore the run state' and the traceback above) and would start afresh. "
            f"Repair or delete the unreadable file and resume again (tune.run(resume=True) or "
            f"Tuner.restore; without {STATE_FILES} the scheduler rebuilds its rungs from the "
            f"trials' results), or start a new experiment under another name.")

    def _check_not_a_silent_restart(self, trial: Trial) -> None:
        """First trial of a run that was not restored, over an experiment directory that holds
        saved state: say so (Ray starts afresh when it cannot read its state; with
        SchedulerStateCallback that is an error, see state.py; a deliberate re-run under the
        same name is allowed)."""
        if self._checked_start:
            return
        self._checked_start = True
        directory, files = self._earlier_run(trial)
        if files:
            logger.warning(
                "%s: %s holds an earlier run of this experiment (%s) that this run does not "
                "continue; it starts afresh. If you meant to resume, Ray could not read that "
                "state: see 'Failed to restore the run state' above.", type(self).__name__,
                directory, ", ".join(files))

    def _knows(self, trial_id: str) -> bool:
        return trial_id in self._trials or any(t.trial_id == trial_id for t in self._unbooked)

    def verify_restored(self, trials: list) -> None:
        """Called by SchedulerStateCallback at the first step: an unfinished trial that ran before
        this driver and that this scheduler was never handed would run unscheduled (a guard; a
        restore that Ray gives up is caught from its log, see state.py)."""
        lost = [t for t in trials if t.status not in FINISHED
                and self._has_history(t) and not self._knows(t.trial_id)]
        if lost:
            directory, files = self._earlier_run(lost[0])
            raise self._unreadable_state(
                directory or "the experiment directory", files or [STATE_FILES],
                f"{len(lost)} of its trials never reached the scheduler")

    # ---- state that survives a driver restart: JSON-able plain data with a version ----
    def _geometry(self) -> list:
        """The constructor arguments that shape the book; saved state must match them."""
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _set_extra_state(self, state: dict) -> None:
        pass

    def get_state(self) -> dict:
        """The book, the queued stops and resumes, and the scheduler's own counters as JSON-able
        plain data, with a version (no Trial objects, no pickled attributes)."""
        return {"version": STATE_VERSION, "scheduler": type(self).__name__,
                "geometry": self._geometry(), "metric": self._metric, "mode": self._mode,
                "book": self._book.to_data(), "to_resume": list(self._to_resume),
                "to_stop": list(self._to_stop), **self._extra_state()}

    def set_state(self, state: dict) -> None:
        """Load ``get_state``'s output; ValueError naming the class for state that is not ours,
        of another version or geometry, or malformed."""
        name = type(self).__name__
        if not isinstance(state, dict) or "version" not in state:
            raise ValueError(f"{name}: the saved scheduler state is not a tune-ext scheduler state "
                             f"(got {type(state).__name__}); start a new experiment or put back "
                             f"the matching {STATE_FILES}")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"{name}: saved scheduler state has version {state['version']!r}, "
                             f"this tune-ext reads version {STATE_VERSION}; resume with the "
                             f"tune-ext that wrote it, or start a new experiment")
        missing = {"geometry", "metric", "mode", "book", "to_resume", "to_stop"} - set(state)
        if missing:
            raise ValueError(f"{name}: saved scheduler state lacks {sorted(missing)}; put back "
                             f"the matching {STATE_FILES} or start a new experiment")
        if state["geometry"] != self._geometry():
            raise ValueError(f"{name}: saved state is for {self.GEOMETRY} = "
                             f"{tuple(state['geometry'])}, this scheduler has "
                             f"{tuple(self._geometry())}; construct it with the experiment's "
                             f"arguments")
        try:
            book = RungBook.from_data(state["book"])
        except ValueError as e:
            raise ValueError(f"{name}: saved scheduler state: {e}") from None
        if (book.eta, book.ties_by_arrival) != (self._book.eta, self._book.ties_by_arrival):
            raise ValueError(f"{name}: saved rung book ranks with reduction_factor={book.eta}, "
                             f"ties_by_arrival={book.ties_by_arrival}; this scheduler with "
                             f"{self._book.eta}, {self._book.ties_by_arrival}")
        self._metric = self._metric or state["metric"]
        self._mode = self._mode or state["mode"]
        self._use_book(book)
        self._to_resume, self._to_stop = list(state["to_resume"]), list(state["to_stop"])
        self._set_extra_state(state)
        self._restoring = set(book.trials)
        self._start_order = {tid: i for i, tid in enumerate(book.trials)}
        self._restored = True

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

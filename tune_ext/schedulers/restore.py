"""Restore for every tune-ext scheduler: reconcile a saved rung book with the trials Ray hands
back, rebuild the book from the trials' stored results when no state was saved, and the versioned
plain-data state itself.

``Restorable`` is mixed into ``MetricScheduler`` (``_base.py``) and works only through what that
base declares: the book (``_book``, ``_trials``, the queues of ``_use_book``) and the hooks
``_bracket_for_new_trial``, ``_catch_up``, ``_rejoin``, ``_replay``, ``_ended``,
``_check_rebuildable`` and ``_geometry``. A scheduler that implements those hooks gets all of this
without a line of its own.
"""
from __future__ import annotations

import logging
import pickle
from typing import Optional

from ray.tune.experiment import Trial

from tune_ext.schedulers.rungs import RungBook, TrialEntry

logger = logging.getLogger(__name__)

STATE_FILES = "callback-states-*.pkl"
# 2: one rung book (rungs.py) for every scheduler; 1 had a structure per scheduler
STATE_VERSION = 2
FINISHED = (Trial.TERMINATED, Trial.ERROR)


class Restorable:
    """The restore half of ``MetricScheduler``: what happens when Ray re-adds the trials of an
    experiment restore (``on_trial_add`` hands such trials here), and ``get_state`` /
    ``set_state``, which ``SchedulerStateCallback`` saves with every experiment checkpoint."""

    # ---- experiment restore with our saved state: reconcile the book with Ray's trials ----
    def _reconcile(self, trial: Trial, entry: TrialEntry) -> bool:
        """A trial of the saved book that Ray hands back (Ray saves the book with its trial
        table, a moment apart). Returns True when the trial was queued for stopping (nothing
        else to do)."""
        tid = trial.trial_id
        self._restoring.discard(tid)
        if entry.stopped and trial.status not in FINISHED:
            # We stopped it, but Ray's snapshot still has it unfinished (Ray does not mark a
            # trial stopped while PAUSED for its next snapshot): stop it again before it runs.
            trial.set_status(Trial.PAUSED)
            self._to_stop.append(tid)
            return True
        if trial.status in FINISHED:
            self._ended(tid, stopped=trial.status == Trial.TERMINATED)
        elif entry.alive:
            # Ray's uploads can leave the book and the trial table a step apart: a rung arrival
            # in the trial's last result that the book lacks is recorded now.
            if trial.status == Trial.PENDING:
                self._catch_up(trial)
        else:
            # It had errored and is resumed (resume_errored): back to its rung.
            self._rejoin(trial)
            if entry.alive and trial.status == Trial.PENDING:
                self._catch_up(trial)
        return False

    def _add_unknown(self, trial: Trial) -> None:
        """A trial the book does not know: a new one, or one of a restore without saved state."""
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

    # ---- experiment restore without our saved state: rebuild from the stored results ----
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

    def _result_history(self, trial: Trial) -> Optional[list[tuple[float, float]]]:
        """(time, score) of every result of the trial, in order, from what Ray stores with it: the
        result of each checkpoint it reported, and its last result. None when these miss a
        training iteration up to the last one (then a lower rung's score is unknown); for a
        scheduler whose ``_replay`` needs every result (see ``_check_rebuildable``)."""
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

    def _require_history(self, trial: Trial) -> None:
        """``_check_rebuildable`` for a scheduler that replays every result: raise, naming the
        state file and the trial, when Ray kept only some of them."""
        if self._result_history(trial) is None:
            raise RuntimeError(
                f"{type(self).__name__}: this experiment restore has no saved scheduler state "
                f"({self._state_location(trial)} missing or unreadable), and the rungs cannot be "
                f"rebuilt: Ray stored only some results of trial {trial.trial_id} (a result is "
                f"kept with each checkpoint), so its scores at the lower rungs are unknown. Put "
                f"the file back and resume again; to make a rebuild possible, report a "
                f"checkpoint with every result and keep them (CheckpointConfig(num_to_keep="
                f"None), the default); or start a new experiment under another name.")

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

"""FDS's guard against lost inner runs: stop them early, go back to the best hyperparameters, and
shrink the steps that led there (a backtracking line search on the outer loop).

An outer step of FDS is a whole training run; an outer update that overshoots (a learning rate too
high for the horizon) can make the next run diverge or collapse, and sign descent alone would go
on from there. The rule, checked at every ``watch`` of the run (``engine.forward_run``; FDSTrainable
watches at each epoch end) and at its end:

- **diverged**: the validation loss is NaN or infinite;
- **collapsed**: the validation loss is above ``collapse_ratio`` x the *best run*'s validation loss
  at the same point of its run. The best run is the completed run with the lowest final
  validation loss so far; "the same point" is the same fraction of the run, and the best run's
  loss there is the one it had at its last watch at or before that fraction (runs of different
  lengths compare at their fractions, the schedules being fractions of the run too). Before any
  run has completed, and for a run with exactly the best run's hyperparameters (nothing else to
  compare it with), only divergence counts.

A lost run stops at once. The hyperparameters go back to the best run's, and every entry on which
the lost run's hyperparameters differed from them has its outer step size multiplied by
``shrink`` (``OuterOptimizer.shrink``); that counts as one backtrack. When there is nothing to go
back to (the first run diverged, or the best hyperparameters themselves diverged), ``backtrack``
returns None: the caller ends the search.

Example::

    import torch
    from tune_ext.hypergrad.outer import SignDescent
    from tune_ext.hypergrad.safeguard import Safeguard
    guard, outer = Safeguard(collapse_ratio=2.0), SignDescent({"lr": 0.1})
    good = {"lr": torch.tensor([0.1])}
    guard.begin(good)
    guard.finish(0.5)                           # None: completed, the best run so far
    watch = guard.begin({"lr": torch.tensor([5.0])})
    watch(0.25, float("nan"))                   # True: diverged a quarter into the run
    guard.backtrack(outer)["lr"]                # tensor([0.1000]); lr's outer step is halved
"""
from __future__ import annotations

import bisect
import math

import torch

from tune_ext.hypergrad.outer import OuterOptimizer

STATE_VERSION = 1
DIVERGED, COLLAPSED = "diverged", "collapsed"


def same_hparams(a: dict, b: dict) -> bool:
    """Whether two hyperparameter dicts hold the same names and values."""
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


class Safeguard:
    """Detects lost inner runs, remembers the best one, backtracks (see the module docstring).

    One run: ``watch = begin(hparams)``, then ``watch(fraction, val_loss)`` at each check (True:
    stop, the run is lost), then either ``finish(final val_loss)`` for a run that reached its end
    or, for a lost one, ``backtrack(outer)``. Runs of the same hyperparameters with other seeds
    (an ensemble) are judged by ``check`` in between, which records nothing.

    collapse_ratio: a run whose validation loss exceeds this multiple (> 1) of the best run's at
        the same fraction of the run has collapsed; None checks divergence only.
    shrink: factor in (0, 1) for the outer step sizes of the entries a backtrack undoes.
    """

    def __init__(self, collapse_ratio: float | None = 2.0, shrink: float = 0.5):
        if collapse_ratio is not None and not (math.isfinite(collapse_ratio) and collapse_ratio > 1):
            raise ValueError(f"collapse_ratio must be a finite number > 1 or None, got {collapse_ratio!r}")
        if not 0 < shrink < 1:
            raise ValueError(f"shrink must be in (0, 1), got {shrink!r}")
        self.collapse_ratio, self.shrink = collapse_ratio, float(shrink)
        self.best: dict | None = None  # {"hparams", "val_loss", "curve": [(fraction, loss), ...]}
        self.backtracks = 0
        self.reason: str | None = None  # why the current run is lost (None: it is not)
        self._run: dict | None = None

    def begin(self, hparams: dict):
        """Start a run with ``hparams``; returns its watch ``(fraction done, val loss) -> lost?``."""
        compare = self.collapse_ratio is not None and self.best is not None \
            and not same_hparams(hparams, self.best["hparams"])
        self._run = {"hparams": {n: h.detach().clone() for n, h in hparams.items()}, "curve": [],
                     "compare": compare}
        self.reason = None

        def watch(fraction: float, loss: float) -> bool:
            self._run["curve"].append((float(fraction), float(loss)))
            self.reason = self._judge(fraction, loss, compare)
            return self.reason is not None

        return watch

    def _judge(self, fraction, loss, compare) -> str | None:
        if not math.isfinite(loss):
            return DIVERGED
        if compare:
            curve = self.best["curve"]
            i = bisect.bisect_right([f for f, _ in curve], fraction + 1e-9) - 1
            if i >= 0 and loss > self.collapse_ratio * curve[i][1]:
                return COLLAPSED
        return None

    def check(self, fraction: float, loss: float) -> bool:
        """Judge another run with the current run's hyperparameters (an ensemble member: another
        seed) by the same rule, without recording it; True: it is lost (``reason`` says why)."""
        self.reason = self._judge(fraction, loss, self._need_run()["compare"])
        return self.reason is not None

    def finish(self, val_loss: float) -> str | None:
        """The end of the run: its last check. Returns why it is lost, or None after recording it
        (it becomes the best run if its final loss is the lowest so far)."""
        run = self._need_run()
        self.reason = self._judge(1.0, val_loss, run["compare"])
        run["curve"].append((1.0, float(val_loss)))
        if self.reason is None and (self.best is None or val_loss < self.best["val_loss"]):
            self.best = {"hparams": run["hparams"], "val_loss": float(val_loss),
                         "curve": list(run["curve"])}
        return self.reason

    def backtrack(self, outer: OuterOptimizer) -> dict | None:
        """After a lost run: the best hyperparameters, with the step sizes of the entries that
        differ from them shrunk in ``outer`` (one backtrack); None if there is nothing to go back
        to (no completed run yet, or the lost run had the best hyperparameters)."""
        run = self._need_run()
        if self.best is None or same_hparams(run["hparams"], self.best["hparams"]):
            return None
        best = self.best["hparams"]
        outer.shrink({n: run["hparams"][n] != best[n] for n in best}, self.shrink)
        self.backtracks += 1
        return {n: h.clone() for n, h in best.items()}

    def _need_run(self) -> dict:
        if self._run is None:
            raise RuntimeError("call begin(hparams) before finish() or backtrack()")
        return self._run

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "best": self.best, "backtracks": self.backtracks}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"safeguard state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}: it was saved by another version of tune-ext")
        self.best, self.backtracks = state["best"], state["backtracks"]
        self._run, self.reason = None, None

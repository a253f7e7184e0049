"""Argument checks that name the argument and the rule, shared by every part of tune-ext.

Each check returns the value (converted where it says so) or raises
``ValueError("<name> must be <rule>, got <value>")``; ``name`` is what the message calls the
argument (``"max_t"``, ``"config['lr_0']"``, ``"Task 'digits': reference"``). No Ray or torch
import: the pure modules (brackets, rungs, hypergrad) use it too.

Example::

    from tune_ext.validate import one_of, positive

    positive("max_t", 81)                     # -> 81
    one_of("variant", "promotion", ("promotion", "stopping"))
    # one_of("variant", "promote", ...) -> ValueError: variant must be one of promotion, stopping;
    #                                      got 'promote'; did you mean 'promotion'?
"""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Iterable, Sequence

MODES = ("min", "max")  # Ray Tune's metric modes


def did_you_mean(word: Any, choices: Iterable) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def finite_number(name: str, value: Any):
    if not is_finite_number(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def positive(name: str, value: Any):
    if not is_finite_number(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def non_negative(name: str, value: Any):
    if not is_finite_number(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def at_least(name: str, value: Any, low):
    if not is_finite_number(value) or value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def in_interval(name: str, value: Any, low, high, low_closed: bool = True,
                high_closed: bool = True):
    """``value`` in the interval from ``low`` to ``high`` (each end closed or open)."""
    inside = is_finite_number(value) and (low <= value if low_closed else low < value) and (
        value <= high if high_closed else value < high)
    if not inside:
        raise ValueError(f"{name} must be in {'[' if low_closed else '('}{low}, {high}"
                         f"{']' if high_closed else ')'}, got {value!r}")
    return value


def positive_int(name: str, value: Any) -> int:
    """A whole number >= 1 (``3.0`` is accepted as 3), returned as an int."""
    if not is_finite_number(value) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def int_at_least(name: str, value: Any, low: int, allow_none: bool = False):
    """An int (not a bool) >= ``low``; ``None`` too where ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return int(value)


def one_of(name: str, value: Any, choices: Sequence):
    """``value`` if it is one of ``choices``, else the choices and the closest one."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}"
                         f"{did_you_mean(value, choices)}")
    return value


def min_or_max(name: str, value: Any) -> str:
    """A metric mode: one of :data:`MODES`."""
    if value not in MODES:
        raise ValueError(f"{name} must be 'min' or 'max', got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def saved_version(owner: str, where: str, kind: str, state: Any, version: int,
                  remedy: str) -> dict:
    """Saved state (plain data with a ``"version"``) of this tune-ext's ``version``.

    Args:
        owner: the class that loads it (messages start with it); where: the file or "the saved
        ... state"; kind: what it should be ("searcher state"); remedy: what to do when it is not
        one at all.
    """
    if not isinstance(state, dict) or "version" not in state:
        raise ValueError(f"{owner}: {where} is not a tune-ext {kind} (got "
                         f"{type(state).__name__}); {remedy}")
    if state["version"] != version:
        raise ValueError(f"{owner}: {where} has version {state['version']!r}, this tune-ext reads "
                         f"version {version}; resume with the tune-ext that wrote it, or start a "
                         f"new experiment under another name")
    return state


__all__ = ["MODES", "at_least", "did_you_mean", "finite_number", "flag", "in_interval",
           "int_at_least", "is_finite_number", "min_or_max", "non_negative", "one_of", "positive",
           "positive_int", "saved_version"]

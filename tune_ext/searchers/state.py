"""A searcher's saved state: versioned JSON-able plain data, checked on load.

A searcher saves what it was told and what it proposed, never its model: the settings that shape
the model (metric, mode, seed, time_attr, max_t and the model's own arguments), the search space's
description, the points still to evaluate, and the *events* in the order they happened::

    ["suggest", trial_id, params, fixed_keys]   # internal coordinates; the keys that were fixed
    ["result", trial_id, step, value]           # an intermediate result (budget, metric)
    ["complete", trial_id, outcome, step, value]

A restore builds a fresh model from the seed and replays the events through it: with the same
optuna/hpbandster/numpy the model (and its random streams) ends exactly where the saved one was,
so the next suggestions are the ones the uninterrupted searcher would make. The file Ray names
``searcher-state-*.pkl`` holds this data as JSON text.
"""
from __future__ import annotations

import json
import math
from typing import Any

from tune_ext.validate import saved_version

STATE_VERSION = 1
OUTCOMES = COMPLETE, PRUNED, FAIL = "complete", "pruned", "fail"
EVENTS = {"suggest": 4, "result": 4, "complete": 5}  # event kind -> its length
PLAIN_TYPES = (type(None), bool, int, float, str)


def encode_value(x: float | None):
    """A metric value as JSON-able data: non-finite values as strings (JSON has no NaN)."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


def decode_value(x) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ValueError(f"a metric value is {x!r}")
    return float(x)


def is_plain(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip unchanged (tuples do not: they come back as
    lists)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, PLAIN_TYPES):
        return True
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def signature(value: Any) -> Any:
    """``value`` if it is plain data, else a stable description of it (type and qualified name,
    never a memory address), so a saved setting can be compared in another process."""
    if is_plain(value):
        return value
    if isinstance(value, (list, tuple)):
        return {"<sequence>": type(value).__name__, "items": [signature(v) for v in value]}
    if isinstance(value, dict):
        return {"<dict>": [[signature(k), signature(v)] for k, v in value.items()]}
    name = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"<{module}.{name}>" if name else f"<{type(value).__module__}." \
                                             f"{type(value).__qualname__} instance>"


def dumps(state: dict) -> str:
    return json.dumps(state, allow_nan=False)


def check(state: Any, owner: str, where: str) -> dict:
    """``state`` if it is a ``owner`` state of this version; ValueError naming ``where`` (the file,
    or "the saved searcher state") for another version, another searcher or a malformed shape."""
    saved_version(owner, where, "searcher state", state, STATE_VERSION,
                  "put back the experiment's searcher-state-*.pkl or start a new experiment under "
                  "another name")
    if state.get("searcher") != owner:
        raise ValueError(f"{owner}: {where} is the state of a {state.get('searcher')!r}, not of a "
                         f"{owner}; restore it with the searcher the experiment ran")
    try:
        _check_shape(state)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{owner}: {where} is malformed ({type(e).__name__}: {e}); put back an "
                         f"intact copy or start a new experiment under another name") from None
    return state


def _check_shape(state: dict) -> None:
    def expect(ok, what):
        if not ok:
            raise ValueError(what)

    missing = {"settings", "model", "space", "points", "events"} - set(state)
    expect(not missing, f"lacks {sorted(missing)}")
    expect(isinstance(state["settings"], dict) and {"metric", "mode", "seed", "time_attr", "max_t"}
           <= set(state["settings"]), "settings lack metric/mode/seed/time_attr/max_t")
    expect(isinstance(state["model"], dict), "model settings are not a dict")
    expect(state["space"] is None or isinstance(state["space"].get("params"), list),
           "the space has no params")
    expect(isinstance(state["points"], list) and all(isinstance(p, dict)
                                                     for p in state["points"]),
           "points are not a list of dicts")
    expect(isinstance(state["events"], list), "events are not a list")
    for i, event in enumerate(state["events"]):
        expect(isinstance(event, list) and event and EVENTS.get(event[0]) == len(event),
               f"event {i} is {event!r}")
        expect(isinstance(event[1], str), f"event {i} has trial id {event[1]!r}")
        if event[0] == "suggest":
            expect(isinstance(event[2], dict) and isinstance(event[3], list)
                   and set(event[3]) <= set(event[2]), f"event {i} is {event!r}")
        elif event[0] == "result":
            expect(isinstance(event[2], (int, float)), f"event {i} has step {event[2]!r}")
            decode_value(event[3])
        else:
            expect(event[2] in OUTCOMES, f"event {i} has outcome {event[2]!r}")
            decode_value(event[4])

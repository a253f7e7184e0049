"""The benchmark harness: tasks, method registry, runner, regret, statistics, plots and CLI.

The public names load on first use (PEP 562), so that a command that needs only part of the
harness (``tune-ext-plot``, the argument checks) does not import Ray first.
"""
import importlib

_WHERE = {"METHODS": "methods", "Method": "methods", "get_methods": "methods",
          "IncumbentTracker": "regret", "RegretCallback": "regret", "Budget": "budget",
          "RunRecord": "record", "RunOptions": "runner", "run_benchmark": "runner",
          "TASKS": "tasks", "Task": "tasks", "get_task": "tasks", "sgd_task": "tasks"}

__all__ = ["METHODS", "TASKS", "Budget", "IncumbentTracker", "Method", "RegretCallback", "RunOptions",
           "RunRecord", "Task", "get_methods", "get_task", "run_benchmark", "sgd_task"]


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})

"""Ray Tune trial schedulers: SHA, paper-exact Hyperband, ASHA (promotion and stopping), adaptive ASHA,
and ``MetricScheduler``, the base class to write another (docs/schedulers.md).

The names below load on first use, so that the pure modules (``brackets``, ``rungs``,
``ranking``) import without Ray.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_MODULE_OF = {"ASHAScheduler": "asha", "AdaptiveASHAScheduler": "adaptive",
              "HyperbandScheduler": "hyperband", "MetricScheduler": "_base",
              "SchedulerStateCallback": "state",
              "SuccessiveHalvingScheduler": "sha", "hyperband_brackets": "brackets"}

__all__ = ["ASHAScheduler", "AdaptiveASHAScheduler", "HyperbandScheduler", "MetricScheduler",
           "SchedulerStateCallback",
           "SuccessiveHalvingScheduler",
           "hyperband_brackets"]

if TYPE_CHECKING:
    from tune_ext.schedulers._base import MetricScheduler
    from tune_ext.schedulers.adaptive import AdaptiveASHAScheduler
    from tune_ext.schedulers.asha import ASHAScheduler
    from tune_ext.schedulers.brackets import hyperband_brackets
    from tune_ext.schedulers.hyperband import HyperbandScheduler
    from tune_ext.schedulers.sha import SuccessiveHalvingScheduler
    from tune_ext.schedulers.state import SchedulerStateCallback


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

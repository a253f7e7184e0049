"""Benchmark tasks: what a trial trains, the search space, the metrics, the horizon and the reference.

A task is any Ray Tune trainable with a search space: ``Task(name, trainable, space, max_t, ...)``.
The built-in tasks (``TASKS``) are made by ``sgd_task``: ``SupervisedTrainable`` on a named
dataset and model, searched over the FDS paper's SGD schedule (Micaelli & Storkey 2021, section
5.4: learning rates over equal windows of the run, momentum and weight decay, each over a wide
range); they also carry the ``FDSTrainable`` config that the gradient-based methods need.
"""
from __future__ import annotations

import importlib
import math
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

MODES = ("min", "max")


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Args:
        name: the task's name (output folders, summary.json).
        trainable: the Ray Tune trainable every black-box method runs (a function or a
            ``tune.Trainable`` class); it reports ``metric`` and ``test_metric`` each iteration.
        space: the search space (Ray Tune domains, plus fixed values) every black-box method
            samples. A ``seed`` key is added per benchmark seed.
        max_t: the training horizon in ``training_iteration``s: schedulers stop trials there.
        metric, mode: what methods optimise and the incumbent is chosen by (validation).
        test_metric: what regret is measured on (the incumbent's test score, same ``mode``).
        reference: the best known ``test_metric``, as a number; or leave it None and give
            ``reference_path``, a JSON file written by the reference command (built-in tasks
            store theirs in the package).
        reference_path: see ``reference``.
        reference_grid: configurations the reference command trains (each with ``seeds``) when
            computing the reference: the best mean ``test_metric`` becomes the reference.
        target_regret: the regret a method must reach to count as "reached" (time to target).
        default_budget_s: wall-clock seconds per method and seed when the user gives none.
        trainable_kwargs: keyword arguments every trial's trainable gets through
            ``tune.with_parameters`` (e.g. ``model_fn``, ``data``, ``loss_fn`` of your own model;
            wrapped when the run starts, so nothing is put into Ray before then).
        gradient_config: the ``FDSTrainable`` config of this task (without the hyperparameter
            keys), or None when gradient-based methods cannot run on it.
        n_lr_windows: learning-rate windows the gradient methods learn.
        extra_space: hyperparameters gradients cannot learn (Ray domains over ``FDSTrainable``
            config keys, e.g. ``{"batch_size": tune.choice([64, 128]), "model_kwargs":
            {"width": tune.choice([16, 32])}}``), which the hybrid methods (``asha-fds``) search
            next to FDS's starting schedule; None: only the starting schedule.
        description: one line for the console.

    Regret is ``reference - test`` in mode "max" and ``test - reference`` in mode "min".

    Example::

        from ray import tune
        from tune_ext.benchmark import Task

        def train(config):
            for step in range(1, 11):
                score = 1 - (config["x"] - 0.3) ** 2 - 1 / step
                tune.report({"val": score, "test": score, "training_iteration": step})

        task = Task("parabola", trainable=train, space={"x": tune.uniform(0, 1)}, max_t=10,
                    metric="val", mode="max", test_metric="test", reference=0.9,
                    target_regret=0.05)
    """

    name: str
    trainable: Any
    space: dict
    max_t: int
    metric: str = "val_acc"
    mode: str = "max"
    test_metric: str = "test_acc"
    reference: Optional[float] = None
    reference_path: Optional[str] = None
    reference_grid: tuple = ()
    target_regret: float = 0.01
    default_budget_s: float = 20.0
    trainable_kwargs: Optional[dict] = None
    gradient_config: Optional[dict] = None
    n_lr_windows: int = 0
    extra_space: Optional[dict] = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"Task name must be a non-empty string without '/', got {self.name!r}")
        if self.trainable is None:
            raise ValueError(f"Task {self.name!r}: trainable is required (a function or tune.Trainable)")
        if not isinstance(self.space, dict):
            raise ValueError(f"Task {self.name!r}: space must be a dict of Ray Tune domains, "
                             f"got {type(self.space).__name__}")
        if isinstance(self.max_t, bool) or not isinstance(self.max_t, int) or self.max_t < 1:
            raise ValueError(f"Task {self.name!r}: max_t must be an int >= 1, got {self.max_t!r}")
        if self.mode not in MODES:
            raise ValueError(f"Task {self.name!r}: mode must be one of {MODES}, got {self.mode!r}")
        for key in ("metric", "test_metric"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"Task {self.name!r}: {key} must be a non-empty string")
        if self.reference is not None and not finite_number(self.reference):
            raise ValueError(f"Task {self.name!r}: reference must be a finite number, got "
                             f"{self.reference!r}")
        if not finite_number(self.target_regret) or self.target_regret < 0:
            raise ValueError(f"Task {self.name!r}: target_regret must be finite and >= 0, got "
                             f"{self.target_regret!r}")
        if not finite_number(self.default_budget_s) or self.default_budget_s <= 0:
            raise ValueError(f"Task {self.name!r}: default_budget_s must be finite and > 0")
        object.__setattr__(self, "reference_grid", tuple(dict(c) for c in self.reference_grid))

    def runnable(self, trainable=None):
        """``trainable`` (default: the task's) as Ray Tune runs it: with ``trainable_kwargs``
        attached through ``tune.with_parameters`` (needs a running Ray)."""
        trainable = trainable or self.trainable
        if not self.trainable_kwargs:
            return trainable
        from ray import tune

        return tune.with_parameters(trainable, **self.trainable_kwargs)

    @property
    def epochs(self) -> int:
        """The horizon (``max_t``); built-in tasks train one epoch per iteration."""
        return self.max_t

    def search_space(self) -> dict:
        """The one search space every black-box method samples."""
        return dict(self.space)

    def regret(self, test_score: float) -> float:
        """How far ``test_score`` is from the reference (>= 0 when at most as good)."""
        sign = 1.0 if self.mode == "max" else -1.0
        return sign * (self.reference_value() - test_score)

    def reference_value(self) -> float:
        """The reference number: ``reference``, else the one stored at the reference path."""
        if self.reference is not None:
            return float(self.reference)
        from tune_ext.benchmark.reference import load_reference

        return float(load_reference(self)["reference"])


def finite_number(x) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sgd_task(name: str, dataset: Optional[str] = None, model: Optional[str] = None,
             epochs: int = 20, batch_size: int = 64, *, model_fn: Optional[Callable] = None,
             data=None, loss_fn: Optional[Callable] = None, n_lr_windows: int = 3,
             lr_range=(1e-3, 1.0), momentum_range=(0.0, 0.99), weight_decay_range=(1e-6, 1e-2),
             model_kwargs: Optional[dict] = None, extra_space: Optional[dict] = None,
             **task_kwargs) -> Task:
    """A task that trains a model with SGD, searched over the SGD schedule: a built-in ``dataset``
    and ``model`` by name, or your own ``model_fn`` (``config -> nn.Module``), ``data`` (``{"train",
    "val", "test"}``) and optional ``loss_fn``, as the trainables take them.

    Black-box methods run ``SupervisedTrainable`` over ``lr_0 .. lr_{k-1}`` (loguniform in
    ``lr_range``), ``momentum`` (uniform) and ``weight_decay`` (loguniform); the gradient methods
    learn the same windows with ``FDSTrainable``. The reference grid is the FDS paper's Appendix F
    one (``reference.SGD_GRID``). ``extra_space``: see ``Task`` (domains over the trainables'
    config keys, e.g. ``batch_size``, ``model_kwargs``).
    """
    from ray import tune

    from trainables import SupervisedTrainable
    from tune_ext.benchmark.reference import sgd_grid

    own = {k: v for k, v in (("model_fn", model_fn), ("data", data), ("loss_fn", loss_fn)) if v is not None}
    if own and (dataset or model):
        raise ValueError(f"sgd_task {name!r}: give a built-in dataset and model by name, or your own "
                         f"model_fn and data, not both")
    if not own and not (dataset and model):
        raise ValueError(f"sgd_task {name!r} needs dataset= and model= (built-in names) or "
                         f"model_fn= and data= (your own)")
    if own and not (model_fn and data is not None):
        raise ValueError(f"sgd_task {name!r}: your own model needs both model_fn= and data=")
    fixed = {"epochs": epochs, "batch_size": batch_size}
    if not own:
        fixed.update(dataset=dataset, model=model)
    if own:
        task_kwargs["trainable_kwargs"] = own
    if model_kwargs:
        fixed["model_kwargs"] = dict(model_kwargs)
    space = {**fixed, **{f"lr_{i}": tune.loguniform(*lr_range) for i in range(n_lr_windows)},
             "momentum": tune.uniform(*momentum_range),
             "weight_decay": tune.loguniform(*weight_decay_range)}
    gradient = {k: v for k, v in fixed.items() if k != "epochs"}
    return Task(name=name, trainable=SupervisedTrainable, space=space, max_t=epochs,
                reference_grid=tuple({**fixed, **c} for c in sgd_grid(n_lr_windows)),
                gradient_config=gradient, n_lr_windows=n_lr_windows, extra_space=extra_space,
                **task_kwargs)


def _builtin(name: str, *args, **kwargs) -> Task:
    from tune_ext.benchmark.reference import packaged_reference

    return sgd_task(name, *args, reference_path=packaged_reference(name), **kwargs)


def _choices(**kwargs):
    from ray import tune

    return {k: ({n: tune.choice(v) for n, v in c.items()} if isinstance(c, dict) else tune.choice(c))
            for k, c in kwargs.items()}


_BUILTIN: dict[str, Callable[[], Task]] = {
    "mnist1d": lambda: _builtin(
        "mnist1d", "mnist1d", "cnn1d", epochs=20, batch_size=128, target_regret=0.02,
        default_budget_s=35.0,
        extra_space=_choices(batch_size=[32, 64, 128, 256], model_kwargs={"channels": [16, 32, 64]}),
        description="MNIST-1D (generated locally), 1D CNN of 7.6k parameters, 20 epochs; CPU"),
    "digits": lambda: _builtin(
        "digits", "digits", "mlp", epochs=20, batch_size=64, default_budget_s=15.0,
        extra_space=_choices(batch_size=[32, 64, 128], model_kwargs={"hidden": [[64], [128], [256]]}),
        description="scikit-learn's 8x8 digits, MLP 64-128-10, 20 epochs; CPU, bundled data"),
    "cifar10": lambda: _builtin(
        "cifar10", "cifar10", "wrn-16-1", epochs=50, batch_size=128, n_lr_windows=7,
        default_budget_s=3600.0,
        description="CIFAR-10, WRN-16-1, 50 epochs; for GPU clusters, data already under "
                    "$TUNE_EXT_DATA"),
}
TASKS = tuple(_BUILTIN)
DEFAULT_TASK = "mnist1d"


def get_task(name: str) -> Task:
    """A built-in task by name, or a user's ``Task`` by import path ``"package.module:attr"``
    (the attribute may be a Task or a function returning one)."""
    if name in _BUILTIN:
        return _BUILTIN[name]()
    if ":" in name:
        module, _, attr = name.partition(":")
        imported = import_user_module(module, f"task {name!r}")
        if not hasattr(imported, attr):
            raise ValueError(f"task {name!r} could not be imported: module {module!r} "
                             f"({getattr(imported, '__file__', None)}) has no attribute {attr!r}")
        obj = getattr(imported, attr)
        task = obj() if callable(obj) and not isinstance(obj, Task) else obj
        if not isinstance(task, Task):
            raise ValueError(f"task {name!r} is a {type(task).__name__}, not a Task")
        return task
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}, or "
                     f"'package.module:attr' naming your own Task")


def import_user_module(module: str, what: str):
    """Imports a user's ``module`` as ``python -m`` finds it: the current folder first (an
    installed command's ``sys.path`` does not hold it; Ray adds the driver's current folder to
    its workers' path, so trials find it too).

    Args:
        module: the dotted module name (``goodtask`` for ``goodtask.py``).
        what: what the error messages start with (``task 'goodtask:task'``).

    ValueError when the module is not there, or when its own code fails (then with the
    traceback's last line, e.g. its own missing import, and the file and line that raised it).
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise ValueError(f"{what} could not be imported: no module {exc.name!r} in the current "
                             f"folder ({cwd}) or on the Python path; run from the folder that holds "
                             f"{module.replace('.', '/')}.py, or install it") from None
        raise ValueError(f"{what} could not be imported: {_failure(module, exc)}") from None
    except Exception as exc:  # the module's own code failed: SyntaxError, NameError, ...
        raise ValueError(f"{what} could not be imported: {_failure(module, exc)}") from None


def _failure(module: str, exc: BaseException) -> str:
    """``module 'm' raised <the traceback's last line> (file, line n)``."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}, line {exc.lineno}"
    else:  # the innermost frame of the user's code, not of the import machinery
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
        where = f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else None
    return f"module {module!r} raised {last}" + (f" ({where})" if where else "")

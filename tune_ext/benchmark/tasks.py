"""Benchmark tasks: what a trial trains, the search space, the metrics, the horizon and the reference.

A task is any Ray Tune trainable with a search space: ``Task(name, trainable, space, max_t, ...)``.
The built-in tasks (``TASKS``) are made by ``sgd_task``: ``SupervisedTrainable`` on a named
dataset and model, searched over the FDS paper's SGD schedule (Micaelli & Storkey 2021, section
5.4: learning rates over equal windows of the run, momentum and weight decay, each over a wide
range); they also carry the ``FDSTrainable`` config that the gradient-based methods need.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tune_ext.validate import finite_number as check_finite
from tune_ext.validate import int_at_least, is_finite_number, min_or_max, non_negative, positive


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
        int_at_least(f"Task {self.name!r}: max_t", self.max_t, 1)
        min_or_max(f"Task {self.name!r}: mode", self.mode)
        for key in ("metric", "test_metric"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"Task {self.name!r}: {key} must be a non-empty string")
        if self.reference is not None:
            check_finite(f"Task {self.name!r}: reference", self.reference)
        non_negative(f"Task {self.name!r}: target_regret", self.target_regret)
        positive(f"Task {self.name!r}: default_budget_s", self.default_budget_s)
        object.__setattr__(self, "reference_grid", tuple(dict(c) for c in self.reference_grid))

    def runnable(self, trainable=None):
        """``trainable`` (default: the task's) as Ray Tune runs it: with ``trainable_kwargs``
        attached through ``tune.with_parameters`` (needs a running Ray)."""
        trainable = trainable or self.trainable
        if not self.trainable_kwargs:
            return trainable
        from ray import tune

        return tune.with_parameters(trainable, **self.trainable_kwargs)

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


finite_number = is_finite_number  # the predicate, for runner.py (tune_ext.validate has it)


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
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"task {name!r} could not be imported: {exc}") from exc
        task = obj() if callable(obj) and not isinstance(obj, Task) else obj
        if not isinstance(task, Task):
            raise ValueError(f"task {name!r} is a {type(task).__name__}, not a Task")
        return task
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}, or "
                     f"'package.module:attr' naming your own Task")

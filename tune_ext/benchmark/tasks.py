"""Benchmark tasks: what a trial trains, the search space, the metrics, the horizon and the reference.

A task is any Ray Tune trainable with a search space: ``Task(name, trainable, space, max_t, ...)``.
The built-in tasks (``TASKS``) are made by ``sgd_task``: ``SupervisedTrainable`` on a named
dataset and model, searched over the FDS paper's SGD schedule (Micaelli & Storkey 2021, section
5.4: learning rates over equal windows of the run, momentum and weight decay, each over a wide
range, from the registry ``tune_ext.hypergrad.kinds``; ``mnist1d-30`` and ``mnist1d-100`` with
more windows and per layer); they also carry the ``FDSTrainable`` config that the gradient-based
methods need.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tune_ext.benchmark.reference import load_reference, packaged_reference, sgd_grid
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
        gradient_config: the ``FDSTrainable`` config of this task (the task's keys, and for
            ``sgd_task`` the schedule's shape: ``n_<kind>_windows``, ``per_layer``; no starting
            values or steps), or None when gradient-based methods cannot run on it.
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

    def n_hyperparameters(self) -> int:
        """How many hyperparameters the black-box methods search: the Ray Tune domains in
        ``search_space()``, nested dicts (``model_kwargs``) included; fixed values do not count,
        nor ``extra_space`` (only the hybrids search it)."""
        from ray.tune.search.sample import Domain

        def count(space: dict) -> int:
            return sum(count(v) if isinstance(v, dict) else isinstance(v, Domain) for v in space.values())

        return count(self.search_space())

    def regret(self, test_score: float) -> float:
        """How far ``test_score`` is from the reference (>= 0 when at most as good)."""
        sign = 1.0 if self.mode == "max" else -1.0
        return sign * (self.reference_value() - test_score)

    def reference_value(self) -> float:
        """The reference number: ``reference``, else the one stored at the reference path."""
        if self.reference is not None:
            return float(self.reference)
        return float(load_reference(self)["reference"])


def sgd_task(name: str, dataset: Optional[str] = None, model: Optional[str] = None,
             epochs: int = 20, batch_size: int = 64, *, model_fn: Optional[Callable] = None,
             data=None, loss_fn: Optional[Callable] = None, n_lr_windows: int = 3,
             lr_range=None, momentum_range=None, weight_decay_range=None,
             windows: Optional[dict] = None, per_layer: bool = False, n_layers: Optional[int] = None,
             grid_lr_windows: Optional[int] = None,
             model_kwargs: Optional[dict] = None, extra_space: Optional[dict] = None,
             **task_kwargs) -> Task:
    """A task that trains a model with SGD, searched over the SGD schedule: a built-in ``dataset``
    and ``model`` by name, or your own ``model_fn`` (``config -> nn.Module``), ``data`` (``{"train",
    "val", "test"}``) and optional ``loss_fn``, as the trainables take them.

    The schedule: ``windows`` maps each hyperparameter kind (``tune_ext.hypergrad.kinds``) to its
    number of windows, default ``{"lr": n_lr_windows, "momentum": 1, "weight_decay": 1}``; with
    ``per_layer`` the per-layer kinds (lr, weight decay) hold one value per layer of the model's
    ``n_layers`` (required then) in each window. The search space is built from the registry:
    each entry over its kind's wide search range (``lr_range`` etc. override the lr, momentum and
    weight decay ones), log-uniform or uniform as the kind says, in the keys both trainables
    share (``lr_0 ..``; a kind with one entry by its bare name, ``momentum``, except the
    learning rate: ``lr_0``). Black-box methods run ``SupervisedTrainable`` over it; the gradient
    methods learn the same keys with ``FDSTrainable`` (``gradient_config``). The reference grid is
    the FDS paper's Appendix F one (``reference.SGD_GRID``) over ``grid_lr_windows`` learning-rate
    windows (default: the task's), mapped exactly onto this schedule (``refine_schedule``): the
    task's lr windows must be a multiple of ``grid_lr_windows`` (the mnist1d variants use 3, the
    default task's, to share its stored reference). ``extra_space``: see ``Task`` (domains over the
    trainables' config keys, e.g. ``batch_size``, ``model_kwargs``).
    """
    from ray import tune

    from trainables import SupervisedTrainable
    from tune_ext.hypergrad.kinds import KINDS, entries, kinds_of

    own = {k: v for k, v in (("model_fn", model_fn), ("data", data), ("loss_fn", loss_fn)) if v is not None}
    if own and (dataset or model):
        raise ValueError(f"sgd_task {name!r}: give a built-in dataset and model by name, or your own "
                         f"model_fn and data, not both")
    if not own and not (dataset and model):
        raise ValueError(f"sgd_task {name!r} needs dataset= and model= (built-in names) or "
                         f"model_fn= and data= (your own)")
    if own and not (model_fn and data is not None):
        raise ValueError(f"sgd_task {name!r}: your own model needs both model_fn= and data=")
    windows = dict(windows or {"lr": n_lr_windows, "momentum": 1, "weight_decay": 1})
    if set(windows) != set(kinds_of("sgd")):
        raise ValueError(f"sgd_task {name!r}: windows must give the windows of each of SGD's kinds "
                         f"lr, momentum and weight_decay, got {sorted(windows)}")
    for kind, n in windows.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sgd_task {name!r}: windows[{kind!r}] must be an int >= 1, got {n!r}")
    if per_layer and not (isinstance(n_layers, int) and n_layers >= 1):
        raise ValueError(f"sgd_task {name!r}: per_layer=True needs n_layers= (the model's layers: "
                         f"modules owning parameters, tune_ext.hypergrad.layers_of), got {n_layers!r}")
    fixed = {"epochs": epochs, "batch_size": batch_size}
    if not own:
        fixed.update(dataset=dataset, model=model)
    if own:
        task_kwargs["trainable_kwargs"] = own
    if model_kwargs:
        fixed["model_kwargs"] = dict(model_kwargs)
    if per_layer:
        fixed["per_layer"] = True
    ranges = {"lr": lr_range, "momentum": momentum_range, "weight_decay": weight_decay_range}
    schedule = {}
    for kind, n in windows.items():
        spec = KINDS[kind]
        domain = tune.loguniform if spec.log else tune.uniform
        for key in schedule_keys(kind, entries(kind, n, per_layer, n_layers or 1)):
            schedule[key] = domain(*(ranges.get(kind) or spec.search))
    space = {**fixed, **schedule}
    gradient = {k: v for k, v in fixed.items() if k != "epochs"}
    gradient.update({f"n_{kind}_windows": n for kind, n in windows.items()})
    grid = [refine_schedule(c, windows, per_layer, n_layers or 1)
            for c in sgd_grid(grid_lr_windows or windows["lr"])]
    return Task(name=name, trainable=SupervisedTrainable, space=space, max_t=epochs,
                reference_grid=tuple({**fixed, **c} for c in grid),
                gradient_config=gradient, n_lr_windows=windows["lr"], extra_space=extra_space,
                **task_kwargs)


def schedule_keys(kind: str, n_entries: int) -> list[str]:
    """A task's space keys for ``kind``: ``<kind>_0 ..``, or the bare ``<kind>`` for one entry
    (the learning rate stays ``lr_0``, as the stored references have it)."""
    return [kind] if n_entries == 1 and kind != "lr" else [f"{kind}_{i}" for i in range(n_entries)]


def refine_schedule(config: dict, windows: dict, per_layer: bool = False, n_layers: int = 1) -> dict:
    """A schedule (``lr_0 .. lr_{k-1}`` and one value or k windows of the other kinds) as the same
    schedule over ``windows[kind]`` windows each (and per layer): window j of n takes the value of
    window ``j // (n // k)`` of k.

    Exact when n is a multiple of k: step t of T uses window ``floor(n t / T)`` of n and
    ``floor(k t / T)`` of k, and ``floor(floor(n t / T) / (n / k)) = floor(k t / T)``, so every
    step reads the same value (windows of 10 would not do: a third of the run does not end on a
    tenth). Per-layer entries repeat the value for every layer, which trains as one shared value.
    """
    from tune_ext.hypergrad.kinds import KINDS

    out = {}
    for kind, n in windows.items():
        given = ([config[kind]] if kind in config else
                 [config[f"{kind}_{i}"] for i in range(sum(1 for k in config if k.startswith(f"{kind}_")))])
        if not given:
            raise ValueError(f"refine_schedule: the schedule has no {kind} (keys {sorted(config)})")
        k = len(given)
        if n % k:
            raise ValueError(f"refine_schedule: {n} {kind} windows do not refine {k} exactly: give a "
                             f"multiple of {k}")
        layers = n_layers if per_layer and KINDS[kind].per_layer else 1
        values = [given[j // (n // k)] for j in range(n) for _ in range(layers)]
        keys = schedule_keys(kind, len(values))
        out.update(zip(keys, values))
    return out


def _builtin(name: str, *args, **kwargs) -> Task:
    # the variants of a task share its stored reference (its grid's schedules are their points)
    kwargs.setdefault("reference_path", packaged_reference(name))
    return sgd_task(name, *args, **kwargs)


CNN1D_LAYERS = 3  # cnn1d's modules owning parameters: two Conv1d, one Linear (layers_of)


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
    # the same data, model and horizon with many more hyperparameters; windows are multiples of
    # the reference grid's 3 so that its schedules are points of these spaces (refine_schedule)
    "mnist1d-30": lambda: _builtin(
        "mnist1d-30", "mnist1d", "cnn1d", epochs=20, batch_size=128, target_regret=0.02,
        default_budget_s=35.0, windows={"lr": 12, "momentum": 9, "weight_decay": 9},
        reference_path=packaged_reference("mnist1d"), grid_lr_windows=3,
        extra_space=_choices(batch_size=[32, 64, 128, 256], model_kwargs={"channels": [16, 32, 64]}),
        description="mnist1d with 30 hyperparameters: 12 lr, 9 momentum, 9 weight-decay windows"),
    "mnist1d-100": lambda: _builtin(
        "mnist1d-100", "mnist1d", "cnn1d", epochs=20, batch_size=128, target_regret=0.02,
        default_budget_s=35.0, windows={"lr": 15, "momentum": 15, "weight_decay": 15},
        per_layer=True, n_layers=CNN1D_LAYERS, reference_path=packaged_reference("mnist1d"),
        grid_lr_windows=3,
        extra_space=_choices(batch_size=[32, 64, 128, 256], model_kwargs={"channels": [16, 32, 64]}),
        description="mnist1d with 105 hyperparameters: 15 windows of lr and weight decay for each "
                    "of the CNN's 3 layers, and of momentum"),
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

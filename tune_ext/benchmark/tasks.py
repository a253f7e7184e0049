"""Benchmark tasks: a dataset, a model, a horizon and one search space over the SGD schedule.

The space is the FDS paper's comparison (Micaelli & Storkey 2021, section 5.4): learning rates over
equal windows of the run, momentum and weight decay, each over a wide range.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ray import tune


@dataclass(frozen=True)
class Task:
    """One benchmark task; ``default_budget_s`` is the wall-clock budget per method and seed."""

    name: str
    dataset: str
    model: str
    epochs: int
    batch_size: int
    n_lr_windows: int = 3
    lr_range: tuple[float, float] = (1e-3, 1.0)
    momentum_range: tuple[float, float] = (0.0, 0.99)
    weight_decay_range: tuple[float, float] = (1e-6, 1e-2)
    target_regret: float = 0.01
    default_budget_s: float = 20.0
    model_kwargs: dict = field(default_factory=dict)
    description: str = ""

    def fixed_config(self) -> dict:
        """The config keys every trial of this task shares, whatever the method."""
        cfg = {"dataset": self.dataset, "model": self.model, "epochs": self.epochs,
               "batch_size": self.batch_size}
        if self.model_kwargs:
            cfg["model_kwargs"] = dict(self.model_kwargs)
        return cfg

    def search_space(self) -> dict:
        """The one search space every black-box method samples (Ray Tune domains)."""
        space = {f"lr_{i}": tune.loguniform(*self.lr_range) for i in range(self.n_lr_windows)}
        space["momentum"] = tune.uniform(*self.momentum_range)
        space["weight_decay"] = tune.loguniform(*self.weight_decay_range)
        return {**self.fixed_config(), **space}


TASKS = {
    "digits": Task(
        name="digits", dataset="digits", model="mlp", epochs=20, batch_size=64,
        default_budget_s=15.0,
        description="scikit-learn's 8x8 digits, MLP 64-128-10, 20 epochs; CPU, bundled data"),
    "cifar10": Task(
        name="cifar10", dataset="cifar10", model="wrn-16-1", epochs=50, batch_size=128,
        n_lr_windows=7, default_budget_s=3600.0,
        description="CIFAR-10, WRN-16-1, 50 epochs; for GPU clusters, data already under "
                    "$TUNE_EXT_DATA"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]

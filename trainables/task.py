"""The pieces every trainable shares: the device Ray assigned, data on it, a seeded model, eval.

A trial's task is three parts, each either a user's own or a registered built-in, resolved here
and nowhere else: the data (``data=`` or ``config["dataset"]``), a model factory ``config ->
nn.Module`` (``model_fn=`` or ``config["model"]``) and the loss ``(output, target) -> scalar``
(``loss_fn=``, cross-entropy by default).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import torch
from ray import tune
from torch import nn

from trainables.config import TaskConfig
from trainables.data import Splits, as_splits, load_dataset
from trainables.models import build_model


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial (Ray sets CUDA_VISIBLE_DEVICES), else the CPU (also when
    Ray assigned GPU ids but CUDA is absent: ``placement`` reports it, the harness says so)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def placement(device: torch.device | None) -> dict:
    """Where a trial trains, for its results: ``device`` ("cpu" or "cuda"), the GPUs Ray assigned
    (``gpu_ids``, comma-separated, and ``gpu_fraction``, the share of a GPU it was granted) and
    those the process sees (``visible_gpus``: CUDA_VISIBLE_DEVICES, which Ray sets)."""
    import ray

    # only a Ray worker (a trial's actor) has assigned resources; a trainable used directly, also
    # in a driver that started Ray, has none
    context = ray.get_runtime_context() if ray.is_initialized() else None
    in_worker = context is not None and context.get_actor_id() is not None
    assigned = context.get_assigned_resources() if in_worker else {}
    return {"device": "" if device is None else device.type,
            "gpu_ids": ",".join(str(i) for i in ray.get_gpu_ids()) if in_worker else "",
            "gpu_fraction": float(assigned.get("GPU", 0.0)),
            "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model as a model factory ``config -> nn.Module``, sized for the data."""

    name: str
    input_shape: tuple
    num_classes: int | None

    def __call__(self, config: dict) -> nn.Module:
        return build_model(self.name, self.input_shape, self.num_classes,
                           **dict(config.get("model_kwargs") or {}))


@dataclass
class Task:
    """One trial's data (on its device), freshly seeded model, and loss; ``new_model(seed)``
    builds the same model freshly seeded with another seed (FDS's ensemble members)."""

    data: Splits
    model: nn.Module
    loss_fn: Callable
    new_model: Callable[[int], nn.Module]


def load_task(config: dict, device: torch.device, *, model_fn: Callable | None = None, data=None,
              loss_fn: Callable | None = None) -> tuple[TaskConfig, Task]:
    """Resolve a trial's parts (the user's, else the config's registered ones) onto ``device``.

    model_fn: ``config -> nn.Module``, called under ``torch.manual_seed(config["seed"])``.
    data: what ``trainables.data.as_splits`` takes (tensors or Datasets per split).
    loss_fn: ``(output, target) -> scalar``; cross-entropy by default, required for float targets.
    """
    task = TaskConfig.from_config(config, own_data=data is not None, own_model=model_fn is not None)
    if data is None:
        splits = _cached_dataset(task.dataset, task.data_root, task.dataset_kwargs)
    else:
        splits = as_splits(data)
    if model_fn is None:
        model_fn = RegisteredModel(task.model, splits.input_shape, splits.num_classes)
    if loss_fn is None:
        if not splits.classification:
            raise ValueError("the data has float targets (regression) but no loss_fn was given: pass "
                             "loss_fn=torch.nn.functional.mse_loss or your own (output, target) -> scalar")
        loss_fn = nn.functional.cross_entropy
    for name, part in (("model_fn", model_fn), ("loss_fn", loss_fn)):
        if not callable(part):
            raise ValueError(f"{name} must be callable, got {part!r}")

    def new_model(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_fn(config)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model_fn(config) must return a torch.nn.Module, got {type(model).__name__}")
        return model.to(device)

    return task, Task(splits.to(device), new_model(task.seed), loss_fn, new_model)


class ReusableTrainable(tune.Trainable):
    """A class Trainable whose actor Ray may reuse for the next trial (``reuse_actors=True``).

    ``setup`` builds all of a trial's state, so resetting is running it again: the data is cached
    (``load_task``), so a reused actor skips the process start-up and the data load.
    """

    def reset_config(self, new_config):
        self.setup(new_config)
        return True

    def get_auto_filled_metrics(self, *args, **kwargs) -> dict:
        """Ray's auto-filled metrics plus the trial's ``placement`` (device and GPU ids), so a
        run's placement can be checked from its own results."""
        return {**super().get_auto_filled_metrics(*args, **kwargs),
                **placement(getattr(self, "device", None))}


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's minibatches as index tensors: a permutation drawn from ``generator``, in order."""
    order = torch.randperm(n, generator=generator).to(device)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@functools.lru_cache(maxsize=4)
def _cached_dataset(name, root, kwargs: tuple) -> Splits:
    # a reused actor (reuse_actors=True) or an FDS outer step must not reload the data
    return load_dataset(name, root=root, **dict(kwargs))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
             classification: bool, batch_size: int = 1024):
    """Mean loss of ``model`` on (x, y) in eval mode, and its accuracy (None for regression)."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out, target = model(x[i:i + batch_size]), y[i:i + batch_size]
        loss += float(loss_fn(out, target)) * len(target)
        if classification:
            correct += (out.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss / len(y), (correct / len(y) if classification else None)


def scores(model: nn.Module, task: Task) -> dict:
    """``val_loss``, ``test_loss`` and, for class labels, ``val_acc`` and ``test_acc``.

    Absent rather than wrong: no accuracy for regression, no ``test_*`` without a test split.
    """
    d, out = task.data, {}
    for split, x, y in (("val", d.x_val, d.y_val), ("test", d.x_test, d.y_test)):
        if y is None:
            continue
        loss, acc = evaluate(model, x, y, task.loss_fn, d.classification)
        out[f"{split}_loss"] = loss
        if acc is not None:
            out[f"{split}_acc"] = acc
    return out

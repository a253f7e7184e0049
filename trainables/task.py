"""The pieces every trainable shares: the device Ray assigned, data on it, a seeded model, eval."""
from __future__ import annotations

import functools

import torch
from ray import tune
from torch import nn

from trainables.config import TaskConfig
from trainables.data import Splits, load_dataset
from trainables.models import build_model


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_task(task: TaskConfig, device: torch.device) -> tuple[Splits, nn.Module]:
    """The task's splits on ``device`` and a model initialised from ``task.seed``."""
    data = _cached_dataset(task.dataset, task.data_root, task.dataset_kwargs).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(task.seed)
        model = build_model(task.model, data.input_shape, data.num_classes, **dict(task.model_kwargs))
    return data, model.to(device)


class ReusableTrainable(tune.Trainable):
    """A class Trainable whose actor Ray may reuse for the next trial (``reuse_actors=True``).

    ``setup`` builds all of a trial's state, so resetting is running it again: the data is cached
    (``load_task``), so a reused actor skips the process start-up and the data load.
    """

    def reset_config(self, new_config):
        self.setup(new_config)
        return True


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's minibatches as index tensors: a permutation drawn from ``generator``, in order."""
    order = torch.randperm(n, generator=generator).to(device)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@functools.lru_cache(maxsize=4)
def _cached_dataset(name, root, kwargs: tuple) -> Splits:
    # a reused actor (reuse_actors=True) or an FDS outer step must not reload the data
    return load_dataset(name, root=root, **dict(kwargs))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024):
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        loss += nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return loss / len(y), correct / len(y)

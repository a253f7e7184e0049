"""The black-box trainable: training with a given hyperparameter schedule, one epoch per step."""
from __future__ import annotations

import math
import os
import re

import torch

from trainables.config import (TASK_KEYS, Schedule, TaskConfig, choice, flag, positive_int,
                               refuse_unknown_keys,
                               schedule_patterns)
from trainables.hyperparams import training_rule
from trainables.task import ReusableTrainable, epoch_batches, load_task, scores, trial_device
from tune_ext.hypergrad.kinds import KINDS, OPTIMIZERS, kinds_of, loss_kinds
from tune_ext.hypergrad.schedule import window_index

TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}

KEYS = (*TASK_KEYS, "epochs", "optimizer", "per_layer", *KINDS)


def _set(group: dict, path: tuple, value: float) -> None:
    """Set a param group's entry at ``path`` (``("lr",)``, or ``("betas", 0)`` in a tuple)."""
    if len(path) == 1:
        group[path[0]] = value
    else:
        key, i = path
        group[key] = tuple(value if j == i else v for j, v in enumerate(group[key]))


class SupervisedTrainable(ReusableTrainable):
    """Trains a model under a configured hyperparameter schedule; one ``step()`` = one epoch.

    Config (defaults in brackets): ``dataset`` ["digits"], ``model`` ["mlp"], ``batch_size`` [64],
    ``seed`` [0], ``epochs`` [20] (the horizon the windows are spread over), ``optimizer`` ["sgd"]
    (``torch.optim.SGD``: dampening 0, no Nesterov) | "adamw" (``torch.optim.AdamW``),
    ``per_layer`` [False], and the schedule, in the keys ``FDSTrainable`` reports and takes as its
    ``start`` (``tune_ext.hypergrad.kinds``): for each kind ``<h>_0 .. <h>_{n-1}`` (n windows;
    with ``per_layer`` the per-layer kinds ``lr``, ``weight_decay``, ``l2`` hold one entry per
    layer per window, window-major) or ``<h>`` alone (one value for the whole run). ``lr``
    is required; ``momentum`` [0] (sgd), ``beta1`` [0.9] (adamw), ``weight_decay`` [0]; the loss
    kinds ``l2`` and ``label_smoothing`` add their term when given. Step t of T = epochs *
    batches per epoch uses window ``floor(n t / T)`` of each. Optionally ``model_kwargs``,
    ``dataset_kwargs``, ``data_root``. Any other key is refused (ValueError with the closest
    valid key). The optimiser is ``torch.optim``'s with one param group per layer (one without
    ``per_layer``) whose values are set every step, and the loss terms are the functions FDS
    differentiates (``trainables.hyperparams``): a schedule trains here as in FDS's inner run from
    that schedule as ``start`` (tested equal in float64).

    Your own model, data and loss come in through ``tune.with_parameters`` (then the config has no
    ``dataset`` / ``model``): ``model_fn`` (``config -> nn.Module``), ``data`` (``{"train": (x, y)
    or Dataset, "val": ..., "test": ...}``, validation carved from train when missing) and
    ``loss_fn`` (``(output, target) -> scalar``, cross-entropy by default).

    Reports ``train_loss``, ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc`` and ``epoch``
    (no accuracy for float targets, no ``test_*`` without test data). Checkpoints hold
    the model, the optimiser's state, the shuffling RNG and the epoch, so a paused or failed trial
    resumes with exactly the numbers of an uninterrupted run.

    Args:
        config: the trial's configuration, as Ray Tune passes it (the keys above).
        model_fn: your model, ``config -> nn.Module`` (given through ``tune.with_parameters``).
        data: your data, ``{"train": ..., "val": ..., "test": ...}`` (through ``with_parameters``).
        loss_fn: your loss, ``(output, target) -> scalar`` (default cross-entropy).

    Example::

        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from trainables import SupervisedTrainable

        tune.run(SupervisedTrainable, num_samples=8, metric="val_acc", mode="max",
                 scheduler=ASHAScheduler(max_t=10), stop={"training_iteration": 10},
                 config={"epochs": 10, "lr_0": tune.loguniform(1e-3, 1.0),
                         "momentum": tune.uniform(0.0, 0.99)})
    """

    @classmethod
    def check_config(cls, config, model_fn=None, data=None, loss_fn=None) -> None:
        """ValueError for what ``setup`` would refuse in ``config``, without loading data or
        building the model (the benchmark harness calls it in the driver, before any trial)."""
        cls._schedule(config)
        positive_int(config, "epochs", 20)
        TaskConfig.from_config(config, own_data=data is not None, own_model=model_fn is not None)

    @staticmethod
    def _schedule(config) -> tuple[str, tuple, Schedule]:
        """The optimizer, the kinds it and the loss read, and the config's schedule of them."""
        refuse_unknown_keys(config, KEYS, "SupervisedTrainable", patterns=schedule_patterns(KINDS),
                            aliases={"learning_rate": "lr_0"})
        optimizer = choice(config, "optimizer", OPTIMIZERS, "sgd")
        kinds = kinds_of(optimizer) + loss_kinds()
        for key in config:
            other = next((k for k in KINDS if k not in kinds and re.fullmatch(rf"{k}(_\d+)?", str(key))), None)
            if other:
                raise ValueError(f"config[{key!r}] is a hyperparameter of another optimizer; "
                                 f"optimizer {optimizer!r} reads {', '.join(kinds_of(optimizer))}")
        return optimizer, kinds, Schedule.from_config(config, kinds, required=("lr",))

    def setup(self, config, model_fn=None, data=None, loss_fn=None):
        self.check_config(config, model_fn, data, loss_fn)
        optimizer, kinds, schedule = self._schedule(config)
        self.epochs = positive_int(config, "epochs", 20)
        self.device = trial_device()
        self.task, self.parts = load_task(config, self.device, model_fn=model_fn, data=data, loss_fn=loss_fn)
        self.data, self.model = self.parts.data, self.parts.model
        given = tuple(k for k in kinds if k in schedule.values)
        self.rule = training_rule(self.model, optimizer, flag(config, "per_layer", False), given,
                                  loss_fn is not None, self.data.classification, self.parts.loss_fn)
        like = next(self.model.parameters())
        self.hparams = {}
        for kind in dict.fromkeys(kinds_of(optimizer) + given):
            layers = self.rule.layers(kind)
            if kind in schedule.values:
                n = schedule.windows(kind, layers or 1) or 1
                self.hparams[kind] = schedule.tensor(kind, n, layers, like)
            else:  # an update kind not given: its default (momentum 0, beta1 0.9, weight decay 0)
                self.hparams[kind] = torch.full((1,), KINDS[kind].init, dtype=like.dtype, device=like.device)
        # torch.optim with one param group per layer (per_layer) or one: each step sets every
        # update kind's value on the groups (Kind.param_group), the loss kinds reach the loss
        params = list(self.model.named_parameters())
        groups = ([{"params": [p for k, p in params if self.rule.layer_of[k] == i]}
                   for i in range(self.rule.n_layers)] if self.rule.layer_of is not None
                  else [{"params": [p for _, p in params]}])
        self.optimizer = TORCH_OPTIMIZERS[optimizer](groups, lr=0.0)
        self.group_values = {k: [[float(h[w][i] if h.dim() > 1 else h[w]) for i in range(len(groups))]
                                 for w in range(h.shape[0])]
                             for k, h in self.hparams.items() if KINDS[k].term == "update"}
        self.shuffle = torch.Generator().manual_seed(self.task.seed)
        self.epoch = 0

    def step(self):
        x, y = self.data.x_train, self.data.y_train
        bs = self.task.batch_size
        per_epoch = math.ceil(len(y) / bs)
        total = self.epochs * per_epoch
        train_loss = self.rule.train_loss
        weights = dict(self.model.named_parameters())
        self.model.train()
        loss_sum = 0.0
        for b, idx in enumerate(epoch_batches(len(y), bs, self.shuffle, self.device)):
            t = self.epoch * per_epoch + b
            for kind, windows in self.group_values.items():
                values = windows[window_index(t, total, len(windows))]
                for group, value in zip(self.optimizer.param_groups, values):
                    _set(group, KINDS[kind].param_group, value)
            out = self.model(x[idx])
            if train_loss is None:
                loss = self.parts.loss_fn(out, y[idx])
            else:
                hp = {n: h[window_index(t, total, h.shape[0])] for n, h in self.hparams.items()}
                loss = train_loss(out, y[idx], weights, hp)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(idx)
        self.epoch += 1
        return {"train_loss": loss_sum / len(y), **scores(self.model, self.parts),
                "epoch": self.epoch, "done": self.epoch >= self.epochs}

    def save_checkpoint(self, checkpoint_dir):
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "shuffle": self.shuffle.get_state(), "epoch": self.epoch},
                   os.path.join(checkpoint_dir, "state.pt"))

    def load_checkpoint(self, checkpoint):
        state = torch.load(os.path.join(checkpoint, "state.pt"), map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shuffle.set_state(state["shuffle"].cpu())
        self.epoch = state["epoch"]

"""The black-box trainable: training with a given hyperparameter schedule, one epoch per step."""
from __future__ import annotations

import math
import os
import re

import torch

from trainables.config import (TASK_KEYS, Schedule, choice, flag, positive_int, refuse_unknown_keys,
                               schedule_patterns)
from trainables.hyperparams import training_rule
from trainables.task import ReusableTrainable, epoch_batches, load_task, scores, trial_device
from tune_ext.hypergrad.kinds import KINDS, OPTIMIZERS, kinds_of, loss_kinds
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.updates import init_velocity

KEYS = (*TASK_KEYS, "epochs", "optimizer", "per_layer", *KINDS)


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
    valid key). The update and loss are the pure functions FDS differentiates
    (``trainables.hyperparams``), so a schedule trains the same here as in FDS's inner run.

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

    def setup(self, config, model_fn=None, data=None, loss_fn=None):
        refuse_unknown_keys(config, KEYS, "SupervisedTrainable", patterns=schedule_patterns(KINDS),
                            aliases={"learning_rate": "lr_0"})
        optimizer = choice(config, "optimizer", OPTIMIZERS, "sgd")
        kinds = kinds_of(optimizer) + loss_kinds()
        for key in config:
            other = next((k for k in KINDS if k not in kinds and re.fullmatch(rf"{k}(_\d+)?", str(key))), None)
            if other:
                raise ValueError(f"config[{key!r}] is a hyperparameter of another optimizer; "
                                 f"optimizer {optimizer!r} reads {', '.join(kinds_of(optimizer))}")
        schedule = Schedule.from_config(config, kinds, required=("lr",))
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
        self.velocity = init_velocity(self.rule.update, self._weights())
        self.shuffle = torch.Generator().manual_seed(self.task.seed)
        self.epoch = 0

    def _weights(self):
        return {k: p.detach() for k, p in self.model.named_parameters()}

    def step(self):
        x, y = self.data.x_train, self.data.y_train
        bs = self.task.batch_size
        per_epoch = math.ceil(len(y) / bs)
        total = self.epochs * per_epoch
        params = dict(self.model.named_parameters())
        self.model.train()
        loss_sum = 0.0
        for b, idx in enumerate(epoch_batches(len(y), bs, self.shuffle, self.device)):
            t = self.epoch * per_epoch + b
            hp = {n: h[window_index(t, total, h.shape[0])] for n, h in self.hparams.items()}
            out = self.model(x[idx])
            train_loss = self.rule.train_loss
            loss = (self.parts.loss_fn(out, y[idx]) if train_loss is None
                    else train_loss(out, y[idx], params, hp))
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            grads = {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(params.items(), grads)}
            with torch.no_grad():
                weights, self.velocity = self.rule.update(self._weights(), self.velocity, grads, hp)
                for k, p in params.items():
                    p.copy_(weights[k])
            loss_sum += loss.item() * len(idx)
        self.epoch += 1
        return {"train_loss": loss_sum / len(y), **scores(self.model, self.parts),
                "epoch": self.epoch, "done": self.epoch >= self.epochs}

    def save_checkpoint(self, checkpoint_dir):
        torch.save({"model": self.model.state_dict(), "velocity": self.velocity,
                    "shuffle": self.shuffle.get_state(), "epoch": self.epoch},
                   os.path.join(checkpoint_dir, "state.pt"))

    def load_checkpoint(self, checkpoint):
        state = torch.load(os.path.join(checkpoint, "state.pt"), map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.velocity = state["velocity"]
        self.shuffle.set_state(state["shuffle"].cpu())
        self.epoch = state["epoch"]

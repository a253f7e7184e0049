"""The black-box trainable: SGD with a given schedule, one epoch per step."""
from __future__ import annotations

import math
import os

import torch

from trainables.config import SGDSchedule, TaskConfig, positive_int
from trainables.task import ReusableTrainable, epoch_batches, evaluate, load_task, trial_device
from tune_ext.hypergrad.schedule import window_index


class SupervisedTrainable(ReusableTrainable):
    """Trains a model with ``torch.optim.SGD`` under a configured schedule; one ``step()`` = one epoch.

    Config (defaults in brackets): ``dataset`` ["digits"], ``model`` ["mlp"], ``batch_size`` [64],
    ``seed`` [0], ``epochs`` [20] (the horizon the learning-rate windows are spread over),
    ``lr_0 .. lr_{k-1}`` (required), ``momentum`` [0], ``weight_decay`` [0]; optionally
    ``model_kwargs``, ``dataset_kwargs``, ``data_root``. Step t of T = epochs * batches per epoch
    uses ``lr_{floor(k t / T)}``.

    Reports ``train_loss``, ``val_loss``, ``val_acc``, ``test_acc`` and ``epoch``. Checkpoints hold
    the model, the optimiser, the shuffling RNG and the epoch, so a paused or failed trial resumes
    with exactly the numbers of an uninterrupted run.

    Example::

        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from trainables import SupervisedTrainable

        tune.run(SupervisedTrainable, num_samples=8, metric="val_acc", mode="max",
                 scheduler=ASHAScheduler(max_t=10), stop={"training_iteration": 10},
                 config={"epochs": 10, "lr_0": tune.loguniform(1e-3, 1.0),
                         "momentum": tune.uniform(0.0, 0.99)})
    """

    def setup(self, config):
        self.task = TaskConfig.from_config(config)
        self.schedule = SGDSchedule.from_config(config)
        self.epochs = positive_int(config, "epochs", 20)
        self.device = trial_device()
        self.data, self.model = load_task(self.task, self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.schedule.lrs[0],
                                         momentum=self.schedule.momentum,
                                         weight_decay=self.schedule.weight_decay)
        self.shuffle = torch.Generator().manual_seed(self.task.seed)
        self.epoch = 0

    def step(self):
        x, y = self.data.x_train, self.data.y_train
        bs = self.task.batch_size
        per_epoch = math.ceil(len(y) / bs)
        total = self.epochs * per_epoch
        self.model.train()
        loss_sum = 0.0
        for b, idx in enumerate(epoch_batches(len(y), bs, self.shuffle, self.device)):
            lr = self.schedule.lrs[window_index(self.epoch * per_epoch + b, total, len(self.schedule.lrs))]
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = torch.nn.functional.cross_entropy(self.model(x[idx]), y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(idx)
        self.epoch += 1
        val_loss, val_acc = evaluate(self.model, self.data.x_val, self.data.y_val)
        _, test_acc = evaluate(self.model, self.data.x_test, self.data.y_test)
        return {"train_loss": loss_sum / len(y), "val_loss": val_loss, "val_acc": val_acc,
                "test_acc": test_acc, "epoch": self.epoch, "done": self.epoch >= self.epochs}

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

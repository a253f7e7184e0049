"""The black-box trainable: SGD with a given schedule, one epoch per step."""
from __future__ import annotations

import math
import os

import torch

from trainables.config import TASK_KEYS, SGDSchedule, TaskConfig, positive_int, refuse_unknown_keys
from trainables.task import ReusableTrainable, epoch_batches, load_task, scores, trial_device
from tune_ext.hypergrad.schedule import window_index

KEYS = (*TASK_KEYS, "epochs", "momentum", "weight_decay")


class SupervisedTrainable(ReusableTrainable):
    """Trains a model with ``torch.optim.SGD`` under a configured schedule; one ``step()`` = one epoch.

    Config (defaults in brackets): ``dataset`` ["digits"], ``model`` ["mlp"], ``batch_size`` [64],
    ``seed`` [0], ``epochs`` [20] (the horizon the learning-rate windows are spread over),
    ``lr_0 .. lr_{k-1}`` (required), ``momentum`` [0], ``weight_decay`` [0]; optionally
    ``model_kwargs``, ``dataset_kwargs``, ``data_root``. Step t of T = epochs * batches per epoch
    uses ``lr_{floor(k t / T)}``. Any other key is refused (ValueError with the closest valid key).

    Your own model, data and loss come in through ``tune.with_parameters`` (then the config has no
    ``dataset`` / ``model``): ``model_fn`` (``config -> nn.Module``), ``data`` (``{"train": (x, y)
    or Dataset, "val": ..., "test": ...}``, validation carved from train when missing) and
    ``loss_fn`` (``(output, target) -> scalar``, cross-entropy by default).

    Reports ``train_loss``, ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc`` and ``epoch``
    (no accuracy for float targets, no ``test_*`` without test data). Checkpoints hold
    the model, the optimiser, the shuffling RNG and the epoch, so a paused or failed trial resumes
    with exactly the numbers of an uninterrupted run.

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
        refuse_unknown_keys(config, KEYS, "SupervisedTrainable", patterns=(r"lr_\d+",),
                            aliases={"learning_rate": "lr_0", "lr": "lr_0"})
        SGDSchedule.from_config(config)
        positive_int(config, "epochs", 20)
        TaskConfig.from_config(config, own_data=data is not None, own_model=model_fn is not None)

    def setup(self, config, model_fn=None, data=None, loss_fn=None):
        self.check_config(config, model_fn, data, loss_fn)
        self.schedule = SGDSchedule.from_config(config)
        self.epochs = positive_int(config, "epochs", 20)
        self.device = trial_device()
        self.task, self.parts = load_task(config, self.device, model_fn=model_fn, data=data, loss_fn=loss_fn)
        self.data, self.model = self.parts.data, self.parts.model
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
            loss = self.parts.loss_fn(self.model(x[idx]), y[idx])
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

"""A user's own benchmark task, as a user would write it: a function trainable (no torch) that
minimises a loss, with a checkpoint so pausing schedulers can resume it."""
import json
import os
import tempfile

from ray import tune

from tune_ext.benchmark import Task

MAX_T = 6


def loss_at(x: float, t: int) -> float:
    """Validation loss after t steps: (x - 0.3)^2 plus a term that shrinks with training."""
    return (x - 0.3) ** 2 + 1.0 / t


def train(config):
    start, ckpt = 0, tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d, open(os.path.join(d, "s.json")) as f:
            start = json.load(f)["t"]
    for t in range(start + 1, MAX_T + 1):
        val = loss_at(config["x"], t)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"t": t}, f)
            # the "test" loss of this toy is the validation loss plus a fixed offset
            tune.report({"val_loss": val, "test_loss": val + 0.01},
                        checkpoint=tune.Checkpoint.from_directory(d))


def task(reference=None, reference_path=None):
    return Task("parabola", trainable=train, space={"x": tune.uniform(0.0, 1.0)}, max_t=MAX_T,
                metric="val_loss", mode="min", test_metric="test_loss", reference=reference,
                reference_path=reference_path, target_regret=0.05, default_budget_s=5.0,
                reference_grid=[{"x": 0.1}, {"x": 0.3}, {"x": 0.9}])


def task_with_stored_reference():
    """For the reference command: ``user_task:task_with_stored_reference``."""
    return task(reference_path=os.environ["USER_TASK_REFERENCE"])


def signals(n, seed):
    """Noisy 1D signals with a bump left (class 0) or right (class 1) of the middle."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    centre = torch.where(y == 1, 0.7, 0.3)[:, None]
    x = torch.exp(-((torch.linspace(0, 1, 16) - centre) / 0.1) ** 2) + 0.3 * torch.randn(n, 16, generator=g)
    return x[:, None, :], y


def tiny_cnn(config):
    from torch import nn

    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool1d(2),
                         nn.Flatten(), nn.Linear(8, 2))


def own_model_task():
    """An SGD task on the user's own model and data: black-box and gradient methods both run."""
    from tune_ext.benchmark import sgd_task

    return sgd_task("bumps", model_fn=tiny_cnn, data={"train": signals(256, 0), "test": signals(128, 1)},
                    epochs=4, batch_size=32, n_lr_windows=2, reference=1.0, target_regret=0.05)


def typo_task():
    """``own_model_task`` with a misspelled key in its black-box space ("momentun")."""
    import dataclasses

    own = own_model_task()
    return dataclasses.replace(own, space={**own.space, "momentun": tune.uniform(0.0, 0.9)})


def gradient_typo_task():
    """``own_model_task`` with a misspelled key in its FDSTrainable config ("lr_stpe")."""
    import dataclasses

    own = own_model_task()
    return dataclasses.replace(own, gradient_config={**own.gradient_config, "lr_stpe": 0.1})

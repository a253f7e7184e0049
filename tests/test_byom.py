"""Bring your own model, data and loss: both trainables on a model and data that are not built in."""
import re
import sys
from pathlib import Path

import pytest
import torch
from ray import cloudpickle, tune
from ray.tune.schedulers import FIFOScheduler
from torch import nn

from pause_helpers import PauseOnce, run_one_trial
from trainables import FDSTrainable, SupervisedTrainable, as_splits
from tune_ext.schedulers import ASHAScheduler

# Ray workers cannot import this test module (tests/ is not on their path), so its model factory
# and data travel by value, as a user's script's (__main__) functions do
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def bumps(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    centre = torch.where(y == 1, 0.7, 0.3)[:, None]
    x = torch.exp(-((torch.linspace(0, 1, 16) - centre) / 0.1) ** 2) + 0.5 * torch.randn(n, 16, generator=g)
    return x[:, None, :], y


def small_cnn(config):
    width = config.get("model_kwargs", {}).get("width", 4)
    return nn.Sequential(nn.Conv1d(1, width, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool1d(2),
                         nn.Flatten(), nn.Linear(2 * width, 2))


DATA = {"train": bumps(256, 0), "test": bumps(128, 1)}
FDS = {"batch_size": 64, "seed": 2, "lr_init": 0.1, "momentum_init": 0.5, "lr_step": 0.05,
       "momentum_step": 0.05, "weight_decay_step": 0.0}
CONFIGS = {"fds": {**FDS, "method": "fds", "inner_epochs": 1, "outer_steps": 3},
           "oho": {**FDS, "method": "oho", "inner_epochs": 3, "hyper_every": 2, "lr_step": 0.01,
                   "momentum_step": 0.01}}
METRICS = ("val_loss", "val_acc", "test_loss", "test_acc", "lr_0", "momentum_0")


def test_validation_is_carved_from_train_and_datasets_are_accepted():
    x, y = DATA["train"]
    s = as_splits({"train": torch.utils.data.TensorDataset(x, y), "test": DATA["test"]})
    assert len(s.y_val) + len(s.y_train) == 256 and abs(len(s.y_val) - 26) <= 2
    assert torch.equal(s.x_test, DATA["test"][0])  # test untouched
    pool = sorted(map(tuple, torch.cat([s.x_train, s.x_val]).flatten(1).tolist()))
    assert pool == sorted(map(tuple, x.flatten(1).tolist()))
    assert s.num_classes == 2 and s.classification
    reg = as_splits({"train": (x, y.double()), "val": (x[:5], y[:5].double())})
    assert reg.num_classes is None and reg.x_test is None and len(reg.y_val) == 5
    with pytest.raises(ValueError, match="'tets'.*did you mean 'test'"):
        as_splits({"train": DATA["train"], "tets": DATA["test"]})


@pytest.mark.parametrize("method", ["fds", pytest.param("oho", marks=pytest.mark.slow)])
def test_fds_trainable_on_a_users_cnn_under_tune_run_pauses_and_resumes_exactly(method, ray_local, tmp_path):
    trainable = tune.with_parameters(FDSTrainable, model_fn=small_cnn, data=DATA)
    config = CONFIGS[method]
    _, straight = run_one_trial(trainable, config, FIFOScheduler(), tmp_path / "straight")
    scheduler = PauseOnce()
    trial, paused = run_one_trial(trainable, config, scheduler, tmp_path / "paused")
    assert scheduler.paused == {trial.trial_id}
    assert [{k: r[k] for k in METRICS} for r in paused] == [{k: r[k] for k in METRICS} for r in straight]
    assert straight[-1]["lr_0"] != straight[0]["lr_0"]  # the hyperparameters were learned
    assert straight[-1]["val_acc"] > 0.8  # the bumps are easy: a trained CNN separates them


def test_supervised_trainable_on_a_users_cnn_under_our_asha_with_tuner(ray_local, tmp_path):
    # tune.Tuner here; the README example below runs the same under tune.run
    trainable = tune.with_parameters(SupervisedTrainable, model_fn=small_cnn, data=DATA)
    results = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", scheduler=ASHAScheduler(max_t=3, min_t=1)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        param_space={"epochs": 3, "batch_size": 64, "lr_0": tune.grid_search([0.02, 0.2, 0.5]),
                     "momentum": 0.9, "model_kwargs": {"width": 4}}).fit()
    assert not results.errors and len(results) == 3
    best = results.get_best_result().metrics
    assert best["val_acc"] > 0.8 and "test_loss" in best
    iters = sorted(r.metrics["training_iteration"] for r in results)
    assert iters[-1] == 3 and iters[0] >= 1


def test_regression_with_a_users_loss_reports_no_accuracy(ray_local):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(200, generator=g)
    data = {"train": (x, y[:, None]), "test": (x[:50], y[:50, None])}
    # elementwise: PyTorch's fused mse_loss has no forward-mode derivative of its backward
    mse = lambda out, target: ((out - target) ** 2).mean()  # noqa: E731
    for cls, config in ((SupervisedTrainable, {"epochs": 3, "lr_0": 0.1, "batch_size": 32}),
                        (FDSTrainable, {"method": "fds", "batch_size": 32, "inner_epochs": 2,
                                        "outer_steps": 2, "lr_init": 0.05, "lr_step": 0.02})):
        t = tune.with_parameters(cls, model_fn=lambda c: nn.Linear(3, 1), data=data, loss_fn=mse)(config=config)
        first, last = t.train(), t.train()
        t.stop()
        assert {"val_loss", "test_loss"} <= set(last) and not {"val_acc", "test_acc"} & set(last)
        assert last["val_loss"] < first["val_loss"]
    with pytest.raises(ValueError, match="loss_fn"):
        tune.with_parameters(SupervisedTrainable, model_fn=lambda c: nn.Linear(3, 1), data=data)(
            config={"lr_0": 0.1})


def test_own_parts_and_builtin_names_are_not_mixed(ray_local):
    with pytest.raises(ValueError, match=r"config\['dataset'\].*data="):
        tune.with_parameters(SupervisedTrainable, data=DATA)(config={"lr_0": 0.1, "dataset": "digits"})
    with pytest.raises(ValueError, match=r"config\['model'\].*model_fn="):
        tune.with_parameters(FDSTrainable, model_fn=small_cnn, data=DATA)(config={"model": "mlp"})


def test_docs_bring_your_own_example_runs(ray_local, tmp_path, monkeypatch):
    page = (Path(__file__).parents[1] / "docs" / "trainables.md").read_text()
    section = page[page.index("# Bring your own model, data and loss"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # Tune's default storage is ~/ray_results
    scope = {"__name__": "__main__"}  # as when a user runs it as a script
    exec(compile(code, "docs/trainables.md", "exec"), scope)
    assert scope["fds"].best_result["test_acc"] > 0.7
    assert scope["asha"].best_result["test_acc"] > 0.7
    assert all(t.status == "TERMINATED" for t in scope["asha"].trials)

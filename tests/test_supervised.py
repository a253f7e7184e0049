import pytest
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from pause_helpers import PauseOnce, run_one_trial
from torch import nn

from trainables import FDSTrainable, SupervisedTrainable
from tune_ext.hypergrad.kinds import KINDS
from tune_ext.hypergrad.schedule import window_index

BASE = {"dataset": "digits", "model": "mlp", "batch_size": 128, "epochs": 4, "seed": 3,
        "lr_0": 0.2, "lr_1": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
METRICS = ("train_loss", "val_loss", "val_acc", "test_acc", "epoch")


def run_direct(config, steps):
    t = SupervisedTrainable(config=config)
    try:
        return [{k: r[k] for k in METRICS} for r in (t.train() for _ in range(steps))]
    finally:
        t.stop()


def test_window_index_spreads_windows_evenly():
    assert [window_index(t, 12, 3) for t in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert [window_index(t, 5, 2) for t in range(5)] == [0, 0, 0, 1, 1]
    assert window_index(99, 12, 3) == 2  # past the horizon: the last window


def test_learns_digits_and_is_reproducible():
    a, b = run_direct(BASE, 4), run_direct(BASE, 4)
    assert a == b
    assert a[-1]["val_acc"] > 0.85 and a[-1]["train_loss"] < a[0]["train_loss"]
    c = run_direct({**BASE, "seed": 4}, 1)
    assert c[0] != a[0]


def test_checkpoint_restore_continues_exactly(tmp_path):
    straight = run_direct(BASE, 4)
    t = SupervisedTrainable(config=BASE)
    first = [t.train() for _ in range(2)]
    ckpt = t.save(str(tmp_path / "ckpt"))
    t.stop()
    resumed = SupervisedTrainable(config=BASE)
    resumed.restore(ckpt)
    rest = [resumed.train() for _ in range(2)]
    resumed.stop()
    assert [{k: r[k] for k in METRICS} for r in first + rest] == straight


@pytest.mark.parametrize("bad, match", [
    ({"dataset": "imagenet"}, "dataset.*digits"),
    ({"model": "vgg"}, "model.*mlp"),
    ({"lr_0": -0.1}, "lr_0"),
    ({"momentum": 1.0}, r"momentum.*\[0, 1\)"),
    ({"weight_decay": float("nan")}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"),
    ({"momentm": 0.9}, "unknown config key 'momentm' for SupervisedTrainable; did you mean 'momentum'"),
    ({"learning_rate": 0.1}, "unknown config key 'learning_rate'.*did you mean 'lr_0'"),
    ({"dataset": "digts"}, "did you mean 'digits'"),
    ({"lrr": 0.1}, r"\(valid keys: batch_size, .*, weight_decay, lr_0, lr_1, \.\.\., momentum_0, "
                   r"momentum_1, \.\.\., .*, label_smoothing_0, label_smoothing_1, \.\.\.\)$"),
])
def test_bad_config_names_the_key(bad, match):
    with pytest.raises(ValueError, match=match):   # in the driver, as the harness checks it
        SupervisedTrainable.check_config({**BASE, **bad})
    with pytest.raises(ValueError, match=match):
        SupervisedTrainable(config={**BASE, **bad})


def test_missing_learning_rate_windows_are_named():
    cfg = {k: v for k, v in BASE.items() if not k.startswith("lr_")}
    with pytest.raises(ValueError, match="lr_0"):
        SupervisedTrainable(config=cfg)
    with pytest.raises(ValueError, match="lr_1"):
        SupervisedTrainable(config={**cfg, "lr_0": 0.1, "lr_2": 0.1})


def test_tune_run_under_rays_asha(ray_local, tmp_path):
    space = {**BASE, "epochs": 3, "lr_0": tune.loguniform(1e-3, 0.5), "lr_1": tune.loguniform(1e-3, 0.5)}
    analysis = tune.run(
        SupervisedTrainable, config=space, num_samples=4, metric="val_acc", mode="max",
        scheduler=ASHAScheduler(max_t=3, grace_period=1, reduction_factor=2),
        resources_per_trial={"cpu": 1}, storage_path=str(tmp_path), verbose=0)
    assert len(analysis.trials) == 4
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    iters = sorted(t.last_result["training_iteration"] for t in analysis.trials)
    assert iters[-1] == 3 and iters[0] >= 1
    assert 0.0 <= analysis.best_result["test_acc"] <= 1.0 and analysis.best_result["val_acc"] > 0.5


def test_pause_resume_under_ray_matches_an_uninterrupted_run(ray_local, tmp_path):
    # both runs inside Ray workers, so thread counts (and float summation order) are the same
    _, straight = run_one_trial(SupervisedTrainable, BASE, FIFOScheduler(), tmp_path / "straight")
    scheduler = PauseOnce()
    trial, paused = run_one_trial(SupervisedTrainable, BASE, scheduler, tmp_path / "paused")
    assert scheduler.paused == {trial.trial_id}
    # the resumed actor came from the checkpoint: it goes on at iteration 3, not 1 again
    assert [r["training_iteration"] for r in paused] == [1, 2, 3, 4]
    assert [{k: r[k] for k in METRICS} for r in paused] == [{k: r[k] for k in METRICS} for r in straight]


def test_reset_config_reuses_the_actor_like_a_fresh_trainable():
    other = {**BASE, "seed": 7, "lr_0": 0.05, "momentum": 0.5}
    t = SupervisedTrainable(config=BASE)
    t.train()
    assert t.reset_config(other)
    reused = [{k: r[k] for k in METRICS} for r in (t.train() for _ in range(2))]
    t.stop()
    assert reused == run_direct(other, 2)


# --- schedules of every kind FDS learns, in the keys both trainables share -------------------
def _bumps(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 12, generator=g, dtype=torch.float64) + y[:, None, None].double()
    return x, y


DATA64 = {"train": _bumps(96, 0), "val": _bumps(40, 1), "test": _bumps(40, 2)}


def _cnn64(config):
    return nn.Sequential(nn.Conv1d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(30, 3)).double()


class Supervised64(SupervisedTrainable):
    def setup(self, config):
        super().setup(config, model_fn=_cnn64, data=DATA64)


class FDS64(FDSTrainable):
    def setup(self, config):
        super().setup(config, model_fn=_cnn64, data=DATA64)


SCHEDULES = {
    "sgd windows": ({}, {"lr_0": 0.3, "lr_1": 0.1, "lr_2": 0.05, "momentum_0": 0.9, "momentum_1": 0.5,
                         "weight_decay_0": 1e-3, "weight_decay_1": 1e-2}),
    # two layers (conv, linear): per-layer entries window-major, lr_{2w + layer}
    "sgd per layer, loss terms": ({"per_layer": True}, {
        "lr_0": 0.3, "lr_1": 0.1, "lr_2": 0.2, "lr_3": 0.05, "momentum": 0.8,
        "weight_decay_0": 1e-3, "weight_decay_1": 0.0, "l2_0": 1e-2, "l2_1": 1e-3,
        "label_smoothing_0": 0.1, "label_smoothing_1": 0.2}),
    "adamw per layer": ({"optimizer": "adamw", "per_layer": True}, {
        "lr_0": 0.01, "lr_1": 0.02, "beta1_0": 0.8, "beta1_1": 0.95, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_a_schedule_trains_as_fds_inner_run_with_that_start(name):
    """SupervisedTrainable with a schedule == FDSTrainable's first inner run from that schedule as
    ``start`` (same seed): the same weights and validation loss, in float64; and the keys FDS
    reports for its hyperparameters are the schedule's own keys."""
    extra, schedule = SCHEDULES[name]
    common = {"batch_size": 32, "seed": 5, **extra}
    plain = Supervised64(config={**common, "epochs": 2, **schedule})
    for _ in range(2):
        result = plain.train()
    fds = FDS64(config={**common, "method": "fds", "inner_epochs": 2, "outer_steps": 1,
                        "start": schedule})
    learned = fds.train()
    assert result["val_loss"] == pytest.approx(learned["val_loss"], rel=1e-10)
    ours, theirs = plain.model.state_dict(), fds.eval_model.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.allclose(ours[k], theirs[k], rtol=1e-10, atol=1e-12), k
    indexed = {k for k in schedule if k[-1].isdigit()}
    assert indexed <= set(learned) and all(learned[k] == pytest.approx(schedule[k]) for k in indexed)
    reported = {k for k in learned if k.rpartition("_")[0] in KINDS and k[-1].isdigit()}
    # a bare key is one value for the whole run: one window (of 2 layers for a per-layer kind)
    whole = {f"{k}_{i}" for k in schedule if not k[-1].isdigit()
             for i in range(2 if extra.get("per_layer") and KINDS[k].per_layer else 1)}
    assert reported == indexed | whole
    # a different schedule does train differently (the comparison can fail)
    other = Supervised64(config={**common, "epochs": 2, **schedule, "lr_0": schedule["lr_0"] / 2})
    other.train()
    assert other.train()["val_loss"] != pytest.approx(result["val_loss"], rel=1e-6)
    for t in (plain, fds, other):
        t.stop()


def test_the_reference_keys_keep_their_meaning_and_one_window_is_the_bare_key():
    # momentum / weight_decay (bare) mean one value for the whole run, as momentum_0 of one window
    a = run_direct({**BASE, "epochs": 2}, 2)
    b = run_direct({**{k: v for k, v in BASE.items() if k not in ("momentum", "weight_decay")},
                    "epochs": 2, "momentum_0": 0.9, "weight_decay_0": 1e-4}, 2)
    assert a == b


@pytest.mark.parametrize("bad, match", [
    ({"momentun_0": 0.9}, "unknown config key 'momentun_0'.*did you mean 'momentum_0'"),
    ({"lr": 0.1}, "both 'lr'.*'lr_0'"),
    ({"beta1": 0.9}, "beta1.*another optimizer.*'sgd' reads lr, momentum, weight_decay"),
    ({"optimizer": "adam"}, "optimizer.*sgd, adamw"),
    ({"optimizer": "adamw"}, "momentum.*another optimizer"),
    ({"weight_decay_0": 1e-4}, "both 'weight_decay'"),
    ({"momentum_1": 0.5}, "missing 'momentum_0'"),
    ({"label_smoothing": 1.5}, r"label_smoothing.*\[0, 1\]"),
    ({"per_layer": True}, "3 lr entries.*not a multiple of the model's 2 layers"),
    ({"per_layer": "yes"}, "per_layer.*True or False"),
])
def test_bad_schedule_keys_name_the_key(bad, match):
    cfg = {**BASE, **bad}
    if "lr" in bad:
        cfg = {**cfg, "lr_0": 0.1}
    if bad.get("momentum_1"):
        cfg.pop("momentum")
    if bad.get("per_layer") is True:
        cfg["lr_2"] = 0.01
    with pytest.raises(ValueError, match=match):
        SupervisedTrainable(config=cfg)

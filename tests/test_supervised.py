import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from pause_helpers import PauseOnce, run_one_trial
from trainables import SupervisedTrainable
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
    ({"lr": 0.1}, r"\(valid keys: batch_size, .*, weight_decay, lr_0, lr_1, \.\.\.\)$"),
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

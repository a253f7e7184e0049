"""FDSTrainable: FDS learns a schedule on digits, OHO/HD train online, configs are validated."""
import pytest
import torch

from trainables import FDSTrainable

FDS = {"dataset": "digits", "model": "mlp", "batch_size": 128, "seed": 0, "method": "fds",
       "inner_epochs": 1, "outer_steps": 3, "n_lr_windows": 2, "lr_init": 0.0, "lr_step": 0.15,
       "momentum_step": 0.0, "weight_decay_step": 0.0}
KEYS = ("val_loss", "val_acc", "test_acc", "lr_0", "momentum_0", "weight_decay_0")


def run_direct(config, steps, checkpoint_at=None, tmp_path=None):
    t = FDSTrainable(config=config)
    out = []
    for i in range(steps):
        if checkpoint_at == i:
            ckpt = t.save(str(tmp_path / "ckpt"))
            t.stop()
            t = FDSTrainable(config=config)
            t.restore(ckpt)
        out.append(t.train())
    t.stop()
    return out


def test_fds_learns_a_learning_rate_schedule_from_zero_on_digits():
    results = run_direct(FDS, 3)
    first, last = results[0], results[-1]
    assert first["lr_0"] == first["lr_1"] == 0.0 and first["val_acc"] < 0.2  # untrained: chance
    # from lr = 0 the hypergradient can only say "increase", and a correct one does so every step
    assert last["lr_0"] == pytest.approx(0.3) and last["lr_1"] == pytest.approx(0.3)
    assert last["val_acc"] > first["val_acc"] + 0.4
    assert last["hypergrad_norm_lr"] > 0 and last["outer_step"] == 3 and last["done"]
    assert last["inner_steps"] == 11 and last["skipped_updates"] == 0


@pytest.mark.parametrize("method", ["oho"])  # fds: test_compiled_fds_from_the_shared_cache_equals_eager
def test_compiled_trainable_follows_the_eager_one(method):
    cfg = {**FDS, "method": method, "n_lr_windows": 1, "lr_init": 0.05, "momentum_step": 0.05,
           "lr_step": 0.1 if method == "fds" else 0.01, "outer_steps": 2, "inner_epochs": 2,
           "hyper_every": 3, "batch_size": 259}  # 5 x 259 = 1295: one batch shape, one compilation
    eager, compiled = run_direct(cfg, 2), run_direct({**cfg, "compile": True}, 2)
    for e, c in zip(eager, compiled):  # float32: the fused kernels round differently
        assert c["lr_0"] == pytest.approx(e["lr_0"], rel=1e-4)
        assert c["momentum_0"] == pytest.approx(e["momentum_0"], rel=1e-4, abs=1e-6)
        assert c["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
    assert compiled[-1]["momentum_0"] > 0 and compiled[-1]["lr_0"] != cfg["lr_init"]


def test_the_hvp_derivative_path_runs_the_same_fds():
    cfg = {**FDS, "n_lr_windows": 2, "lr_init": 0.05, "momentum_step": 0.05, "weight_decay_step": 1e-4,
           "outer_steps": 2, "batch_size": 256}
    jvp, hvp = run_direct(cfg, 2), run_direct({**cfg, "derivative": "hvp"}, 2)
    for a, b in zip(jvp, hvp):  # float32: the two paths sum in different orders
        for key in ("lr_0", "lr_1", "momentum_0", "weight_decay_0", "val_loss", "hypergrad_norm_lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    assert hvp[-1]["lr_1"] != cfg["lr_init"] and hvp[-1]["momentum_0"] > 0


def test_every_hypergrad_mode_runs_the_same_fds_and_says_which_path_it_took():
    cfg = {**FDS, "n_lr_windows": 2, "lr_init": 0.05, "momentum_step": 0.05, "weight_decay_step": 1e-4,
           "outer_steps": 2, "batch_size": 256}
    ref = run_direct({**cfg, "hypergrad_mode": "forward"}, 2)
    assert [r["hypergrad_mode"] for r in ref] == ["forward", "forward"]
    for mode, extra, took in (("reverse", {}, "reverse"), ("checkpointed", {}, "checkpointed"),
                              ("auto", {}, "reverse"), (None, {}, "reverse"),  # the default
                              # between the estimates of checkpointed (1.1 MiB) and reverse (2.6)
                              ("auto", {"memory_budget_gb": 1.8 / 1024}, "checkpointed")):
        runs = run_direct({**cfg, **extra, **({} if mode is None else {"hypergrad_mode": mode})}, 2)
        assert [r["hypergrad_mode"] for r in runs] == [took, took], (mode, extra)
        for a, b in zip(ref, runs):  # float32: the paths sum in different orders
            for key in ("lr_0", "lr_1", "momentum_0", "weight_decay_0", "val_loss", "hypergrad_norm_lr"):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (mode, key)
    (online,) = run_direct({**cfg, "method": "hd", "n_lr_windows": 1, "lr_step": 0.01}, 1)
    assert online["hypergrad_mode"] == "forward"


@pytest.mark.parametrize("bad, match", [
    ({"hypergrad_mode": "backward"}, "hypergrad_mode.*auto, forward, reverse, checkpointed"),
    ({"memory_budget_gb": 0}, r"memory_budget_gb.*> 0"),
    ({"memory_budget_gb": "1G"}, r"memory_budget_gb.*> 0"),
    ({"hypergrad_mode": "reverse", "memory_budget_gb": 1.0}, "memory_budget_gb.*'auto'"),
    ({"method": "oho", "n_lr_windows": 1, "hypergrad_mode": "reverse"}, "'oho' is online"),
    ({"memory_budget_gb": 1e-9}, "below every exact path's estimate"),
])
def test_bad_hypergrad_mode_config_names_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        run_direct({**FDS, **bad}, 1)


def test_fds_starts_from_a_black_box_schedule():
    # the black-box space's keys (SupervisedTrainable's schedule) as FDS's starting values
    cfg = {k: v for k, v in FDS.items() if k not in ("n_lr_windows", "lr_init")}
    start = {"lr_0": 0.2, "lr_1": 0.1, "lr_2": 0.02, "momentum": 0.9, "weight_decay": 5e-4}
    (first,) = run_direct({**cfg, "start": start, "weight_decay_step": 1e-4}, 1)
    assert [first[f"lr_{i}"] for i in range(3)] == pytest.approx([0.2, 0.1, 0.02])
    assert "lr_3" not in first and first["momentum_0"] == pytest.approx(0.9)
    assert first["weight_decay_0"] == pytest.approx(5e-4) and first["val_acc"] > 0.5  # it trained


def test_inner_epochs_per_outer_step():
    results = run_direct({**FDS, "inner_epochs": [1, 2], "outer_steps": 3, "lr_init": 0.1,
                          "n_lr_windows": 1}, 3)
    assert [r["inner_steps"] for r in results] == [11, 22, 22]


@pytest.mark.parametrize("method", ["fds", "hd"])
def test_checkpoint_restore_continues_exactly(method, tmp_path):
    cfg = {**FDS, "method": method, "n_lr_windows": 1, "lr_init": 0.05, "outer_steps": 3,
           "batch_size": 256, "inner_epochs": 1 if method == "fds" else 3, "lr_step": 0.01 if method == "hd" else 0.1, "momentum_step": 0.05}
    straight = run_direct(cfg, 3)
    resumed = run_direct(cfg, 3, checkpoint_at=2, tmp_path=tmp_path)
    assert [{k: r[k] for k in KEYS} for r in resumed] == [{k: r[k] for k in KEYS} for r in straight]
    assert straight[-1]["momentum_0"] > 0  # the hyperparameters did move


def test_an_ensemble_averages_the_hypergradients_of_its_seeds(tmp_path):
    """ensemble=3: the outer step takes the mean of three inner runs' hypergradients; run i is the
    run of the same trial with seed + i (its initial weights and batch order), so each is checked
    against a trial of its own. The trial reports its own (first) run's scores, and a checkpoint
    restores every member's batch order."""
    cfg = {**FDS, "n_lr_windows": 2, "lr_init": 0.05, "momentum_step": 0.05, "outer_steps": 2,
           "batch_size": 256}
    ens = FDSTrainable(config={**cfg, "ensemble": 3})
    first = ens.train()
    singles, results = [], []
    for i in range(3):
        single = FDSTrainable(config={**cfg, "seed": cfg["seed"] + i})
        results.append(single.train())
        singles.append(single.hypergrads)
        single.stop()
    own = results[0]
    for name, g in ens.hypergrads.items():
        assert torch.allclose(g, sum(s[name] for s in singles) / 3, rtol=1e-6, atol=1e-9), name
        assert not torch.allclose(g, singles[0][name])   # the seeds do differ
    assert {k: first[k] for k in KEYS} == {k: own[k] for k in KEYS}   # ... the first run's scores
    assert first["inner_steps"] == 3 * own["inner_steps"]
    straight = run_direct({**cfg, "ensemble": 3}, 2)
    resumed = run_direct({**cfg, "ensemble": 3}, 2, checkpoint_at=1, tmp_path=tmp_path)
    assert [{k: r[k] for k in KEYS} for r in resumed] == [{k: r[k] for k in KEYS} for r in straight]
    assert resumed[-1]["hypergrad_norm_lr"] == pytest.approx(straight[-1]["hypergrad_norm_lr"], rel=1e-6)
    ens.stop()


@pytest.mark.parametrize("bad, match", [
    ({"method": "grid"}, "method.*fds, oho, hd"),
    ({"inner_epochs": 0}, "inner_epochs"),
    ({"inner_epochs": []}, "inner_epochs"),
    ({"method": "oho", "inner_epochs": [1, 2]}, "inner_epochs.*one number"),
    ({"method": "hd", "n_lr_windows": 3}, "n_\\*_windows.*1"),
    ({"n_momentum_windows": 0}, "n_momentum_windows"),
    ({"lr_init": -1.0}, "lr_init"),
    ({"momentum_init": 1.0}, "momentum_init"),
    ({"lr_step": float("nan")}, "lr_step"),
    ({"outer_optimizer": "lbfgs"}, "outer_optimizer.*sign, sgd, adam"),
    ({"clip": 0}, "clip"),
    ({"hyper_every": 0}, "hyper_every"),
    ({"lr_step": 0.0}, "lr_step.*all 0"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"compile": "yes"}, "compile.*True or False"),
    ({"derivative": "hessian"}, "derivative.*jvp, hvp"),
    ({"start": {"lr_0": 0.1, "lr_1": 0.1}}, "both give the starting lr"),
    ({"start": {"lr_0": 0.1}, "lr_init": None}, "1 learning-rate windows.*n_lr_windows.*2"),
    ({"start": {"lr_0": 0.1, "lr_2": 0.1}, "lr_init": None}, "missing 'lr_1'"),
    ({"start": {"lr_0": 0.1, "lr_1": 0.1, "momentun": 0.9}, "lr_init": None}, "did you mean 'momentum'"),
    ({"start": {"lr_0": 0.1, "lr_1": 0.1, "momentum": 1.0}, "lr_init": None}, "momentum"),
    ({"start": [0.1, 0.1], "lr_init": None}, "start.*must be a dict"),
    ({"method": "hd", "n_lr_windows": None, "lr_init": None, "start": {"lr_0": 0.1, "lr_1": 0.1}},
     "start.*2 learning-rate windows; method 'hd' learns one value"),
    ({"start": {"lr_0": 0.1, "lr_1": 0.1, "momentum_0": 0.9, "momentum_1": 0.5},
      "lr_init": None, "n_momentum_windows": 3}, "2 momentum windows.*n_momentum_windows.*3"),
    ({"lr_inti": 0.1}, "unknown config key 'lr_inti' for FDSTrainable; did you mean 'lr_init'"),
    ({"optimizer": "adam"}, "optimizer.*sgd, adamw.*did you mean 'adamw'"),
    ({"beta1_init": 0.9}, r"config\['beta1_init'\].*another optimizer"),
    ({"optimizer": "adamw", "momentum_step": None, "beta1_init": 1.0}, "beta1_init"),
    ({"label_smoothing_init": 1.5}, "label_smoothing_init"),
    ({"l2_init": -1.0}, "l2_init"),
    ({"per_layer": "yes"}, "per_layer.*True or False"),
    ({"reset_every": 3}, "reset_every.*OHO"),
    ({"method": "oho", "n_lr_windows": 1, "reset_every": 0}, "reset_every"),
    ({"model": "lenet5"}, "did you mean 'lenet'"),
    ({"backtrack": "yes"}, "backtrack.*True or False"),
    ({"collapse_ratio": 1.0}, "collapse_ratio.*> 1"),
    ({"backtrack_shrink": 1.0}, r"backtrack_shrink.*\(0, 1\)"),
    ({"backtrack_shrinc": 0.5}, "did you mean 'backtrack_shrink'"),
    ({"method": "oho", "n_lr_windows": 1, "collapse_ratio": 3.0}, "FDS's safeguard"),
    ({"ensemble": 0}, "ensemble.*positive int"),
    ({"method": "hd", "n_lr_windows": 1, "ensemble": 2}, "ensemble.*'hd' has no inner runs"),
])
def test_bad_config_names_the_key(bad, match):
    config = {k: v for k, v in {**FDS, **bad}.items() if v is not None}  # None: drop the key
    with pytest.raises(ValueError, match=match):   # in the driver, as the harness checks it
        FDSTrainable.check_config(config)
    with pytest.raises(ValueError, match=match):
        FDSTrainable(config=config)


def test_diverged_run_reports_and_skips_its_nonfinite_hypergradient():
    cfg = {**FDS, "batch_size": 256, "n_lr_windows": 1, "lr_init": 2.0 ** 100, "outer_steps": 2,
           "backtrack": False}
    first, second = run_direct(cfg, 2)
    assert first["hypergrad_nonfinite"] >= 1 and first["skipped_updates"] == 1
    assert second["lr_0"] == first["lr_0"] == 2.0 ** 100  # the update was not applied
    assert first["n_backtracks"] == 0 and first["inner_lost"] is None and not first["done"]


def test_a_diverging_first_run_has_nothing_to_go_back_to_and_ends_the_trial():
    cfg = {**FDS, "batch_size": 256, "n_lr_windows": 1, "lr_init": 2.0 ** 100, "inner_epochs": 3}
    (first,) = run_direct(cfg, 1)
    assert first["inner_lost"] == "diverged" and first["done"] and first["n_backtracks"] == 0
    assert first["inner_steps"] == 6  # stopped after its first epoch of 6 steps, not 18


def test_a_scripted_divergence_is_cut_short_reverted_to_the_best_and_counted(tmp_path):
    # outer step 1 (lr 0.05) completes; its hypergradient says "more", and a huge outer step
    # (lr += 1e30) makes run 2 diverge in its first epoch
    cfg = {**FDS, "batch_size": 256, "n_lr_windows": 1, "lr_init": 0.05, "lr_step": 1e30,
           "inner_epochs": 3, "outer_steps": 4}
    results = run_direct(cfg, 4)
    first, lost, back, again = results
    assert first["inner_lost"] is None and first["inner_steps"] == 18 and first["n_backtracks"] == 0
    assert lost["lr_0"] == pytest.approx(1e30)
    assert lost["inner_lost"] == "diverged" and lost["inner_steps"] == 6  # 1 epoch of 3
    assert lost["n_backtracks"] == 1 and not lost["done"] and "hypergrad_norm_lr" not in lost
    # back to the best hyperparameters, whose run completes again
    assert back["lr_0"] == first["lr_0"] and back["inner_lost"] is None and back["inner_steps"] == 18
    # ... and lr's outer step was halved: the next move is 5e29, not 1e30
    assert again["lr_0"] == pytest.approx(5e29)
    assert again["inner_lost"] == "diverged" and again["n_backtracks"] == 2
    # a restore in the middle continues the same backtracking (best run, count, shrunk steps)
    resumed = run_direct(cfg, 4, checkpoint_at=2, tmp_path=tmp_path)
    keys = ("lr_0", "inner_steps", "n_backtracks", "inner_lost", "val_acc")  # val_loss: NaN
    assert [{k: r[k] for k in keys} for r in resumed[2:]] == [{k: r[k] for k in keys} for r in results[2:]]


@pytest.mark.parametrize("method", ["fds", "oho"])
def test_reset_config_reuses_the_actor_like_a_fresh_trainable(method):
    # the harness runs with reuse_actors=True: a reused actor must behave as a new one
    cfg = {**FDS, "method": method, "n_lr_windows": 1, "lr_init": 0.05, "batch_size": 256,
           "inner_epochs": 1 if method == "fds" else 2, "lr_step": 0.01}
    other = {**cfg, "seed": 3, "lr_init": 0.1}
    t = FDSTrainable(config=cfg)
    t.train()
    assert t.reset_config(other)
    reused = [t.train() for _ in range(2)]
    t.stop()
    fresh = run_direct(other, 2)
    assert [{k: r[k] for k in KEYS} for r in reused] == [{k: r[k] for k in KEYS} for r in fresh]


@pytest.mark.parametrize("method", ["fds", "oho"])
def test_adamw_per_layer_and_loss_hyperparameters_are_learned_and_restored(method, tmp_path):
    base = {k: v for k, v in FDS.items() if k != "momentum_step"}  # AdamW has beta1, not momentum
    cfg = {**base, "method": method, "optimizer": "adamw", "per_layer": True, "n_lr_windows": 1,
           "lr_init": 0.01, "lr_step": 0.002, "beta1_step": 0.05, "weight_decay_init": 0.01,
           "weight_decay_step": 0.01, "l2_init": 1e-3, "l2_step": 1e-3, "label_smoothing_init": 0.1,
           "label_smoothing_step": 0.02, "batch_size": 256, "outer_steps": 3, "hyper_every": 2,
           "inner_epochs": 1 if method == "fds" else 3, **({"reset_every": 4} if method == "oho" else {})}
    straight = run_direct(cfg, 3)
    first, last = straight[0], straight[-1]
    # the MLP has 2 layers: per-layer lr, weight decay and L2; shared beta1 and label smoothing
    assert {"lr_1", "weight_decay_1", "l2_1", "beta1_0", "label_smoothing_0"} <= set(last)
    assert "lr_2" not in last and "beta1_1" not in last and "momentum_0" not in last
    for key in ("lr_0", "lr_1", "beta1_0", "weight_decay_0", "l2_1", "label_smoothing_0"):
        assert last[key] != first[key], key
    assert 0 <= last["label_smoothing_0"] <= 1 and last["beta1_0"] < 1
    assert last["val_acc"] > 0.5 and last["skipped_updates"] == 0  # AdamW trained the MLP
    keys = ("val_loss", "lr_0", "lr_1", "beta1_0", "l2_1", "label_smoothing_0")
    resumed = run_direct(cfg, 3, checkpoint_at=2, tmp_path=tmp_path)
    assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in straight]


COMPILED_RUN = """
import json, sys
import torch
from torch._dynamo.utils import counters
from trainables import FDSTrainable
t = FDSTrainable(config=json.loads(sys.argv[1]))
out = [t.train() for _ in range(2)]
print(json.dumps({"results": [{k: r[k] for k in ("lr_0", "momentum_0", "val_loss")} for r in out],
                  "hits": counters["inductor"]["fxgraph_cache_hit"],
                  "misses": counters["inductor"]["fxgraph_cache_miss"]}))
"""


@pytest.mark.slow
def test_compiled_fds_from_the_shared_cache_equals_eager(tmp_path):
    # two trial processes of one machine: the first compiles into $TUNE_EXT_CACHE/torchinductor,
    # the second loads every kernel from there and computes the same run as eager FDS
    import json
    import os
    import subprocess
    import sys

    cfg = {**FDS, "n_lr_windows": 1, "lr_init": 0.05, "momentum_step": 0.05, "outer_steps": 2,
           "batch_size": 259}  # one batch shape: one graph to compile
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(TUNE_EXT_CACHE=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))

    def process():
        out = subprocess.run([sys.executable, "-c", COMPILED_RUN, json.dumps({**cfg, "compile": True})],
                             env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = process(), process()
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0  # nothing compiled again
    assert os.listdir(tmp_path / "torchinductor")
    assert second["results"] == first["results"]  # the same kernels
    eager = run_direct(cfg, 2)
    for e, c in zip(eager, second["results"]):  # float32: the fused kernels round differently
        assert c["lr_0"] == pytest.approx(e["lr_0"], rel=1e-4)
        assert c["momentum_0"] == pytest.approx(e["momentum_0"], rel=1e-4, abs=1e-6)
        assert c["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)

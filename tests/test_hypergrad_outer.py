"""Outer optimisers: FDS's sign rule with halving, clipping, ranges, non-finite skipping."""
import math

import pytest
import torch

from tune_ext.hypergrad.outer import ClippedAdam, ClippedSGD, SignDescent, make_outer


def test_sign_descent_halves_each_entrys_step_when_its_sign_flips():
    opt = SignDescent({"lr": 0.1})
    h = {"lr": torch.tensor([1.0, 1.0], dtype=torch.float64)}
    # entry 0: +, -, -, +, 0, -   entry 1: always +
    script = [(1.0, 3.0), (-2.0, 1.0), (-0.5, 7.0), (4.0, 1.0), (0.0, 1.0), (-1.0, 1.0)]
    # by hand: entry 0 steps 0.1, flip->0.05, 0.05, flip->0.025, zero (no move), flip vs + -> 0.0125
    expected0 = [1.0 - 0.1, 0.9 + 0.05, 0.95 + 0.05, 1.0 - 0.025, 0.975, 0.975 + 0.0125]
    expected1 = [1.0 - 0.1 * k for k in range(1, 7)]
    for k, (g0, g1) in enumerate(script):
        h, info = opt.step(h, {"lr": torch.tensor([g0, g1], dtype=torch.float64)})
        assert not info["skipped"]
        assert h["lr"][0].item() == pytest.approx(expected0[k], abs=1e-12)
        assert h["lr"][1].item() == pytest.approx(max(expected1[k], 0.0), abs=1e-12)
    assert opt.state["lr"]["step"].tolist() == [0.0125, 0.1]


def test_sign_descent_range_is_bounded_and_clamped():
    opt = SignDescent({"lr": 0.5, "momentum": 0.3, "weight_decay": 0.1})
    h = {"lr": torch.tensor([0.2]), "momentum": torch.tensor([0.9]), "weight_decay": torch.tensor([0.05])}
    h, _ = opt.step(h, {"lr": torch.tensor([1.0]), "momentum": torch.tensor([-1.0]),
                        "weight_decay": torch.tensor([1.0])})
    assert h["lr"].item() == 0.0 and h["weight_decay"].item() == 0.0
    assert 0.0 <= h["momentum"].item() < 1.0


def test_nonfinite_hypergradients_are_reported_and_skipped():
    for opt in (SignDescent({"lr": 0.1}), ClippedAdam({"lr": 0.1}), ClippedSGD({"lr": 0.1})):
        h = {"lr": torch.tensor([0.3, 0.3])}
        new, info = opt.step(h, {"lr": torch.tensor([float("nan"), 1.0])})
        assert info == {"skipped": True, "nonfinite": ["lr"]}
        assert torch.equal(new["lr"], h["lr"]) and opt.state == {} and opt.skipped == 1
        new, info = opt.step(h, {"lr": torch.tensor([math.inf, 1.0])})
        assert info["skipped"] and opt.skipped == 2


def test_clipped_sgd_and_adam():
    sgd = ClippedSGD({"lr": 0.1}, clip=1.0)
    h, _ = sgd.step({"lr": torch.tensor([1.0, 1.0])}, {"lr": torch.tensor([30.0, 40.0])})
    assert torch.allclose(h["lr"], torch.tensor([1.0 - 0.1 * 0.6, 1.0 - 0.1 * 0.8]))
    adam = ClippedAdam({"lr": 0.01}, clip=1.0)
    h, _ = adam.step({"lr": torch.tensor([1.0])}, {"lr": torch.tensor([-1e6])})
    assert h["lr"].item() == pytest.approx(1.01, abs=1e-6)  # Adam's first step is lr * sign


def test_state_round_trips():
    a = SignDescent({"lr": 0.1})
    h = {"lr": torch.tensor([0.5])}
    h, _ = a.step(h, {"lr": torch.tensor([1.0])})
    b = SignDescent({"lr": 0.1})
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.step(h, {"lr": torch.tensor([-1.0])})[0]["lr"],
                       b.step(h, {"lr": torch.tensor([-1.0])})[0]["lr"])


@pytest.mark.parametrize("call, match", [
    (lambda: SignDescent({}), "step_sizes"),
    (lambda: SignDescent({"lr": -1.0}), r"step_sizes\['lr'\]"),
    (lambda: ClippedAdam({"lr": 0.1}, clip=0.0), "clip"),
    (lambda: make_outer("rmsprop", {"lr": 0.1}), "sign, sgd, adam"),
    (lambda: SignDescent({"lr": 0.1}).step({"momentum": torch.zeros(1)}, {}), "not in hparams"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()

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


@pytest.mark.parametrize("cls", [SignDescent, ClippedSGD, ClippedAdam])
def test_shrink_scales_only_the_marked_entries_moves(cls):
    a, b = cls({"lr": 0.1}), cls({"lr": 0.1})
    b.shrink({"lr": torch.tensor([True, False])}, 0.5)
    b.shrink({"lr": torch.tensor([True, False])}, 0.5)
    h = {"lr": torch.tensor([1.0, 1.0], dtype=torch.float64)}
    g = {"lr": torch.tensor([2.0, -3.0], dtype=torch.float64)}
    (ha, _), (hb, _) = a.step(h, g), b.step(h, g)
    assert hb["lr"].dtype == torch.float64
    assert (hb["lr"][0] - 1.0).item() == pytest.approx((ha["lr"][0] - 1.0).item() / 4, abs=1e-15)
    assert hb["lr"][1].item() == ha["lr"][1].item()
    c = cls({"lr": 0.1})
    c.load_state_dict(b.state_dict())  # the shrunk step sizes survive a restore
    assert torch.equal(c.step(h, g)[0]["lr"], b.step(h, g)[0]["lr"])


def run(guard, hparams, checks, final=None):
    """One inner run under ``guard``: ``checks`` = [(fraction, val loss)], then the final loss."""
    watch = guard.begin(hparams)
    for fraction, loss in checks:
        if watch(fraction, loss):
            return guard.reason
    return guard.finish(final)


def test_safeguard_compares_with_the_best_run_at_the_same_fraction_of_the_run():
    from tune_ext.hypergrad.safeguard import Safeguard

    guard = Safeguard(collapse_ratio=2.0)
    lr = lambda v: {"lr": torch.tensor([v])}
    # the first run may be bad: nothing to compare with, only divergence would count
    assert run(guard, lr(0.1), [(0.5, 9.0)], final=5.0) is None and guard.best["val_loss"] == 5.0
    assert run(guard, lr(0.2), [(0.5, 1.0)], final=0.5) is None  # the best run now
    # a run with 4 checks: at 0.25 no reference point of the best run exists yet; at 0.5 the
    # best run had 1.0, so 1.9 is within 2x and 2.1 is not
    assert run(guard, lr(0.3), [(0.25, 50.0), (0.5, 1.9), (0.75, 1.0)], final=0.9) is None
    assert run(guard, lr(0.3), [(0.25, 50.0), (0.75, 2.1)], final=0.9) == "collapsed"
    assert run(guard, lr(0.3), [], final=1.01) == "collapsed"  # its end against the best's end
    assert run(guard, lr(0.3), [(0.25, float("nan"))]) == "diverged"
    assert run(guard, lr(0.3), [(0.25, float("inf"))]) == "diverged"
    # the best hyperparameters themselves are compared with nothing but finiteness
    assert run(guard, lr(0.2), [(0.5, 30.0)], final=3.0) is None
    assert guard.best["hparams"]["lr"].item() == pytest.approx(0.2) and guard.best["val_loss"] == 0.5
    off = Safeguard(collapse_ratio=None)
    run(off, lr(0.2), [], final=0.5)
    assert run(off, lr(0.3), [(0.5, 1e9)], final=1e9) is None
    assert run(off, lr(0.3), [(0.5, float("nan"))]) == "diverged"


def test_safeguard_backtracks_to_the_best_and_shrinks_the_entries_that_moved():
    from tune_ext.hypergrad.safeguard import Safeguard

    guard, outer = Safeguard(shrink=0.25), SignDescent({"lr": 0.1, "momentum": 0.1})
    best = {"lr": torch.tensor([0.1, 0.2]), "momentum": torch.tensor([0.5])}
    assert run(guard, best, [(float("nan"), float("nan"))]) == "diverged"
    assert guard.backtrack(outer) is None  # no completed run: nothing to go back to
    assert run(guard, best, [], final=0.4) is None
    lost = {"lr": torch.tensor([0.1, 0.9]), "momentum": torch.tensor([0.5])}
    assert run(guard, lost, [(0.5, float("nan"))]) == "diverged"
    back = guard.backtrack(outer)
    assert torch.equal(back["lr"], best["lr"]) and torch.equal(back["momentum"], best["momentum"])
    assert guard.backtracks == 1
    assert outer.state["lr"]["scale"].tolist() == [1.0, 0.25] and "momentum" not in outer.state
    # a lost run with the best hyperparameters themselves: nothing to go back to either
    assert run(guard, best, [(0.5, float("nan"))]) == "diverged" and guard.backtrack(outer) is None
    restored = Safeguard(shrink=0.25)
    restored.load_state_dict(guard.state_dict())
    assert restored.backtracks == 1 and restored.best["val_loss"] == 0.4
    with pytest.raises(ValueError, match="version"):
        restored.load_state_dict({**guard.state_dict(), "version": 0})
    with pytest.raises(ValueError, match="collapse_ratio"):
        Safeguard(collapse_ratio=1.0)

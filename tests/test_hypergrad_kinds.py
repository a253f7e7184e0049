"""Hyperparameters beyond SGD's: AdamW, loss hyperparameters (per-layer L2, label smoothing),
per-layer learning rates and weight decay, online and with OHO's influence reset.

Each kind: forward mode == reverse mode (float64, tanh, 1e-8) and == central finite differences
of an independent plain-PyTorch training loop (``torch.optim`` with param groups, the loss written
with torch's own ``label_smoothing``)."""
import copy

import pytest
import torch
from torch import nn

from tune_ext.hypergrad import (SGD, AdamW, forward_run, hypergradient, layers_of,
                                regularised_cross_entropy, window_index)
from tune_ext.hypergrad.online import OnlineHypergrad
from tune_ext.hypergrad.outer import ClippedSGD

CE = nn.functional.cross_entropy
D = torch.float64


def tanh_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(D)


def data(steps=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(8, 5, generator=g, dtype=D), torch.randint(0, 3, (8,), generator=g))
               for _ in range(steps)]
    val = (torch.randn(24, 5, generator=g, dtype=D), torch.randint(0, 3, (24,), generator=g))
    return batches, val


def assert_close(a, b, rtol=1e-8):
    assert a.keys() == b.keys()
    for k in a:
        scale = b[k].abs().max().clamp_min(1e-12)
        assert (a[k] - b[k]).abs().max() / scale < rtol, (k, a[k], b[k])


def torch_loop(model, batches, val, hp, optimizer="sgd"):
    """Validation loss after a plain torch.optim run: one param group per layer, per-step values
    set on the groups, L2 and label smoothing written into the loss with torch's own arguments."""
    m = copy.deepcopy(model)
    layers = [list(m[0].parameters()), list(m[2].parameters())]
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    opt = cls([{"params": p} for p in layers], lr=0.0)
    total = len(batches)

    def at(name, t, layer, default=0.0):
        if name not in hp:
            return default
        h = hp[name][window_index(t, total, hp[name].shape[0])]
        return float(h[layer] if h.dim() else h)

    m.train()
    for t, (x, y) in enumerate(batches):
        for i, group in enumerate(opt.param_groups):
            group["lr"], group["weight_decay"] = at("lr", t, i), at("weight_decay", t, i)
            if optimizer == "sgd":
                group["momentum"] = at("momentum", t, i)
            else:
                group["betas"] = (at("beta1", t, i, 0.9), 0.999)
        loss = CE(m(x), y, label_smoothing=at("label_smoothing", t, 0))
        loss = loss + sum(at("l2", t, i) / 2 * sum((p * p).sum() for p in ps) for i, ps in enumerate(layers))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        return CE(m(val[0]), val[1]).item()


def central_differences(loss_of, hp, eps=1e-5):
    out = {}
    for name, h in hp.items():
        d = torch.zeros_like(h)
        for idx in range(h.numel()):
            losses = []
            for sign in (1, -1):
                moved = {n: v.clone() for n, v in hp.items()}
                moved[name].view(-1)[idx] += sign * eps
                losses.append(loss_of(moved))
            d.view(-1)[idx] = (losses[0] - losses[1]) / (2 * eps)
        out[name] = d
    return out


def check(hp, update, train_loss=None, optimizer="sgd", steps=6):
    model, (batches, val) = tanh_mlp(), data(steps)
    kw = dict(update=update, train_loss=train_loss)
    fwd = hypergradient(model, CE, batches, val, hp, mode="forward", **kw)
    rev = hypergradient(model, CE, batches, val, hp, mode="reverse", **kw)
    assert {k: v.shape for k, v in fwd.items()} == {k: v.shape for k, v in hp.items()}
    assert all(v.abs().min() > 0 for v in rev.values())  # every entry influences the loss
    assert_close(fwd, rev)
    # the reverse-over-reverse forward path, checkpointed reverse (segments of 4: 6 = 4 + 2) and
    # auto: the same numbers (the loss's hyperparameters included)
    others = {"hvp": hypergradient(model, CE, batches, val, hp, mode="forward", derivative="hvp", **kw),
              "checkpointed": hypergradient(model, CE, batches, val, hp, mode="checkpointed",
                                            segment=4, **kw),
              "auto": hypergradient(model, CE, batches, val, hp, **kw)}
    for got in others.values():
        assert_close(got, rev)
    fd = central_differences(lambda moved: torch_loop(model, batches, val, moved, optimizer), hp)
    for got in (fwd, rev, *others.values()):
        assert_close(got, fd, rtol=1e-6)
    return fwd


def test_adamw_learning_rate_windows_beta1_and_weight_decay():
    hp = {"lr": torch.tensor([0.05, 0.02], dtype=D), "beta1": torch.tensor([0.8], dtype=D),
          "weight_decay": torch.tensor([0.1, 0.3], dtype=D)}
    check(hp, AdamW(), optimizer="adamw")


def test_adamw_per_layer_learning_rates_and_weight_decay():
    model = tanh_mlp()
    hp = {"lr": torch.tensor([[0.05, 0.02]], dtype=D), "beta1": torch.tensor([0.85], dtype=D),
          "weight_decay": torch.tensor([[0.1, 0.2]], dtype=D)}
    check(hp, AdamW(layers_of(model)), optimizer="adamw")


def test_loss_hyperparameters_per_layer_l2_and_label_smoothing():
    model = tanh_mlp()
    hp = {"lr": torch.tensor([0.3], dtype=D), "momentum": torch.tensor([0.5], dtype=D),
          "l2": torch.tensor([[0.01, 0.03], [0.02, 0.05]], dtype=D),
          "label_smoothing": torch.tensor([0.1, 0.2], dtype=D)}
    check(hp, SGD(layers_of(model)), train_loss=regularised_cross_entropy(layers_of(model)))


def test_sgd_per_layer_learning_rates_and_weight_decay():
    model = tanh_mlp()
    hp = {"lr": torch.tensor([[0.3, 0.1], [0.2, 0.05]], dtype=D), "momentum": torch.tensor([0.7], dtype=D),
          "weight_decay": torch.tensor([[0.01, 0.05]], dtype=D)}
    check(hp, SGD(layers_of(model)))


def test_per_layer_values_need_layer_of():
    model, (batches, val) = tanh_mlp(), data(2)
    with pytest.raises(ValueError, match="layer_of"):
        hypergradient(model, CE, batches, val, {"lr": torch.tensor([[0.1, 0.2]], dtype=D)}, update=SGD())


@pytest.mark.parametrize("update_name", ["sgd", "adamw"])
def test_online_per_layer_influence_is_the_full_horizon_hypergradient(update_name):
    model, (batches, val) = tanh_mlp(), data(6)
    layer_of = layers_of(model)
    update = SGD(layer_of) if update_name == "sgd" else AdamW(layer_of)
    hp = {"lr": torch.tensor([[0.2, 0.05]], dtype=D), "weight_decay": torch.tensor([[0.01, 0.02]], dtype=D)}
    oho = OnlineHypergrad(model, CE, hp, ClippedSGD({"lr": 0.0}), every=len(batches), update=update)
    info = [oho.step(b, val) for b in batches][-1]
    full = forward_run(model, CE, batches, val, hp, update=update)
    assert info["hypergrads"]["lr"].shape == (1, 2)
    assert_close(info["hypergrads"], full.hypergrads, rtol=1e-10)


def test_oho_reset_every_tau_sees_only_the_last_tau_steps():
    # plain SGD (no momentum: the velocity carries nothing) and frozen hyperparameters, so after a
    # reset at step 3 the influence at step 6 is exactly that of a fresh 3-step run from step 3
    model, (batches, val) = tanh_mlp(), data(6)
    hp = {"lr": torch.tensor([0.3], dtype=D), "weight_decay": torch.tensor([0.01], dtype=D)}
    oho = OnlineHypergrad(model, CE, hp, ClippedSGD({"lr": 0.0}), every=3, reset_every=3)
    infos = [oho.step(b, val) for b in batches]
    middle = copy.deepcopy(model)
    oho_at_3 = OnlineHypergrad(model, CE, hp, ClippedSGD({"lr": 0.0}), every=3)
    for b in batches[:3]:
        oho_at_3.step(b, val)
    oho_at_3.load_into(middle)
    fresh = forward_run(middle, CE, batches[3:], val, hp)
    assert_close(infos[-1]["hypergrads"], fresh.hypergrads, rtol=1e-10)
    never = OnlineHypergrad(model, CE, hp, ClippedSGD({"lr": 0.0}), every=3)
    kept = [never.step(b, val) for b in batches][-1]
    assert not torch.allclose(kept["hypergrads"]["lr"], infos[-1]["hypergrads"]["lr"])
    with pytest.raises(ValueError, match="reset_every"):
        OnlineHypergrad(model, CE, hp, ClippedSGD({"lr": 0.1}), method="hd", reset_every=2)


def test_a_loss_torch_cannot_differentiate_in_forward_mode_is_explained():
    # the fused mse_loss has no forward-mode derivative of its backward in PyTorch: say what to do
    torch.manual_seed(0)
    model = nn.Linear(3, 1).to(D)
    batch = (torch.randn(8, 3, dtype=D), torch.randn(8, 1, dtype=D))
    with pytest.raises(RuntimeError, match=r"elementwise operations.*\(out - y\) \*\* 2"):
        hypergradient(model, nn.functional.mse_loss, [batch] * 2, batch, {"lr": torch.tensor([0.1])},
                      mode="forward")
    # the reverse paths differentiate the fused loss's backward in reverse mode: no such limit
    rev = hypergradient(model, nn.functional.mse_loss, [batch] * 2, batch, {"lr": torch.tensor([0.1])},
                        mode="reverse")
    # the reverse-over-reverse path never takes a forward-mode derivative of the loss
    hvp = hypergradient(model, nn.functional.mse_loss, [batch] * 2, batch,
                        {"lr": torch.tensor([0.1])}, mode="forward", derivative="hvp")
    assert_close(hvp, rev)
    elementwise = lambda out, y: ((out - y) ** 2).mean()  # noqa: E731
    assert_close(hvp, hypergradient(model, elementwise, [batch] * 2, batch,
                                    {"lr": torch.tensor([0.1])}, mode="reverse"))
    fwd = hypergradient(model, elementwise, [batch] * 2, batch, {"lr": torch.tensor([0.1])}, mode="forward")
    assert_close(fwd, hypergradient(model, elementwise, [batch] * 2, batch, {"lr": torch.tensor([0.1])},
                                    mode="reverse"))


def test_the_registry_of_kinds_drives_bounds_and_checks():
    import subprocess
    import sys

    from tune_ext.hypergrad.kinds import BOUNDS, KINDS, kinds_of, loss_kinds
    from tune_ext.hypergrad.outer import SignDescent

    assert kinds_of("sgd") == ("lr", "momentum", "weight_decay")
    assert kinds_of("adamw") == ("lr", "beta1", "weight_decay")
    assert loss_kinds() == ("l2", "label_smoothing")
    assert {k for k, v in KINDS.items() if v.per_layer} == {"lr", "weight_decay", "l2"}
    # the outer optimisers clamp into the registry's bounds
    opt = SignDescent({"momentum": 0.5, "label_smoothing": 0.5})
    hp, _ = opt.step({"momentum": torch.tensor([0.9], dtype=D), "label_smoothing": torch.tensor([0.9], dtype=D)},
                     {"momentum": torch.tensor([-1.0]), "label_smoothing": torch.tensor([-1.0])})
    assert float(hp["momentum"]) == BOUNDS["momentum"][1] == 0.999
    assert float(hp["label_smoothing"]) == 1.0
    assert KINDS["momentum"].check(0.9995, "momentum") == 0.9995   # valid, though never learned
    for kind, value, match in (("momentum", 1.0, r"\[0, 1\)"), ("lr", -1e-3, r"\[0, inf\)"),
                               ("label_smoothing", 1.01, r"\[0, 1\]"), ("lr", "fast", "lr_3")):
        with pytest.raises(ValueError, match=match):
            KINDS[kind].check(value, "lr_3" if value == "fast" else kind)
    for k in KINDS.values():  # every search range lies inside the valid values
        assert k.low <= k.search[0] < k.search[1] and k.check(k.search[1], k.name) == k.search[1]
    # pure: no Ray
    code = "import sys, tune_ext.hypergrad.kinds; assert 'ray' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

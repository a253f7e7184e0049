"""OHO and HD on the forward-mode engine, against the batch engine and Baydin's closed form."""
import copy

import pytest
import torch
from torch import nn

from tune_ext.hypergrad import forward_run
from tune_ext.hypergrad.online import OnlineHypergrad
from tune_ext.hypergrad.outer import ClippedSGD

CE = nn.functional.cross_entropy


def setup(steps=8):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
               for _ in range(steps)]
    val = (torch.randn(24, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (24,), generator=g))
    return model, batches, val


D = torch.float64
HP = {"lr": torch.tensor([0.2], dtype=D), "momentum": torch.tensor([0.8], dtype=D),
      "weight_decay": torch.tensor([0.01], dtype=D)}


def test_oho_influence_is_the_full_horizon_hypergradient():
    model, batches, val = setup()
    oho = OnlineHypergrad(model, CE, HP, ClippedSGD({"lr": 0.0}), method="oho", every=len(batches))
    infos = [oho.step(b, val) for b in batches]
    assert infos[:-1] == [None] * (len(batches) - 1)
    full = forward_run(model, CE, batches, val, HP)
    for n in HP:
        assert torch.allclose(infos[-1]["hypergrads"][n], full.hypergrads[n], rtol=1e-10, atol=0)
    assert all(torch.allclose(oho.weights[k], full.weights[k], rtol=1e-12) for k in full.weights)


def test_oho_updates_every_k_steps_and_keeps_the_influence():
    model, batches, val = setup()
    oho = OnlineHypergrad(model, CE, HP, ClippedSGD({"lr": 0.05}, clip=None), method="oho", every=3)
    infos = [oho.step(b, val) for b in batches]
    assert [i is not None for i in infos] == [(t + 1) % 3 == 0 for t in range(len(batches))]
    assert oho.hparams["lr"].item() != 0.2 and oho.hparams["momentum"].item() == 0.8
    assert any(x.abs().max() > 0 for x in oho.state.tweights.values())
    with pytest.raises(ValueError, match="val_batch"):
        OnlineHypergrad(model, CE, HP, ClippedSGD({"lr": 0.1}), every=1).step(batches[0])


def test_hd_is_baydins_rule_for_plain_sgd():
    model, batches, _ = setup(steps=5)
    beta = 0.03
    hd = OnlineHypergrad(model, CE, {"lr": torch.tensor([0.1], dtype=D)}, ClippedSGD({"lr": beta}, clip=None),
                         method="hd")
    for b in batches:
        hd.step(b)
    # Baydin et al. 2018, Algorithm "SGD-HD": alpha_t = alpha_{t-1} + beta * g_t . g_{t-1}
    m = copy.deepcopy(model)
    alpha, prev = 0.1, None
    for x, y in batches:
        m.zero_grad()
        CE(m(x), y).backward()
        g = torch.cat([p.grad.flatten() for p in m.parameters()])
        if prev is not None:
            alpha = alpha + beta * float(g @ prev)
        with torch.no_grad():
            for p in m.parameters():
                p -= alpha * p.grad
        prev = g
    assert hd.hparams["lr"].item() == pytest.approx(alpha, rel=1e-10)
    assert all(torch.allclose(hd.weights[k], p, rtol=1e-10) for k, p in m.named_parameters())


def test_hd_with_momentum_is_sgdn_hd():
    model, batches, _ = setup(steps=4)
    beta, mu = 0.02, 0.7
    hd = OnlineHypergrad(model, CE, {"lr": torch.tensor([0.1], dtype=D), "momentum": torch.tensor([mu], dtype=D)},
                         ClippedSGD({"lr": beta}, clip=None), method="hd")
    for b in batches:
        hd.step(b)
    # SGDN-HD: d f(w_t)/d alpha = -g_t . v_t, where v_t is the velocity used by the last step
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=mu)
    alpha, v = 0.1, None
    for x, y in batches:
        opt.zero_grad()
        CE(m(x), y).backward()
        g = torch.cat([p.grad.flatten() for p in m.parameters()])
        if v is not None:
            alpha = alpha + beta * float(g @ v)
        opt.param_groups[0]["lr"] = alpha
        opt.step()
        v = torch.cat([opt.state[p]["momentum_buffer"].flatten() for p in m.parameters()])
    assert hd.hparams["lr"].item() == pytest.approx(alpha, rel=1e-10)


def test_online_rejects_schedules_and_unknown_methods():
    model, _, _ = setup(steps=1)
    with pytest.raises(ValueError, match="1 window"):
        OnlineHypergrad(model, CE, {"lr": torch.tensor([0.1, 0.2])}, ClippedSGD({"lr": 0.1}))
    with pytest.raises(ValueError, match="oho, hd"):
        OnlineHypergrad(model, CE, HP, ClippedSGD({"lr": 0.1}), method="fds")

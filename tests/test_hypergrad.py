"""Forward-mode hypergradients against reverse mode and against finite differences of torch SGD."""
import pytest
import torch
from torch import nn

from tune_ext.hypergrad import MODES, hypergradient, per_layer_sgd, window_index
from tune_ext.hypergrad.updates import layers_of

CE = nn.functional.cross_entropy


def tanh_mlp(dtype=torch.float64, seed=0, norm=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 7)] + ([nn.BatchNorm1d(7)] if norm else []) + [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers).to(dtype)


def data(dtype=torch.float64, steps=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(8, 5, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g))
               for _ in range(steps)]
    val = (torch.randn(24, 5, generator=g, dtype=dtype), torch.randint(0, 3, (24,), generator=g))
    return batches, val


HP = {"lr": torch.tensor([0.3, 0.2, 0.1]), "momentum": torch.tensor([0.5, 0.9]),
      "weight_decay": torch.tensor([0.01, 0.02, 0.0])}


def assert_close(a, b, rtol=1e-8):
    assert a.keys() == b.keys()
    for k in a:
        scale = b[k].abs().max().clamp_min(1e-12)
        assert (a[k] - b[k]).abs().max() / scale < rtol, (k, a[k], b[k])


@pytest.mark.parametrize("derivative", ["jvp", "hvp"])
@pytest.mark.parametrize("batched", [True, False])
def test_forward_equals_reverse_for_lr_momentum_and_weight_decay_windows(batched, derivative):
    model, (batches, val) = tanh_mlp(), data()
    fwd = hypergradient(model, CE, batches, val, HP, mode="forward", batched=batched,
                        derivative=derivative)
    rev = hypergradient(model, CE, batches, val, HP, mode="reverse")
    assert {k: v.shape for k, v in fwd.items()} == {k: v.shape for k, v in HP.items()}
    assert all(v.abs().min() > 0 for v in rev.values())  # every window influences the loss
    assert_close(fwd, rev)


def sgd_val_loss(model, batches, val, lrs, momentums, wds, groups=None):
    """A plain torch.optim.SGD loop with per-step schedules (independent of the library)."""
    import copy

    m = copy.deepcopy(model)
    params = [{"params": g} for g in groups(m)] if groups else [{"params": list(m.parameters())}]
    opt = torch.optim.SGD(params, lr=0.0, momentum=0.0)
    total = len(batches)
    m.train()
    for t, (x, y) in enumerate(batches):
        for i, group in enumerate(opt.param_groups):
            lr = lrs[window_index(t, total, len(lrs))]
            group["lr"] = float(lr[i] if lr.dim() else lr)
            group["momentum"] = float(momentums[window_index(t, total, len(momentums))])
            group["weight_decay"] = float(wds[window_index(t, total, len(wds))])
        opt.zero_grad()
        CE(m(x), y).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        return CE(m(val[0]), val[1]).item(), m


def central_differences(model, batches, val, hp, eps=1e-5, groups=None):
    out = {}
    for name, h in hp.items():
        d = torch.zeros_like(h, dtype=torch.float64)
        for idx in range(h.numel()):
            losses = []
            for sign in (1, -1):
                moved = {n: v.clone().double() for n, v in hp.items()}
                moved[name].view(-1)[idx] += sign * eps
                losses.append(sgd_val_loss(model, batches, val, moved["lr"], moved["momentum"],
                                           moved["weight_decay"], groups)[0])
            d.view(-1)[idx] = (losses[0] - losses[1]) / (2 * eps)
        out[name] = d
    return out


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_central_differences_of_torch_sgd(mode):
    model, (batches, val) = tanh_mlp(), data()
    got = hypergradient(model, CE, batches, val, HP, mode=mode)
    assert_close(got, central_differences(model, batches, val, HP), rtol=1e-6)


def tanh_cnn(seed=0):
    """A strided 1D CNN whose first convolution's input (the data) needs no gradient: the
    reverse paths' convolution double backward skips that term (hypergrad/convolution.py)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 3, 3, stride=2), nn.Tanh(), nn.Conv1d(3, 4, 3), nn.Tanh(),
                         nn.Flatten(), nn.Linear(12, 3)).to(torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_equals_central_differences_through_convolutions(mode):
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 1, 11, generator=g, dtype=torch.float64),
                torch.randint(0, 3, (8,), generator=g)) for _ in range(6)]
    val = (torch.randn(24, 1, 11, generator=g, dtype=torch.float64), torch.randint(0, 3, (24,), generator=g))
    model = tanh_cnn()
    got = hypergradient(model, CE, batches, val, HP, mode=mode)
    assert all(g.abs().min() > 0 for g in got.values())
    assert_close(got, central_differences(model, batches, val, HP), rtol=1e-6)


def test_per_layer_learning_rates_need_only_a_new_update():
    model, (batches, val) = tanh_mlp(), data(steps=6)
    layer_of = layers_of(model)
    assert layer_of == {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1}
    hp = {"lr": torch.tensor([[0.3, 0.1], [0.2, 0.05]]), "momentum": torch.tensor([0.9]),
          "weight_decay": torch.tensor([0.01])}
    update = per_layer_sgd(layer_of)
    fwd = hypergradient(model, CE, batches, val, hp, mode="forward", update=update)
    rev = hypergradient(model, CE, batches, val, hp, mode="reverse", update=update)
    assert fwd["lr"].shape == (2, 2)
    assert_close(fwd, rev)
    assert_close(hypergradient(model, CE, batches, val, hp, mode="checkpointed", segment=4,
                               update=update), rev)
    # and it is the derivative of torch.optim.SGD with one parameter group per layer
    groups = lambda m: [list(m[0].parameters()), list(m[2].parameters())]
    assert_close(fwd, central_differences(model, batches, val, hp, groups=groups), rtol=1e-6)


def test_batchnorm_running_statistics_follow_torch_and_are_not_differentiated():
    from tune_ext.hypergrad import forward_run

    model, (batches, val) = tanh_mlp(norm=True), data(steps=6)
    before = {k: b.clone() for k, b in model.state_dict().items()}
    run = forward_run(model, CE, batches, val, HP)
    rev = hypergradient(model, CE, batches, val, HP, mode="reverse")
    assert_close(run.hypergrads, rev)
    hvp = forward_run(model, CE, batches, val, HP, derivative="hvp")  # batch statistics, twice differentiated
    assert_close(hvp.hypergrads, rev)
    assert_close(hvp.hypergrads, run.hypergrads, rtol=1e-10)
    assert torch.allclose(hvp.buffers["1.running_mean"], run.buffers["1.running_mean"], rtol=1e-12)
    # the model itself is untouched; the run's buffers are those of torch's own SGD loop
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loss, trained = sgd_val_loss(model, batches, val, HP["lr"], HP["momentum"], HP["weight_decay"])
    assert torch.allclose(run.buffers["1.running_mean"], trained[1].running_mean, rtol=1e-10)
    assert int(run.buffers["1.num_batches_tracked"]) == len(batches)
    assert abs(run.val_loss - loss) < 1e-10
    fd = central_differences(model, batches, val, {"lr": HP["lr"], "momentum": HP["momentum"],
                                                   "weight_decay": HP["weight_decay"]})
    # finite differences also see the running statistics move with the hyperparameters; treating
    # them as constants leaves a small bias, not a different derivative
    assert_close(run.hypergrads, fd, rtol=0.1)


def test_compiled_step_gives_the_same_hypergradients():
    # torch.compile of the same differentiated step: BatchNorm, a short last batch (a second
    # static shape) and several windows, against reverse mode and the eager forward run
    from tune_ext.hypergrad import forward_run

    model, (batches, val) = tanh_mlp(norm=True), data(steps=7)
    batches[-1] = (batches[-1][0][:5], batches[-1][1][:5])
    compiled = forward_run(model, CE, batches, val, HP, compile=True)
    eager = forward_run(model, CE, batches, val, HP)
    assert_close(compiled.hypergrads, hypergradient(model, CE, batches, val, HP, mode="reverse"))
    assert_close(compiled.hypergrads, eager.hypergrads, rtol=1e-12)
    assert all(torch.allclose(compiled.weights[k], eager.weights[k], rtol=1e-12) for k in eager.weights)
    assert torch.allclose(compiled.buffers["1.running_mean"], eager.buffers["1.running_mean"], rtol=1e-12)


def test_a_watch_sees_the_validation_loss_so_far_and_can_stop_the_run():
    from tune_ext.hypergrad import forward_run

    model, (batches, val) = tanh_mlp(norm=True), data(steps=9)
    seen = []
    full = forward_run(model, CE, batches, val, HP, watch=lambda t, loss: seen.append((t, loss)),
                       watch_every=3)
    assert [t for t, _ in seen] == [3, 6] and full.steps == 9 and not full.stopped
    # the loss at step 3 is that of the weights after 3 steps (same windows: 3 of 9 steps)
    part = forward_run(model, CE, batches[:3], val, {n: h[:1] for n, h in HP.items()})
    assert seen[0][1] == pytest.approx(part.val_loss, rel=1e-12)
    stopped = forward_run(model, CE, batches, val, HP, watch=lambda t, loss: t == 6, watch_every=3)
    assert stopped.stopped and stopped.steps == 6 and stopped.hypergrads is None
    assert stopped.val_loss == pytest.approx(seen[1][1], rel=1e-12)
    with pytest.raises(ValueError, match="watch_every"):
        forward_run(model, CE, batches, val, HP, watch=lambda t, loss: False)


def test_float32_agrees_with_float64():
    (b64, v64) = data()
    b32 = [(x.float(), y) for x, y in b64]
    g64 = hypergradient(tanh_mlp(torch.float64), CE, b64, v64, HP)
    g32 = hypergradient(tanh_mlp(torch.float32), CE, b32, (v64[0].float(), v64[1]), HP)
    assert all(g32[k].dtype == torch.float32 for k in g32)
    assert_close({k: v.double() for k, v in g32.items()}, g64, rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "backward"}, "mode must be one of auto, forward, reverse, checkpointed"),
    ({"derivative": "hessian"}, "derivative must be one of jvp, hvp"),
    ({"hparams": {"lr": torch.tensor(0.1)}}, r"hparams\['lr'\].*window"),
    ({"hparams": {}}, "at least one hyperparameter"),
    ({"train_batches": iter([])}, "sequence with len"),
])
def test_bad_arguments_are_named(kwargs, match):
    batches, val = data(steps=2)
    args = {"model": tanh_mlp(), "loss_fn": CE, "train_batches": batches, "val_batch": val,
            "hparams": HP, **kwargs}
    with pytest.raises(ValueError, match=match):
        hypergradient(**args)


def test_hypergrad_package_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, tune_ext.hypergrad, tune_ext.hypergrad.online, tune_ext.hypergrad.outer; " \
           "print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

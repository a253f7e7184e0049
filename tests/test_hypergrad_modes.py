"""Every exact path gives the same run: forward, reverse, checkpointed (any segment), auto.

Float64, tanh: the paths differ only in the order of their sums, so they agree to 1e-8, and so do (to 1e-10)
the runs' ends (weights, BatchNorm buffers, validation loss), early stops included. Their
agreement with finite differences of plain torch.optim loops is in test_hypergrad.py and
test_hypergrad_kinds.py (every mode, every hyperparameter kind)."""
import pytest
import torch
from torch import nn

from hypergrad_helpers import D, assert_close, data

from tune_ext.hypergrad import (SGD, AdamW, MODES, choose_mode, default_memory_budget, inner_run,
                                layers_of)
from tune_ext.hypergrad.choice import estimates
from tune_ext.hypergrad.reverse import step_graph_bytes

CE = nn.functional.cross_entropy
HP = {"lr": torch.tensor([0.3, 0.2, 0.1], dtype=D), "momentum": torch.tensor([0.5, 0.9], dtype=D),
      "weight_decay": torch.tensor([0.01, 0.02, 0.0], dtype=D)}


def bn_mlp(seed=0):
    # no bias before the BatchNorm: its gradient is rounding noise, which AdamW's normalised step
    # would turn into 1e-10 differences between paths
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7, bias=False), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3)).to(D)


def assert_same_run(run, ref):
    assert run.steps == ref.steps and run.stopped == ref.stopped
    assert run.val_loss == pytest.approx(ref.val_loss, rel=1e-10)
    assert_close(run.weights, ref.weights, rtol=1e-10)
    assert_close({k: b.double() for k, b in run.buffers.items()},
                 {k: b.double() for k, b in ref.buffers.items()}, rtol=1e-10)
    if ref.hypergrads is None:
        assert run.hypergrads is None
    else:
        assert_close(run.hypergrads, ref.hypergrads)


@pytest.mark.parametrize("update", ["sgd", "adamw"])
def test_every_mode_gives_the_same_run_with_batchnorm_buffers(update):
    model, (batches, val) = bn_mlp(), data(9)
    before = {k: b.clone() for k, b in model.state_dict().items()}
    hp, kw = HP, {}
    if update == "adamw":
        hp = {"lr": torch.tensor([0.05, 0.02], dtype=D), "beta1": torch.tensor([0.8], dtype=D),
              "weight_decay": torch.tensor([0.1], dtype=D)}
        kw = {"update": AdamW()}
    ref = inner_run(model, CE, batches, val, hp, mode="forward", **kw)
    assert ref.mode == "forward" and int(ref.buffers["1.num_batches_tracked"]) == len(batches)
    assert not torch.equal(ref.buffers["1.running_mean"], before["1.running_mean"])
    for mode in ("reverse", "checkpointed", "auto"):
        run = inner_run(model, CE, batches, val, hp, mode=mode, **kw)
        assert run.mode == ("reverse" if mode == "auto" else mode)  # auto: memory is plentiful here
        assert_same_run(run, ref)
    # the model itself is untouched by every path
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("segment", [1, 2, 4, 5, 8, 9, 20])
def test_checkpoint_segments_that_do_not_divide_the_horizon(segment):
    model, (batches, val) = bn_mlp(), data(steps=9)
    ref = inner_run(model, CE, batches, val, HP, mode="reverse")
    run = inner_run(model, CE, batches, val, HP, mode="checkpointed", segment=segment)
    assert run.mode == "checkpointed"
    assert_same_run(run, ref)


@pytest.mark.parametrize("mode", MODES)
def test_a_watch_sees_the_same_losses_and_stops_every_mode_at_the_same_step(mode):
    model, (batches, val) = bn_mlp(), data(steps=9)
    ref_seen, seen = [], []
    ref = inner_run(model, CE, batches, val, HP, mode="forward",
                    watch=lambda t, loss: ref_seen.append((t, loss)), watch_every=2)
    run = inner_run(model, CE, batches, val, HP, mode=mode,
                    watch=lambda t, loss: seen.append((t, loss)), watch_every=2)
    assert [t for t, _ in seen] == [t for t, _ in ref_seen] == [2, 4, 6, 8]
    assert [loss for _, loss in seen] == pytest.approx([loss for _, loss in ref_seen], rel=1e-12)
    assert_same_run(run, ref)
    stop = lambda t, loss: t == 6  # noqa: E731
    ref = inner_run(model, CE, batches, val, HP, mode="forward", watch=stop, watch_every=3)
    run = inner_run(model, CE, batches, val, HP, mode=mode, watch=stop, watch_every=3,
                    **({"segment": 4} if mode == "checkpointed" else {}))
    assert run.stopped and run.steps == 6 and run.hypergrads is None
    assert_same_run(run, ref)
    with pytest.raises(ValueError, match="watch_every"):
        inner_run(model, CE, batches, val, HP, mode=mode, watch=stop)


class Unpacked:
    """An update without ``packed``: the reverse paths call it on the parameter dicts as they are."""

    def __init__(self, update):
        self.update, self.init = update, getattr(update, "init", None)
        if self.init is None:
            del self.init

    def __call__(self, *args):
        return self.update(*args)


@pytest.mark.parametrize("rule", ["sgd", "per-layer sgd", "adamw"])
def test_packed_weights_give_the_run_of_the_parameter_dicts(rule):
    # the reverse paths record SGD and AdamW on all weights packed into one vector; an update
    # without ``packed`` runs per parameter: the same run, weights and optimiser state handed back
    # per parameter, shaped as the model's
    model, (batches, val) = bn_mlp(), data(steps=7)
    layer_of = layers_of(model)
    hp, update = dict(HP), SGD()
    if rule == "per-layer sgd":
        hp["lr"], update = torch.tensor([[0.3, 0.1, 0.2], [0.05, 0.2, 0.1]], dtype=D), SGD(layer_of)
    if rule == "adamw":
        hp = {"lr": torch.tensor([0.05, 0.02], dtype=D), "beta1": torch.tensor([0.8], dtype=D),
              "weight_decay": torch.tensor([0.1], dtype=D)}
        update = AdamW()
    shapes = {k: p.shape for k, p in model.named_parameters()}
    for mode, kw in (("reverse", {}), ("checkpointed", {"segment": 3})):
        ref = inner_run(model, CE, batches, val, hp, mode=mode, update=Unpacked(update), **kw)
        run = inner_run(model, CE, batches, val, hp, mode=mode, update=update, **kw)
        assert_same_run(run, ref)
        assert {k: w.shape for k, w in run.weights.items()} == shapes
        velocity = run.velocity if rule != "adamw" else run.velocity["m"]
        assert {k: v.shape for k, v in velocity.items()} == shapes
        flat = lambda v: torch.cat([x.reshape(-1) for x in v.values()])  # noqa: E731
        ref_velocity = ref.velocity if rule != "adamw" else ref.velocity["m"]
        assert torch.allclose(flat(velocity), flat(ref_velocity), rtol=1e-10, atol=0)


def test_an_update_whose_layers_miss_a_parameter_runs_unpacked_and_says_so():
    # a per-layer value with a layer_of that misses a parameter is the update's own error, packed
    # or not; with scalar values the same update runs
    model, (batches, val) = bn_mlp(), data(steps=3)
    partial = {k: i for k, i in layers_of(model).items() if not k.startswith("3.")}
    hp = dict(HP, lr=torch.tensor([[0.3, 0.1, 0.2]], dtype=D))
    with pytest.raises(ValueError, match="layer_of has no layer for parameter '3.weight'"):
        inner_run(model, CE, batches, val, hp, mode="reverse", update=SGD(partial))
    run = inner_run(model, CE, batches, val, HP, mode="reverse", update=SGD(partial))
    assert_same_run(run, inner_run(model, CE, batches, val, HP, mode="reverse"))


@pytest.mark.slow  # two compilations of a double-differentiated step: minutes on 2 shared cores
def test_compiled_reverse_paths_give_the_same_hypergradients():
    # torch.compile of the recorded step (torch.func.grad inside, differentiated by the outer
    # backward): BatchNorm and a short last batch (a second static shape)
    model, (batches, val) = bn_mlp(), data(steps=7)
    batches[-1] = (batches[-1][0][:5], batches[-1][1][:5])
    ref = inner_run(model, CE, batches, val, HP, mode="reverse")
    for mode in ("reverse", "checkpointed"):
        assert_same_run(inner_run(model, CE, batches, val, HP, mode=mode, compile=True), ref)


def test_auto_picks_reverse_with_room_then_checkpointed_then_forward_and_refuses_too_little():
    model, (batches, val) = bn_mlp(), data(steps=9)
    step_bytes, state_bytes = step_graph_bytes(model, CE, batches[0], HP)
    assert 0 < state_bytes < step_bytes  # a step's graph holds activations of a whole batch
    x, y = batches[0]
    bigger, _ = step_graph_bytes(model, CE, (torch.cat([x] * 4), torch.cat([y] * 4)), HP)
    assert bigger > 2 * step_bytes  # it grows with the batch
    memory, cost, k = estimates(8, 9, step_bytes, state_bytes)
    assert memory["checkpointed"] < memory["reverse"] and cost["reverse"] < cost["checkpointed"]

    def mode_with(budget):
        return inner_run(model, CE, batches, val, HP, memory_budget=budget).mode

    assert mode_with(memory["reverse"]) == "reverse"
    assert mode_with(1e12) == "reverse"
    # below reverse's estimate: the next cheapest path that fits (forward costs ~ entries x a step)
    assert mode_with(memory["reverse"] * 0.99) == "checkpointed"
    c = choose_mode(entries=8, steps=9, step_bytes=step_bytes, state_bytes=state_bytes,
                    budget=memory["checkpointed"])
    assert c.mode == "checkpointed" and c.segment == k and 1 <= k <= 9
    # with few entries and a budget only forward mode fits, forward it is
    long, _, _ = estimates(1, 1000, step_bytes, state_bytes)
    c = choose_mode(entries=1, steps=1000, step_bytes=step_bytes, state_bytes=state_bytes,
                    budget=long["forward"])
    assert c.mode == "forward" and c.memory["checkpointed"] > c.budget
    with pytest.raises(ValueError, match=r"memory_budget .* below every exact path's estimate"):
        mode_with(min(memory.values()) * 0.5)
    # the default budget is a part of this machine's free memory
    assert 0 < default_memory_budget("cpu")


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "checkpointed", "segment": 0}, "segment must be a positive int"),
    ({"mode": "forward", "segment": 3}, "segment is for mode='checkpointed'"),
    ({"mode": "reverse", "memory_budget": 1e9}, "memory_budget is for mode='auto'"),
    ({"memory_budget": -1.0}, "memory_budget must be > 0"),
    ({"mode": "fast"}, "mode must be one of auto, forward, reverse, checkpointed"),
])
def test_bad_mode_arguments_are_named(kwargs, match):
    model, (batches, val) = bn_mlp(), data(steps=2)
    with pytest.raises(ValueError, match=match):
        inner_run(model, CE, batches, val, HP, **kwargs)

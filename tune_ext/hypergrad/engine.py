"""Forward-mode hypergradients of the validation loss through a whole training run.

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021)
carry the derivatives of (weights, velocity) with respect to every hyperparameter forward through
training, so memory does not grow with the horizon. Their code derives the recursion by hand for
SGD-momentum; here one step of training is a pure function (``step``) and ``torch.func.jvp`` of it
*is* the recursion, for whatever update rule (``updates.py``) is plugged in.

Hyperparameters are schedules: ``hparams[name]`` has shape ``(n_windows, *value_shape)`` and step
t of T uses ``hparams[name][floor(n_windows * t / T)]``. An *entry* is one element of one
hyperparameter tensor; forward mode carries one tangent of (weights, velocity) per entry.
The reverse paths are in ``reverse.py``; ``run.inner_run`` chooses between them (``choice.py``).

Example::

    import torch
    from tune_ext.hypergrad import forward_run
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(10)]
    run = forward_run(model, torch.nn.functional.cross_entropy, batches, batches[0],
                      {"lr": torch.tensor([0.1, 0.05]), "momentum": torch.tensor([0.9]),
                       "weight_decay": torch.tensor([0.0])})
    run.hypergrads["lr"].shape  # torch.Size([2])
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.func import grad, grad_and_value, jvp, vjp, vmap
from torch.utils._pytree import tree_map

from tune_ext.hypergrad.functional import FunctionalModel
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.state import CarriedState
from tune_ext.hypergrad.updates import Update, init_velocity, sgd_momentum

# how the tangent of a step is formed: "jvp" is forward over reverse (jvp of update(w, v, grad L));
# "hvp" takes the loss's second derivatives reverse over reverse and jvp of the update alone
DERIVATIVES = ("jvp", "hvp")


def as_hparams(hparams: dict, like: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hyperparameter schedules as tensors of ``like``'s dtype and device, each with >= 1 window."""
    if not hparams:
        raise ValueError("hparams must name at least one hyperparameter, e.g. {'lr': torch.tensor([0.1])}")
    out = {}
    for name, value in hparams.items():
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()
        if t.dim() == 0:
            raise ValueError(f"hparams[{name!r}] must have a window dimension, e.g. shape (n_windows,); "
                             f"got a scalar")
        if t.shape[0] < 1:
            raise ValueError(f"hparams[{name!r}] must have at least one window, got shape {tuple(t.shape)}")
        out[name] = t.clone()
    return out


def step_values(hparams: dict, t: int, total: int) -> dict[str, torch.Tensor]:
    """This step's value of every schedule: window ``floor(n * t / total)`` of each."""
    return {n: h[window_index(t, total, h.shape[0])] for n, h in hparams.items()}


def entry_basis(hparams: dict) -> dict[str, torch.Tensor]:
    """One unit tangent per entry: ``{name: (K, *shape)}`` whose flattened concatenation is eye(K)."""
    sizes = [h.numel() for h in hparams.values()]
    like = next(iter(hparams.values()))
    eye = torch.eye(sum(sizes), dtype=like.dtype, device=like.device)
    return {n: block.reshape(-1, *h.shape)
            for (n, h), block in zip(hparams.items(), eye.split(sizes, dim=1))}


def split_entries(flat: torch.Tensor, hparams: dict) -> dict[str, torch.Tensor]:
    """Inverse of flattening: a (K,) vector back into ``{name: tensor shaped like hparams[name]}``."""
    sizes = [h.numel() for h in hparams.values()]
    return {n: part.reshape(h.shape) for (n, h), part in zip(hparams.items(), flat.split(sizes))}


class Trainer:
    """One training step as a pure function, and its forward-mode derivative for every entry.

    model, loss_fn: as in ``hypergradient``. update: a pure update rule (``updates.py``).
    train_loss: a training loss that reads this step's hyperparameters (``losses.py``); by
        default the training loss is ``loss_fn``.
    batched: carry all tangents through one ``vmap``-ed ``jvp`` (fast) or loop over entries.
    derivative: how the tangent of a step is formed, both exact and generic over the update and
        the loss: ``"jvp"``, ``torch.func.jvp`` of the whole step (forward over reverse: the
        tangent of ``grad(loss)`` is a forward-mode Hessian-vector product); or ``"hvp"``, the
        tangent of the gradient as the gradient (in the weights) of the loss's directional
        derivative along the tangent (reverse over reverse: ``vjp`` of ``grad``, including the
        mixed weights/hyperparameter term of a training loss with hyperparameters), then ``jvp`` of
        the update alone. Which is cheaper depends on the model and device
        (``scripts/fds_step_cost.py`` times both).
    compile: run the differentiated step through ``torch.compile(fullgraph=True)``: the same
        function, fused into a few kernels. It costs a one-off compilation (seconds, again for a
        new batch shape) and then removes most of the per-operation overhead that dominates small
        models; it needs what TorchInductor needs (a C++ compiler on CPU, Triton on GPU) and
        raises, rather than falling back, when that is missing.
    """

    def __init__(self, model, loss_fn, update: Update = sgd_momentum, batched: bool = True,
                 compile: bool = False, train_loss=None, derivative: str = "jvp"):
        if derivative not in DERIVATIVES:
            raise ValueError(f"derivative must be one of {', '.join(DERIVATIVES)}; got {derivative!r}")
        self._f = FunctionalModel(model, loss_fn, train_loss)
        self.update, self.batched, self.derivative = update, batched, derivative
        self._bases = {}
        fn = self._tangent_batched if batched else self._tangent_one
        # compiled lazily on the first call; static shapes: one compilation per batch shape
        self._differentiated = torch.compile(fn, fullgraph=True, dynamic=False) if compile else fn

    def start(self, n_entries: int) -> CarriedState:
        """The model's weights and buffers, the update's initial velocity, zero tangents, step 0."""
        w = self._f.weights()
        return CarriedState.zeros(w, init_velocity(self.update, w), self._f.buffers(), n_entries)

    def step(self, weights, velocity, buffers, hp, batch):
        """One plain training step (no tangents; autograd may track it): new (weights, velocity).

        Advances ``buffers`` in place first, as a training-mode forward pass would.
        """
        self._f.advance_buffers(weights, buffers, batch)
        with self._f.training():
            return self._pure_step(weights, velocity, buffers, hp, batch)

    def tangent_step(self, state: CarriedState, batch, *, hparams: dict, total: int) -> CarriedState:
        """``state`` after one step on ``batch``, with its tangents carried forward.

        Step t = ``state.step`` of ``total`` reads one window of each schedule, so its tangent is
        the jvp of the step with respect to this step's values ``h[i]``, seeded with the matching
        column of the entry basis: entries of other windows get a zero seed and only carry their
        earlier influence.
        """
        t = state.step
        self._f.advance_buffers(state.weights, state.buffers, batch)
        hp = step_values(hparams, t, total)
        seeds = {n: e[(slice(None), window_index(t, total, e.shape[1]))]
                 for n, e in self._basis(hparams).items()}
        args = (state.weights, state.velocity, state.buffers, hp, batch)
        fn = self._differentiated
        with self._f.training(), _explain_forward_ad_errors():
            if self.batched:
                (w, v), (tw, tv) = fn(*args, state.tweights, state.tvelocity, seeds)
                # vmap returns the shared primal with a broadcast entry dim; keep one copy
                w, v = tree_map(lambda x: x[0], (w, v))
            else:
                outs = [fn(*args, tree_map(lambda x: x[j], state.tweights),
                           tree_map(lambda x: x[j], state.tvelocity), {n: e[j] for n, e in seeds.items()})
                        for j in range(state.n_entries)]
                (w, v), _ = outs[0]
                tw, tv = tree_map(lambda *xs: torch.stack(xs), *[o[1] for o in outs])
        return CarriedState(w, v, tw, tv, state.buffers, t + 1)

    def _basis(self, hparams):
        # the same unit tangents every step of a run: built once per set of schedule shapes
        key = tuple((n, tuple(h.shape), h.dtype, h.device) for n, h in hparams.items())
        if key not in self._bases:
            self._bases[key] = entry_basis(hparams)
        return self._bases[key]

    def _pure_step(self, weights, velocity, buffers, hp, batch):
        # the loss without mode switches (tangent_step sets them around the call), so the
        # function stays traceable as one graph; hp reaches the loss (its hyperparameters)
        grads = grad(self._f.train_loss_as_set)(weights, buffers, batch, hp)
        return self.update(weights, velocity, grads, hp)

    def _tangent_one(self, weights, velocity, buffers, hp, batch, tw, tv, seed):
        if self.derivative == "hvp":
            return self._tangent_one_hvp(weights, velocity, buffers, hp, batch, tw, tv, seed)
        fn = lambda w, v, h: self._pure_step(w, v, buffers, h, batch)
        return jvp(fn, (weights, velocity, hp), (tw, tv, seed))

    def _tangent_one_hvp(self, weights, velocity, buffers, hp, batch, tw, tv, seed):
        g, hvp = self._loss_hvp(weights, buffers, hp, batch)
        return jvp(self.update, (weights, velocity, g, hp), (tw, tv, hvp(tw, seed), seed))

    def _loss_hvp(self, weights, buffers, hp, batch):
        """The training loss's gradient g, and ``(tw, seed) ->`` the tangent of g along them.

        d/dt grad_w L(w + t tw, h + t seed) = H_ww tw + H_wh seed = grad_w of <(grad_w L, grad_h L),
        (tw, seed)>: the vjp (in the weights) of the gradient, reverse over reverse. Its graph is
        built once per step; vmap-ing the returned function batches only the second backward.
        """
        loss = lambda w, h: self._f.train_loss_as_set(w, buffers, batch, h)
        if self._f.custom_train_loss is None:  # the loss cannot read hp: no mixed term
            g, vjp_fn = vjp(lambda w: grad(loss)(w, hp), weights)
            return g, lambda tw, seed: vjp_fn(tw)[0]
        (g, _), vjp_fn = vjp(lambda w: grad(loss, argnums=(0, 1))(w, hp), weights)
        return g, lambda tw, seed: vjp_fn((tw, seed))[0]

    def _tangent_batched(self, weights, velocity, buffers, hp, batch, tw, tv, seeds):
        # primals are shared (not batched), so the step itself runs once for all entries
        if self.derivative == "hvp":
            g, hvp = self._loss_hvp(weights, buffers, hp, batch)
            one = lambda a, b, e: jvp(self.update, (weights, velocity, g, hp), (a, b, hvp(a, e), e))
        else:
            one = lambda a, b, e: self._tangent_one(weights, velocity, buffers, hp, batch, a, b, e)
        return vmap(one, randomness="same")(tw, tv, seeds)

    def val_loss(self, weights, buffers, batch):
        """The plain loss in evaluation mode (running statistics): what hyperparameters are tuned for."""
        return self._f.val_loss(weights, buffers, batch)

    def hypergrad(self, state: CarriedState, batch, objective: str = "val"):
        """d loss(batch)/d entries = <grad of the loss at the weights, each weight tangent>: (K,).

        objective: ``"val"`` (eval mode, running statistics) or ``"train"`` (HD's next batch, the
        plain ``loss_fn`` in training mode).
        """
        loss_fn = self._f.val_loss if objective == "val" else self._f.train_loss
        g, loss = grad_and_value(loss_fn)(state.weights, state.buffers, batch)
        flat = sum(torch.einsum("k...,...->k", state.tweights[k], g[k]) for k in g)
        return loss.detach(), flat


@contextlib.contextmanager
def _explain_forward_ad_errors():
    try:
        yield
    except (RuntimeError, NotImplementedError) as exc:
        if "forward AD" not in str(exc) and "ZeroTensors are immutable" not in str(exc):
            raise
        raise RuntimeError(
            "the training loss uses an operation whose backward PyTorch cannot differentiate in "
            "forward mode (e.g. the fused mse_loss, huber_loss): write the loss from elementwise "
            "operations, e.g. lambda out, y: ((out - y) ** 2).mean()") from exc


@dataclass
class InnerRun:
    """The end of a differentiated training run."""

    weights: dict
    velocity: object
    buffers: dict
    val_loss: float
    hypergrads: dict | None  # {name: tensor shaped like hparams[name]}; None if stopped early
    steps: int = 0  # training steps taken (fewer than len(train_batches) if stopped early)
    stopped: bool = False  # a ``watch`` stopped the run before its end
    mode: str = "forward"  # the path that computed it: "forward", "reverse" or "checkpointed"


def forward_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
                update: Update = sgd_momentum, batched: bool = True, compile: bool = False,
                train_loss=None, derivative: str = "jvp",
                watch: Callable[[int, float], bool] | None = None,
                watch_every: int | None = None) -> InnerRun:
    """Train from ``model``'s parameters with zero velocity, carrying forward-mode tangents.

    Memory is O(parameters x entries), whatever ``len(train_batches)``. update, train_loss,
    batched, compile, derivative: see ``Trainer``.
    watch, watch_every: every ``watch_every`` steps before the last one, ``watch(steps taken,
        validation loss of the weights so far)`` is called (the loss on ``val_batch`` in eval mode,
        NaN or inf once training has diverged); when it returns True the run stops there, without
        hypergradients (``InnerRun.stopped``): a run that is clearly lost costs no more steps.
    """
    trainer = Trainer(model, loss_fn, update, batched, compile, train_loss, derivative)
    total = check_batches(train_batches)
    check_watch(watch, watch_every)
    hparams = as_hparams(hparams, next(model.parameters()))
    state = trainer.start(sum(h.numel() for h in hparams.values()))
    with torch.no_grad():  # no autograd graph: tangents are forward-mode duals, not history
        for batch in train_batches:
            state = trainer.tangent_step(state, batch, hparams=hparams, total=total)
            if watch is not None and state.step % watch_every == 0 and state.step < total:
                loss = float(trainer.val_loss(state.weights, state.buffers, val_batch))
                if watch(state.step, loss):
                    return InnerRun(state.weights, state.velocity, state.buffers, loss, None,
                                    state.step, stopped=True)
        loss, flat = trainer.hypergrad(state, val_batch)
    return InnerRun(state.weights, state.velocity, state.buffers, float(loss),
                    split_entries(flat, hparams), state.step)


def check_batches(train_batches) -> int:
    """The horizon T = len(train_batches), refusing iterators and empty runs."""
    try:
        total = len(train_batches)
    except TypeError:
        raise ValueError("train_batches must be a sequence with len() (the horizon T sets the "
                         "windows); got an iterator — pass list(...)") from None
    if total < 1:
        raise ValueError("train_batches must hold at least one batch")
    return total


def check_watch(watch, watch_every) -> None:
    """``watch_every`` must be a positive int when a ``watch`` is given."""
    if watch is not None and (isinstance(watch_every, bool) or not isinstance(watch_every, int)
                              or watch_every < 1):
        raise ValueError(f"watch_every must be a positive int when watch is given, got {watch_every!r}")

"""Exact hypergradients of the validation loss through a whole SGD run, forward or reverse mode.

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS 2021)
carry the derivatives of (weights, velocity) with respect to every hyperparameter forward through
training, so memory does not grow with the horizon. Their code derives the recursion by hand for
SGD-momentum; here one step of training is a pure function (``step``) and ``torch.func.jvp`` of it
*is* the recursion, for whatever update rule (``updates.py``) is plugged in.

Hyperparameters are schedules: ``hparams[name]`` has shape ``(n_windows, *value_shape)`` and step
t of T uses ``hparams[name][floor(n_windows * t / T)]``. An *entry* is one element of one
hyperparameter tensor; forward mode carries one tangent of (weights, velocity) per entry.

Example::

    import torch
    from tune_ext.hypergrad import hypergradient
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(10)]
    hg = hypergradient(model, torch.nn.functional.cross_entropy, batches, batches[0],
                       {"lr": torch.tensor([0.1, 0.05]), "momentum": torch.tensor([0.9]),
                        "weight_decay": torch.tensor([0.0])})
    hg["lr"].shape  # torch.Size([2])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.func import grad, grad_and_value, jvp, vmap

from tune_ext.hypergrad.functional import FunctionalModel
from tune_ext.hypergrad.schedule import window_index
from tune_ext.hypergrad.updates import Update, sgd_momentum

MODES = ("forward", "reverse")


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
    """One SGD step as a pure function, and its forward-mode derivative for every entry.

    model, loss_fn: as in ``hypergradient``. update: a pure update rule (``updates.py``).
    batched: carry all tangents through one ``vmap``-ed ``jvp`` (fast) or loop over entries.
    compile: run the differentiated step through ``torch.compile(fullgraph=True)``: the same
        function, fused into a few kernels. It costs a one-off compilation (seconds, again for a
        new batch shape) and then removes most of the per-operation overhead that dominates small
        models; it needs what TorchInductor needs (a C++ compiler on CPU, Triton on GPU) and
        raises, rather than falling back, when that is missing.
    """

    def __init__(self, model, loss_fn, update: Update = sgd_momentum, batched: bool = True,
                 compile: bool = False):
        self.f = FunctionalModel(model, loss_fn)
        self.update, self.batched = update, batched
        fn = self._tangent_batched if batched else self._tangent_one
        # compiled lazily on the first call; static shapes: one compilation per batch shape
        self._differentiated = torch.compile(fn, fullgraph=True, dynamic=False) if compile else fn

    def step(self, weights, velocity, buffers, hp, batch):
        """One training step: ``update(weights, velocity, grad of the training loss, hp)``."""
        with self.f.training():
            return self._pure_step(weights, velocity, buffers, hp, batch)

    def tangent_step(self, weights, velocity, buffers, hparams, t, total, batch, tw, tv, basis):
        """(w, v) after step t and their tangents; ``tw``/``tv``/``basis`` carry a leading entry dim.

        Step t reads one window of each schedule, so its tangent is the jvp of the step with
        respect to this step's values ``h[i]``, seeded with the matching column of the basis:
        entries of other windows get a zero seed and only carry their earlier influence.
        """
        hp = step_values(hparams, t, total)
        seeds = {n: e[(slice(None), window_index(t, total, e.shape[1]))] for n, e in basis.items()}
        fn = self._differentiated
        with self.f.training():
            if self.batched:
                (w, v), (tw, tv) = fn(weights, velocity, buffers, hp, batch, tw, tv, seeds)
                # vmap returns the shared primal with a broadcast entry dim; keep one copy
                return {k: x[0] for k, x in w.items()}, {k: x[0] for k, x in v.items()}, tw, tv
            outs = [fn(weights, velocity, buffers, hp, batch, {k: x[j] for k, x in tw.items()},
                       {k: x[j] for k, x in tv.items()}, {n: e[j] for n, e in seeds.items()})
                    for j in range(next(iter(seeds.values())).shape[0])]
        (w, v), _ = outs[0]
        stack = lambda i, key: {k: torch.stack([o[1][i][k] for o in outs]) for k in key}
        return w, v, stack(0, w), stack(1, v)

    def _pure_step(self, weights, velocity, buffers, hp, batch):
        # the loss without mode switches (tangent_step sets them around the call), so the
        # function stays traceable as one graph
        grads = grad(self.f.train_loss_as_set)(weights, buffers, batch)
        return self.update(weights, velocity, grads, hp)

    def _tangent_one(self, weights, velocity, buffers, hp, batch, tw, tv, seed):
        fn = lambda w, v, h: self._pure_step(w, v, buffers, h, batch)
        return jvp(fn, (weights, velocity, hp), (tw, tv, seed))

    def _tangent_batched(self, weights, velocity, buffers, hp, batch, tw, tv, seeds):
        # primals are shared (not batched), so the step itself runs once for all entries
        one = lambda a, b, e: self._tangent_one(weights, velocity, buffers, hp, batch, a, b, e)
        return vmap(one, randomness="same")(tw, tv, seeds)

    def hypergrad_from(self, weights, buffers, tw, batch, objective: str = "val"):
        """d loss(batch)/d entries = <grad of the loss at ``weights``, each weight tangent>: (K,).

        objective: ``"val"`` (eval mode, running statistics) or ``"train"`` (HD's next batch).
        """
        loss_fn = self.f.val_loss if objective == "val" else self.f.train_loss
        g, loss = grad_and_value(loss_fn)(weights, buffers, batch)
        flat = sum(torch.einsum("k...,...->k", tw[k], g[k]) for k in g)
        return loss.detach(), flat


@dataclass
class InnerRun:
    """The end of a differentiated training run."""

    weights: dict
    velocity: dict
    buffers: dict
    val_loss: float
    hypergrads: dict  # {name: tensor shaped like hparams[name]}


def forward_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
                update: Update = sgd_momentum, batched: bool = True, compile: bool = False) -> InnerRun:
    """Train from ``model``'s parameters with zero velocity, carrying forward-mode tangents.

    Memory is O(parameters x entries), whatever ``len(train_batches)``. batched, compile: see
    ``Trainer``.
    """
    trainer = Trainer(model, loss_fn, update, batched, compile)
    w, buffers = trainer.f.weights(), trainer.f.buffers()
    hparams = as_hparams(hparams, next(iter(w.values())))
    total = _check_batches(train_batches)
    basis = entry_basis(hparams)
    n = next(iter(basis.values())).shape[0]
    v = {k: torch.zeros_like(x) for k, x in w.items()}
    tw = {k: x.new_zeros((n, *x.shape)) for k, x in w.items()}
    tv = {k: x.new_zeros((n, *x.shape)) for k, x in w.items()}
    with torch.no_grad():  # no autograd graph: tangents are forward-mode duals, not history
        for t, batch in enumerate(train_batches):
            trainer.f.advance_buffers(w, buffers, batch)
            w, v, tw, tv = trainer.tangent_step(w, v, buffers, hparams, t, total, batch, tw, tv, basis)
        loss, flat = trainer.hypergrad_from(w, buffers, tw, val_batch)
    return InnerRun(w, v, buffers, float(loss), split_entries(flat, hparams))


def reverse_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
                update: Update = sgd_momentum) -> InnerRun:
    """The same hypergradients by back-propagating through the unrolled run (memory O(T))."""
    trainer = Trainer(model, loss_fn, update)
    w, buffers = trainer.f.weights(), trainer.f.buffers()
    theta = {n: h.requires_grad_() for n, h in as_hparams(hparams, next(iter(w.values()))).items()}
    total = _check_batches(train_batches)
    v = {k: torch.zeros_like(x) for k, x in w.items()}
    with torch.enable_grad():
        for t, batch in enumerate(train_batches):
            trainer.f.advance_buffers(w, buffers, batch)
            w, v = trainer.step(w, v, buffers, step_values(theta, t, total), batch)
        loss = trainer.f.val_loss(w, buffers, val_batch)
        grads = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
    hg = {n: (g if g is not None else torch.zeros_like(h)).detach()
          for (n, h), g in zip(theta.items(), grads)}
    return InnerRun({k: x.detach() for k, x in w.items()}, {k: x.detach() for k, x in v.items()},
                    buffers, float(loss.detach()), hg)


def hypergradient(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict,
                  mode: str = "forward", *, update: Update = sgd_momentum,
                  batched: bool = True, compile: bool = False) -> dict[str, torch.Tensor]:
    """d(validation loss after training)/d(hyperparameter), as ``{name: tensor}``.

    model: starting point of training (its parameters and buffers are not modified).
    loss_fn: ``loss_fn(output, target)``; train_batches: a sequence of T ``(inputs, targets)``;
    val_batch: one ``(inputs, targets)``, evaluated in ``eval()`` mode after training.
    hparams: ``{"lr": t[n_lr], "momentum": t[n_mom], "weight_decay": t[n_wd]}`` schedules; step t
        uses entry ``floor(n * t / T)``. With a custom ``update`` any names and shapes it reads.
    mode: ``"forward"`` (memory flat in T) or ``"reverse"`` (reference, short horizons).
    batched: forward mode only; vmap over entries (True) or a loop (False).
    compile: forward mode only; ``torch.compile`` the differentiated step (see ``Trainer``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "forward":
        return forward_run(model, loss_fn, train_batches, val_batch, hparams, update=update,
                           batched=batched, compile=compile).hypergrads
    return reverse_run(model, loss_fn, train_batches, val_batch, hparams, update=update).hypergrads


def _check_batches(train_batches) -> int:
    try:
        total = len(train_batches)
    except TypeError:
        raise ValueError("train_batches must be a sequence with len() (the horizon T sets the "
                         "windows); got an iterator — pass list(...)") from None
    if total < 1:
        raise ValueError("train_batches must hold at least one batch")
    return total

"""Reverse-mode hypergradients: back-propagation through the unrolled run, whole or in segments.

Reverse mode (Maclaurin et al. 2015; Franceschi et al. 2017) records the whole training run as
one autograd graph and back-propagates the validation loss through it once: the cost is a few
plain runs whatever the number of hyperparameter entries, the memory grows with the horizon T.
Checkpointed reverse mode (Griewank's checkpointing, applied to the unrolled run) stores only the
carried state (weights, optimiser state, buffers) every k steps in a sweep without a graph, then
recomputes one segment at a time with its graph, from the last to the first, and back-propagates
the adjoint of the segment's end through it: the same numbers with memory ~ T/k states plus one
segment's graph, for about one more plain sweep of compute.

The backward sweeps run a convolution's double backward that computes only what autograd asks
for (``convolution.py``). Both follow ``engine.forward_run`` exactly: the same pure update
(``updates.py``), the same training loss with this step's hyperparameters (``losses.py``),
BatchNorm running statistics advanced before each step without gradients and never
differentiated (``functional.py``; the checkpointed sweep stores and replays them), the same
``watch``.

Example::

    import torch
    from tune_ext.hypergrad.reverse import checkpointed_run, reverse_run
    model = torch.nn.Linear(4, 3)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(10)]
    hp = {"lr": torch.tensor([0.1, 0.05]), "momentum": torch.tensor([0.9])}
    ce = torch.nn.functional.cross_entropy
    a = reverse_run(model, ce, batches, batches[0], hp).hypergrads["lr"]
    b = checkpointed_run(model, ce, batches, batches[0], hp, segment=3).hypergrads["lr"]
    torch.allclose(a, b)  # True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.func import grad
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from tune_ext.hypergrad.convolution import masked_double_backward
from tune_ext.hypergrad.engine import InnerRun, as_hparams, check_batches, check_watch, step_values
from tune_ext.hypergrad.functional import FunctionalModel
from tune_ext.hypergrad.updates import Update, init_velocity, sgd_momentum


class Packing:
    """The weights as one flat vector ``{KEY: flat}``, and the parameters' views of it.

    A recorded step then holds a few update operations on one vector instead of a few per
    parameter tensor, and the gradient comes back as one vector; the numbers are the same.
    """

    KEY = ""  # no parameter can have this name (``register_parameter`` refuses it)

    def __init__(self, weights: dict):
        self.shapes = {k: w.shape for k, w in weights.items()}
        self.sizes = {k: w.numel() for k, w in weights.items()}

    @classmethod
    def of(cls, weights: dict, update: Update):
        """(packing, the update over it), or (None, update) where the update cannot run packed
        (it has no ``packed``, or says None) or the weights differ in dtype or device. Only the
        weights' shapes, dtype and device are read."""
        packed = getattr(update, "packed", None)
        kinds = {(w.dtype, w.device) for w in weights.values()}
        if packed is None or len(kinds) != 1 or not weights:
            return None, update
        packing = cls(weights)
        flat_update = packed(packing.sizes, cls.KEY, next(iter(kinds))[1])
        return (None, update) if flat_update is None else (packing, flat_update)

    def pack(self, weights: dict) -> dict:
        return {self.KEY: torch.cat([weights[k].reshape(-1) for k in self.sizes])}

    def views(self, packed: dict) -> dict:
        parts = packed[self.KEY].split(list(self.sizes.values()))
        return {k: x.view(self.shapes[k]) for k, x in zip(self.sizes, parts)}

    def unpack(self, tree):
        """``tree`` with every packed dict (weights, velocity, Adam's moments) back per parameter."""
        if isinstance(tree, dict):
            if set(tree) == {self.KEY}:
                return {k: x.clone() for k, x in self.views(tree).items()}
            return {k: self.unpack(x) for k, x in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.unpack(x) for x in tree)
        return tree


class Unroller:
    """One training step with or without its autograd graph, for the reverse sweeps.

    model, loss_fn, update, train_loss: as in ``engine.Trainer``.
    compile: run the step with its graph through ``torch.compile(fullgraph=True)`` (the loss's
        gradient by ``torch.func.grad`` inside the compiled function, differentiated again by the
        outer backward); eager, the gradient is ``torch.autograd.grad(create_graph=True)``, which
        skips torch.func's per-call wrapping.

    The carried weights are packed into one vector (``Packing``) where the update allows it;
    ``result`` hands them back per parameter.
    """

    def __init__(self, model, loss_fn, update: Update = sgd_momentum, train_loss=None,
                 compile: bool = False):
        self.f = FunctionalModel(model, loss_fn, train_loss)
        self.packing, self.update = Packing.of(dict(model.named_parameters()), update)
        self._compiled = (torch.compile(self._func_step, fullgraph=True, dynamic=False)
                          if compile else None)

    def start(self):
        """The model's (packed) weights, the update's initial velocity, a copy of the buffers."""
        w = self.f.weights()
        if self.packing is not None:
            w = self.packing.pack(w)
        return w, init_velocity(self.update, w), self.f.buffers()

    def per_parameter(self, weights: dict) -> dict:
        """The model's parameters from the carried weights (views where they are packed)."""
        return weights if self.packing is None else self.packing.views(weights)

    def result(self, weights, velocity, buffers, *rest) -> InnerRun:
        """An ``InnerRun`` with detached weights and velocity, per parameter as the model has them."""
        weights, velocity = _detach(weights), _detach(velocity)
        if self.packing is not None:
            weights, velocity = self.packing.unpack(weights), self.packing.unpack(velocity)
        return InnerRun(weights, velocity, buffers, *rest)

    def _loss(self, weights, buffers, batch, hp):
        return self.f.train_loss_as_set(self.per_parameter(weights), buffers, batch, hp)

    def graph_step(self, weights, velocity, buffers, hp, batch):
        """One step recorded for back-propagation (weights must require grad): (weights, velocity).

        Advances ``buffers`` in place first, as a training-mode forward pass would.
        """
        params = self.per_parameter(weights)
        self.f.advance_buffers(params, buffers, batch)
        with self.f.training():
            if self._compiled is not None:
                return self._compiled(weights, velocity, buffers, hp, batch)
            loss = self.f.train_loss_as_set(params, buffers, batch, hp)
            return self.update(weights, velocity, _grad(loss, weights, create_graph=True), hp)

    def plain_step(self, weights, velocity, buffers, hp, batch):
        """The same step without a graph (the checkpointed forward sweep): detached results."""
        self.f.advance_buffers(self.per_parameter(weights), buffers, batch)
        w = {k: x.detach().requires_grad_() for k, x in weights.items()}
        with self.f.training(), torch.enable_grad():  # the views of w inside, so that they lead to w
            grads = _grad(self._loss(w, buffers, batch, hp), w, create_graph=False)
        with torch.no_grad():
            return self.update(weights, velocity, grads, hp)

    def _func_step(self, weights, velocity, buffers, hp, batch):
        grads = grad(self._loss)(weights, buffers, batch, hp)
        return self.update(weights, velocity, grads, hp)

    def val_loss(self, weights, buffers, batch):
        return self.f.val_loss(self.per_parameter(weights), buffers, batch)


def _grad(loss, weights: dict, create_graph: bool) -> dict:
    names = list(weights)
    gs = torch.autograd.grad(loss, [weights[k] for k in names], create_graph=create_graph,
                             allow_unused=True)
    # a parameter the loss does not reach (an unused head) has gradient 0, as torch.optim sees it
    return {k: torch.zeros_like(weights[k]) if g is None else g for k, g in zip(names, gs)}


def _differentiable(tree):
    """Detached leaves of ``tree``; the floating-point ones require grad (inputs of a segment)."""
    return tree_map(lambda x: x.detach().requires_grad_(x.is_floating_point()), tree)


def _detach(tree):
    return tree_map(lambda x: x.detach(), tree)


def _watched(unroller, watch, watch_every, total, val_batch):
    """``(steps, weights, buffers) -> stop?``: ``forward_run``'s rule, or None without a watch."""
    if watch is None:
        return None

    def check(steps, weights, buffers):
        if steps % watch_every or steps >= total:
            return None
        with torch.no_grad():
            loss = float(unroller.val_loss(_detach(weights), buffers, val_batch))
        return loss if watch(steps, loss) else None

    return check


def reverse_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
                update: Update = sgd_momentum, train_loss=None, compile: bool = False,
                watch: Callable[[int, float], bool] | None = None,
                watch_every: int | None = None) -> InnerRun:
    """Train from ``model``'s parameters recording the whole run, then back-propagate once.

    Memory grows with ``len(train_batches)`` (the graph of every step); the cost does not grow
    with the number of entries. Arguments as ``engine.forward_run`` (watch included).
    """
    total = check_batches(train_batches)
    check_watch(watch, watch_every)
    unroller = Unroller(model, loss_fn, update, train_loss, compile)
    theta = {n: h.requires_grad_() for n, h in as_hparams(hparams, next(model.parameters())).items()}
    w, v, buffers = unroller.start()
    w = _differentiable(w)
    stop = _watched(unroller, watch, watch_every, total, val_batch)
    with torch.enable_grad():
        for t in range(total):
            w, v = unroller.graph_step(w, v, buffers, step_values(theta, t, total), train_batches[t])
            lost = stop and stop(t + 1, w, buffers)
            if lost is not None:
                return unroller.result(w, v, buffers, lost, None, t + 1, True, "reverse")
        loss = unroller.val_loss(w, buffers, val_batch)
        with masked_double_backward():
            grads = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
    return unroller.result(w, v, buffers, float(loss.detach()), _hypergrads(theta, grads), total,
                           False, "reverse")


def default_segment(total: int) -> int:
    """Steps per checkpointed segment when none is given: ceil(sqrt(T)), about as many stored
    states as steps recomputed at once."""
    return max(1, math.ceil(math.sqrt(total)))


@dataclass
class _Checkpoint:
    """The carried state at the start of a segment: what the backward sweep recomputes from."""

    step: int
    weights: dict
    velocity: object
    buffers: dict


def checkpointed_run(model, loss_fn, train_batches: Sequence, val_batch, hparams: dict, *,
                     segment: int | None = None, update: Update = sgd_momentum, train_loss=None,
                     compile: bool = False, watch: Callable[[int, float], bool] | None = None,
                     watch_every: int | None = None) -> InnerRun:
    """``reverse_run``'s hypergradients with memory bounded by segments of ``segment`` steps.

    A sweep without a graph stores (weights, velocity, buffers) at steps 0, k, 2k, ... and records
    only the last segment's graph; then, from the last segment to the first, each earlier segment is
    recomputed from its stored state with its graph (the buffers from their stored copy, the same
    batches in the same order) and the adjoint of its end is back-propagated to its start and to
    the hyperparameters.

    segment: k, steps per segment [``default_segment(T)`` = ceil(sqrt(T))]; k >= T records the
        whole run, as ``reverse_run`` does. Other arguments as ``reverse_run``.
    """
    total = check_batches(train_batches)
    check_watch(watch, watch_every)
    k = default_segment(total) if segment is None else segment
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"segment must be a positive int (steps per checkpointed segment), got {segment!r}")
    unroller = Unroller(model, loss_fn, update, train_loss, compile)
    theta = {n: h.requires_grad_() for n, h in as_hparams(hparams, next(model.parameters())).items()}
    w, v, buffers = unroller.start()
    stop = _watched(unroller, watch, watch_every, total, val_batch)
    last = (total - 1) // k * k  # the last segment is recorded in the sweep itself, not recomputed
    stored = []
    with torch.no_grad():
        hp = {n: h.detach() for n, h in theta.items()}
        for t in range(last):
            if t % k == 0:
                stored.append(_Checkpoint(t, w, v, {n: b.clone() for n, b in buffers.items()}))
            w, v = unroller.plain_step(w, v, buffers, step_values(hp, t, total), train_batches[t])
            lost = stop and stop(t + 1, w, buffers)
            if lost is not None:
                return unroller.result(w, v, buffers, lost, None, t + 1, True, "checkpointed")
    with torch.enable_grad():
        w0, v0 = _differentiable(w), _differentiable(v)
        w, v = w0, v0
        for t in range(last, total):
            w, v = unroller.graph_step(w, v, buffers, step_values(theta, t, total), train_batches[t])
            lost = stop and stop(t + 1, w, buffers)
            if lost is not None:
                return unroller.result(w, v, buffers, lost, None, t + 1, True, "checkpointed")
        loss = unroller.val_loss(w, buffers, val_batch)
        adjoint, totals = _pull_back([loss], None, w0, v0, theta)
        for start in reversed(stored):
            w_s, v_s = _differentiable(start.weights), _differentiable(start.velocity)
            b_s = {n: b.clone() for n, b in start.buffers.items()}  # replayed, the stored copy kept
            w_e, v_e = w_s, v_s
            for t in range(start.step, start.step + k):
                w_e, v_e = unroller.graph_step(w_e, v_e, b_s, step_values(theta, t, total), train_batches[t])
            outs, adjs = zip(*[(o, a) for o, a in zip(tree_flatten((w_e, v_e))[0], tree_flatten(adjoint)[0])
                               if o.requires_grad])
            adjoint, grads = _pull_back(list(outs), list(adjs), w_s, v_s, theta)
            for n, g in grads.items():
                totals[n] += g
    return unroller.result(w, v, buffers, float(loss.detach()), totals, total, False, "checkpointed")


def _pull_back(outs, adjs, w0, v0, theta):
    """Back-propagate ``adjs`` (None: ``outs`` is a scalar loss) from ``outs`` to the segment's
    start (w0, v0) and to theta: (adjoint of (w0, v0), {name: d/d theta})."""
    leaves, spec = tree_flatten((w0, v0))
    inputs = [x for x in leaves if x.requires_grad]
    with masked_double_backward():
        grads = torch.autograd.grad(outs, inputs + list(theta.values()), adjs, allow_unused=True)
    it = iter(grads[:len(inputs)])
    back = [_zero_if_none(next(it), x) if x.requires_grad else torch.zeros_like(x) for x in leaves]
    return tree_unflatten(back, spec), _hypergrads(theta, grads[len(inputs):])


def _zero_if_none(g, like):
    return torch.zeros_like(like) if g is None else g.detach()


def _hypergrads(theta: dict, grads) -> dict:
    # an entry no step reads (more windows than steps) has hypergradient 0
    return {n: _zero_if_none(g, h).detach() for (n, h), g in zip(theta.items(), grads)}


def step_graph_bytes(model, loss_fn, batch, hparams: dict, *, update: Update = sgd_momentum,
                     train_loss=None) -> tuple[int, int]:
    """What one recorded step keeps alive, and the carried state's size, in bytes.

    Runs step 0 on ``batch`` with its graph (on copies: the model's buffers are not advanced) and
    adds up the distinct storages autograd saves for the backward (through
    ``torch.autograd.graph.saved_tensors_hooks``): reverse mode keeps that much per step. The
    state is the weights, the velocity and the buffers: what a checkpoint stores.
    """
    unroller = Unroller(model, loss_fn, update, train_loss)
    theta = {n: h.requires_grad_() for n, h in as_hparams(hparams, next(model.parameters())).items()}
    w, v, buffers = unroller.start()
    state = sum(x.numel() * x.element_size() for x in tree_flatten((w, v, buffers))[0])
    seen: dict[int, int] = {}

    def pack(x):
        storage = x.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        unroller.graph_step(_differentiable(w), v, buffers, step_values(theta, 0, 1), batch)
    return sum(seen.values()), state

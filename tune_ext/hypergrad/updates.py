"""Optimiser updates as pure functions of (weights, velocity, gradients, hyperparameters).

Forward-mode hypergradients differentiate these functions with ``torch.func.jvp``, so a new
hyperparameter (a per-layer learning rate, say) needs a new update function and nothing else.

An update is called as ``update(weights, velocity, grads, hp)`` with dicts ``{parameter name:
tensor}`` for weights and gradients, the optimiser's state ``velocity`` (any pytree of tensors),
and a dict ``hp`` of this step's hyperparameter values (each ``hparams[name][window]``); it returns
``(new_weights, new_velocity)``. Its ``init(weights)`` gives the velocity at step 0 (an update
without ``init`` starts from zeros shaped like the weights).

Layer-wise hyperparameters: with ``layer_of`` (parameter name -> layer index, see ``layers_of``)
a hyperparameter whose value at a step is a vector holds one value per layer, and parameter ``k``
uses entry ``layer_of[k]``; a scalar is shared by all layers.

Packed weights: an update that treats every weight entry alike, given its layer's
hyperparameters (``SGD``, ``AdamW``), has ``packed(sizes, key, device)``: the same update over all
the weights concatenated into one vector ``{key: flat}``, its ``layer_of`` an index tensor that
holds each entry's layer. The reverse paths (``reverse.py``) record it, a handful of operations
per step instead of a handful per parameter tensor; an update without ``packed`` is called on the
parameter dicts as they are.

Example::

    import torch
    from tune_ext.hypergrad.updates import sgd_momentum
    w, v, g = {"a": torch.ones(2)}, {"a": torch.zeros(2)}, {"a": torch.ones(2)}
    hp = {"lr": torch.tensor(0.1), "momentum": torch.tensor(0.9), "weight_decay": torch.tensor(0.0)}
    sgd_momentum(w, v, g, hp)  # ({'a': tensor([0.9, 0.9])}, {'a': tensor([1., 1.])})
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

Update = Callable[[dict, object, dict, dict], "tuple[dict, object]"]


def init_velocity(update: Update, weights: dict):
    """The optimiser state ``update`` starts from: its ``init``, else zeros like the weights."""
    init = getattr(update, "init", None)
    return init(weights) if init is not None else {k: torch.zeros_like(w) for k, w in weights.items()}


class _LayerWise:
    """Reads a hyperparameter for one parameter: shared scalar, or its layer's entry."""

    def __init__(self, layer_of: Mapping[str, int] | None = None):
        self.layer_of = None if layer_of is None else dict(layer_of)

    def packed(self, sizes: Mapping[str, int], key: str, device=None):
        """This update over the weights packed into one vector ``{key: flat}``: entries in the
        order of ``sizes`` (parameter name -> number of entries), layer indices on ``device``.

        None where ``layer_of`` misses a parameter: the update then runs unpacked, and raises there
        if a per-layer value is read. A subclass whose update mixes entries sets ``packed = None``.
        """
        if self.layer_of is None:
            return type(self)()
        if any(k not in self.layer_of for k in sizes):
            return None
        index = torch.cat([torch.full((n,), self.layer_of[k], dtype=torch.long, device=device)
                           for k, n in sizes.items()])
        return type(self)({key: index})

    def value(self, hp: dict, name: str, param: str, default=0.0):
        h = hp.get(name, default)
        if isinstance(h, torch.Tensor) and h.dim() > 0:
            if self.layer_of is None:
                raise ValueError(f"hyperparameter {name!r} has one value per layer but the update "
                                 f"has no layer_of: build it with layer_of=layers_of(model)")
            if param not in self.layer_of:
                raise ValueError(f"layer_of has no layer for parameter {param!r}")
            return h[self.layer_of[param]]  # a packed update's index tensor gathers per entry
        return h


class SGD(_LayerWise):
    """``torch.optim.SGD`` (dampening 0, no Nesterov): ``v = mom*v + (g + wd*w); w = w - lr*v``.

    ``hp`` holds ``lr`` and optionally ``momentum`` and ``weight_decay`` (missing means 0, so
    ``{"lr": ...}`` alone is plain SGD); each a scalar or, with ``layer_of``, one per layer.
    """

    def __call__(self, weights, velocity, grads, hp):
        new_v, new_w = {}, {}
        for k in weights:
            mom, wd = self.value(hp, "momentum", k), self.value(hp, "weight_decay", k)
            new_v[k] = mom * velocity[k] + (grads[k] + wd * weights[k])
            new_w[k] = weights[k] - self.value(hp, "lr", k) * new_v[k]
        return new_w, new_v


class AdamW(_LayerWise):
    """``torch.optim.AdamW`` (amsgrad off) as a pure function; its state is (m, v, step count).

    ``hp``: ``lr``, ``beta1``, ``weight_decay`` (learnable, scalars or per layer), and optionally
    ``beta2`` [0.999] and ``eps`` [1e-8]. As torch: ``w *= 1 - lr*wd``; ``m = b1 m + (1-b1) g``;
    ``v = b2 v + (1-b2) g^2``; ``w -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps)``, with this
    step's ``b1`` in the bias correction (as when a ``param_group``'s betas change mid-run).
    """

    def init(self, weights):
        zeros = {k: torch.zeros_like(w) for k, w in weights.items()}
        count = torch.zeros((), dtype=next(iter(weights.values())).dtype,
                            device=next(iter(weights.values())).device)
        return {"m": zeros, "v": {k: z.clone() for k, z in zeros.items()}, "count": count}

    def __call__(self, weights, velocity, grads, hp):
        count = velocity["count"] + 1
        new_w, new_m, new_v = {}, {}, {}
        for k in weights:
            lr, wd = self.value(hp, "lr", k), self.value(hp, "weight_decay", k)
            b1, b2 = self.value(hp, "beta1", k, 0.9), self.value(hp, "beta2", k, 0.999)
            eps = self.value(hp, "eps", k, 1e-8)
            g = grads[k]
            new_m[k] = b1 * velocity["m"][k] + (1 - b1) * g
            new_v[k] = b2 * velocity["v"][k] + (1 - b2) * g * g
            m_hat = new_m[k] / (1 - b1 ** count)
            denom = _safe_sqrt(new_v[k] / (1 - b2 ** count)) + eps
            new_w[k] = weights[k] * (1 - lr * wd) - lr * m_hat / denom
        return new_w, {"m": new_m, "v": new_v, "count": count}


def _safe_sqrt(x):
    # sqrt has an infinite derivative at 0 (a gradient entry that was always exactly 0): there the
    # tangent of x is 0 too, and the value's derivative is taken as 0 instead of 0 * inf = nan
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


sgd_momentum = SGD()


def per_layer_sgd(layer_of: Mapping[str, int]) -> Update:
    """SGD-momentum with hyperparameters per layer where ``hp[name]`` is a vector (see ``SGD``).

    layer_of: parameter name -> index into this step's vectors (so a per-layer ``hparams["lr"]``
        has shape ``(n_windows, n_layers)``).
    """
    return SGD(layer_of)


def layers_of(model: torch.nn.Module) -> dict[str, int]:
    """Map each parameter name to the index of the module that owns it, in registration order."""
    modules = list(dict.fromkeys(name.rpartition(".")[0] for name, _ in model.named_parameters()))
    return {name: modules.index(name.rpartition(".")[0]) for name, _ in model.named_parameters()}
